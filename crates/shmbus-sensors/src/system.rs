//! CPU, load and memory from `/proc/stat`, `/proc/loadavg`, `/proc/meminfo`.

use std::path::{Path, PathBuf};

use shmbus_core::topic::shown;

use crate::args::Args;
use crate::msg::{Memory, System};
use crate::run::{Source, Warn};
use crate::sysfs::{MAX_PROC_BYTES, read_text, shown_path};

/// Aggregate CPU time from the `cpu` line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// All time (user + nice + system + idle + iowait + irq + softirq + steal).
    pub total: u64,
    /// Idle and iowait.
    pub idle: u64,
}

/// Parse `/proc/stat`: the aggregate `cpu` line and the number of `cpuN` lines.
pub fn parse_stat(text: &str) -> Result<(CpuTimes, u16), String> {
    let mut times = None;
    let mut cpus = 0u16;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("cpu") => {
                let v: Vec<u64> = f
                    .take(8)
                    .map(|x| {
                        x.parse::<u64>()
                            .map_err(|_| format!("bad number '{}' in the cpu line", shown(x)))
                    })
                    .collect::<Result<_, _>>()?;
                if v.len() < 4 {
                    return Err(format!(
                        "the cpu line has {} fields, expected at least 4",
                        v.len()
                    ));
                }
                // guest and guest_nice are already counted in user and nice.
                // Saturating: a counter near 2^64 (a fake /proc under
                // --root, a corrupted file) is no overflow panic.
                let idle = v[3].saturating_add(v.get(4).copied().unwrap_or(0));
                times = Some(CpuTimes {
                    total: v.iter().fold(0u64, |a, x| a.saturating_add(*x)),
                    idle,
                });
            }
            Some(c) if c.starts_with("cpu") && c[3..].parse::<u32>().is_ok() => {
                cpus = cpus.saturating_add(1)
            }
            _ => {}
        }
    }
    times
        .map(|t| (t, cpus))
        .ok_or_else(|| "no aggregate 'cpu' line".to_string())
}

/// Busy percentage between two samples (`None` if no time passed).
pub fn cpu_pct(prev: CpuTimes, cur: CpuTimes) -> Option<f32> {
    let total = cur.total.checked_sub(prev.total)?;
    let idle = cur.idle.checked_sub(prev.idle)?;
    if total == 0 {
        return None;
    }
    Some((100.0 * (total.saturating_sub(idle)) as f64 / total as f64) as f32)
}

/// Parse `/proc/loadavg`: `0.52 0.58 0.59 2/345 12345`.
pub fn parse_loadavg(text: &str) -> Result<([f32; 3], [u32; 2]), String> {
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.len() < 4 {
        return Err(format!(
            "expected at least 4 fields (three load averages, running/total tasks), found {}",
            f.len()
        ));
    }
    let mut load = [0f32; 3];
    for (l, s) in load.iter_mut().zip(&f) {
        // `nan`, `inf`, `-1` and `1e99` parse as f32 but are no load
        // average: they were published as such.
        *l = s
            .parse::<f32>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("bad load average '{}'", shown(s)))?;
    }
    let (run, total) = f[3]
        .split_once('/')
        .ok_or_else(|| format!("bad task count '{}'", shown(f[3])))?;
    let tasks = [
        run.parse()
            .map_err(|_| format!("bad task count '{}'", shown(f[3])))?,
        total
            .parse()
            .map_err(|_| format!("bad task count '{}'", shown(f[3])))?,
    ];
    Ok((load, tasks))
}

/// Parse `/proc/meminfo` (`MemTotal:  24684092 kB` lines).
pub fn parse_meminfo(text: &str) -> Result<Memory, String> {
    let get = |key: &str| -> Option<u64> {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
    };
    let total = get("MemTotal").ok_or("no MemTotal line")?;
    let available = match get("MemAvailable") {
        Some(a) => a,
        None => get("MemFree")
            .ok_or("no MemAvailable or MemFree line")?
            .saturating_add(get("Buffers").unwrap_or(0))
            .saturating_add(get("Cached").unwrap_or(0)),
    };
    Ok(Memory {
        total_kib: total,
        available_kib: available,
        swap_total_kib: get("SwapTotal").unwrap_or(0),
        swap_free_kib: get("SwapFree").unwrap_or(0),
    })
}

/// The system sensor.
#[derive(Debug)]
pub struct SystemSource {
    stat: PathBuf,
    loadavg: PathBuf,
    meminfo: PathBuf,
    prev: CpuTimes,
}

impl SystemSource {
    /// Reading under `args.root`.
    pub fn new(args: &Args) -> SystemSource {
        SystemSource {
            stat: args.at("proc/stat"),
            loadavg: args.at("proc/loadavg"),
            meminfo: args.at("proc/meminfo"),
            prev: CpuTimes::default(),
        }
    }
}

fn read(path: &Path, warn: &mut Warn) -> Option<String> {
    match read_text(path, MAX_PROC_BYTES) {
        Ok(t) => Some(t),
        Err(e) => {
            warn.once(format!("cannot read {e}; publishing without it"));
            None
        }
    }
}

impl Source for SystemSource {
    type Msg = System;

    fn sample(&mut self, t_ns: u64, warn: &mut Warn) -> System {
        let mut msg = System {
            t_ns,
            cpu_pct: None,
            cpus: 0,
            load: None,
            tasks: None,
            mem: None,
        };
        if let Some(text) = read(&self.stat, warn) {
            match parse_stat(&text) {
                Ok((times, cpus)) => {
                    msg.cpu_pct = cpu_pct(self.prev, times);
                    msg.cpus = cpus;
                    self.prev = times;
                }
                Err(e) => {
                    warn.once(format!("{}: {e}", shown_path(&self.stat)));
                }
            }
        }
        if let Some(text) = read(&self.loadavg, warn) {
            match parse_loadavg(&text) {
                Ok((load, tasks)) => {
                    msg.load = Some(load);
                    msg.tasks = Some(tasks);
                }
                Err(e) => {
                    warn.once(format!("{}: {e}", shown_path(&self.loadavg)));
                }
            }
        }
        if let Some(text) = read(&self.meminfo, warn) {
            match parse_meminfo(&text) {
                Ok(m) => msg.mem = Some(m),
                Err(e) => {
                    warn.once(format!("{}: {e}", shown_path(&self.meminfo)));
                }
            }
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  61690 10071 14551 104135 2234 0 190 1930 0 0
cpu0 28945 4466 6308 56388 331 0 34 951 0 0
cpu1 32744 5605 8243 47746 1902 0 156 978 0 0
intr 123 4 5
ctxt 99
procs_running 3
";

    #[test]
    fn stat_gives_cpu_times_and_count() {
        let (t, n) = parse_stat(STAT).unwrap();
        assert_eq!(n, 2);
        assert_eq!(t.total, 61690 + 10071 + 14551 + 104135 + 2234 + 190 + 1930);
        assert_eq!(t.idle, 104135 + 2234);
    }

    #[test]
    fn cpu_percentage_is_the_busy_share_of_the_delta() {
        let a = CpuTimes {
            total: 1000,
            idle: 800,
        };
        let b = CpuTimes {
            total: 1200,
            idle: 850,
        };
        assert_eq!(cpu_pct(a, b), Some(75.0));
        assert_eq!(cpu_pct(b, b), None);
        // Counters that went backwards (another boot's numbers) give nothing.
        assert_eq!(cpu_pct(b, a), None);
        // The first sample: since boot.
        let first = cpu_pct(CpuTimes::default(), a).unwrap();
        assert!((first - 20.0).abs() < 1e-4);
    }

    #[test]
    fn malformed_stat_is_an_error_not_a_panic() {
        assert!(parse_stat("").unwrap_err().contains("no aggregate"));
        assert!(parse_stat("cpu 1 2\n").unwrap_err().contains("at least 4"));
        assert!(
            parse_stat("cpu 1 2 x 4\n")
                .unwrap_err()
                .contains("bad number 'x'")
        );
        // Counters near 2^64 saturate instead of overflowing.
        let max = u64::MAX;
        let (t, _) = parse_stat(&format!("cpu {max} 1 1 {max} {max}\n")).unwrap();
        assert_eq!((t.total, t.idle), (max, max));
        let m = parse_meminfo(&format!(
            "MemTotal: 1 kB\nMemFree: {max} kB\nCached: 5 kB\n"
        ));
        assert_eq!(m.unwrap().available_kib, max);
        // Old kernels have only 4 fields.
        assert_eq!(
            parse_stat("cpu 1 2 3 4\ncpu0 1 2 3 4\n").unwrap().0.total,
            10
        );
    }

    #[test]
    fn loadavg_parses_and_rejects_garbage() {
        let (l, t) = parse_loadavg("5.81 3.03 1.38 17/177 22712\n").unwrap();
        assert_eq!(l, [5.81, 3.03, 1.38]);
        assert_eq!(t, [17, 177]);
        assert!(
            parse_loadavg("1 2")
                .unwrap_err()
                .contains("expected at least 4 fields")
        );
        // Garbage from the file is escaped and cut to one short line.
        let e = parse_loadavg(&format!("\u{1b}]0;x{} 2 3 1/2", "9".repeat(10_000))).unwrap_err();
        assert!(!e.contains('\u{1b}') && e.len() < 120, "{e}");
        assert!(
            parse_loadavg("a 2 3 1/2 5")
                .unwrap_err()
                .contains("bad load average 'a'")
        );
        // Floats that are no load average.
        for bad in ["nan", "inf", "-1", "1e99", "-0.5"] {
            let e = parse_loadavg(&format!("0.5 {bad} 0.5 1/2 3")).unwrap_err();
            assert!(e.contains(&format!("bad load average '{bad}'")), "{e}");
        }
        assert!(
            parse_loadavg("1 2 3 12 5")
                .unwrap_err()
                .contains("bad task count")
        );
    }

    #[test]
    fn meminfo_uses_memavailable_or_falls_back() {
        let m = parse_meminfo(
            "MemTotal:       24684092 kB\nMemFree:        20937744 kB\nMemAvailable:   23499344 kB\nSwapTotal: 100 kB\nSwapFree: 40 kB\n",
        )
        .unwrap();
        assert_eq!(
            (
                m.total_kib,
                m.available_kib,
                m.swap_total_kib,
                m.swap_free_kib
            ),
            (24684092, 23499344, 100, 40)
        );
        let old =
            parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 200 kB\n")
                .unwrap();
        assert_eq!(old.available_kib, 310);
        assert!(
            parse_meminfo("MemFree: 1 kB\n")
                .unwrap_err()
                .contains("MemTotal")
        );
        assert!(parse_meminfo("MemTotal: lots\n").is_err());
    }

    #[test]
    fn the_real_proc_parses_here() {
        // Linux always has these; a parse failure here is a bug in the parser.
        let (t, n) = parse_stat(&std::fs::read_to_string("/proc/stat").unwrap()).unwrap();
        assert!(t.total > 0 && n >= 1);
        parse_loadavg(&std::fs::read_to_string("/proc/loadavg").unwrap()).unwrap();
        assert!(
            parse_meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap())
                .unwrap()
                .total_kib
                > 0
        );
    }

    /// A FIFO where `/proc/loadavg` should be (a fake tree under `--root`)
    /// hung the system sensor in its first sample, for good. Now that field
    /// is left out with one warning, and the rest is published.
    #[test]
    fn a_fifo_in_proc_is_skipped_not_a_hang() {
        use crate::sysfs::testdir::TempDir;
        use std::sync::mpsc;
        use std::time::Duration;
        let d = TempDir::new("proc-fifo");
        d.file("proc/stat", STAT)
            .file("proc/meminfo", "MemTotal: 1000 kB\nMemAvailable: 500 kB\n");
        // The system call, not the `mkfifo` program: under qemu-arm a spawn
        // is a fork of the whole emulator, which QEMU 7.2 can deadlock
        // before the exec (ci/arm-env.sh, G_SLICE), and the test then waits
        // for good. A system call cannot.
        nix::unistd::mkfifo(
            &d.path().join("proc/loadavg"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .expect("mkfifo proc/loadavg");
        let args = Args::parse(&["--root".into(), d.path().display().to_string()]).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut src = SystemSource::new(&args);
            let mut w = Warn::new("test");
            let m = src.sample(1, &mut w);
            let _ = tx.send((m, w.count()));
        });
        let (m, warnings) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the system sensor hung on a FIFO at proc/loadavg");
        assert_eq!((m.load, m.tasks), (None, None));
        assert_eq!(m.mem.map(|m| m.available_kib), Some(500));
        assert_eq!(m.cpus, 2);
        assert_eq!(warnings, 1);
    }
}
