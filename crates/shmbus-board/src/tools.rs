//! Scenarios that drive the other binaries in the image: the board's
//! `shmbus` CLI against a running publisher, and `shmbus-bench --quick`.
//!
//! The board's `shmbus` is the thin build (features `record` only, see
//! ci/test.sh); the benchmark runs from its own `shmbus-bench` binary.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::spawn::{self, BoardTopic};

/// The scenarios of this module, in order.
pub fn scenarios() -> Vec<crate::scenarios::Scenario> {
    vec![("cli", cli), ("bench", bench)]
}

/// Program `name`: `$SHMBUS_<NAME>` (e.g. `SHMBUS_CLI` for `shmbus`),
/// `/bin/<name>`, or next to this binary.
fn tool_path(name: &str, env: &str) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(p) = std::env::var(env) {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(PathBuf::from("/bin").join(name));
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join(name));
        }
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// Run `exe` with `args` (killed after `limit`); exit code and stdout+stderr.
fn run_tool(exe: &PathBuf, args: &[&str], limit: Duration) -> Result<(i32, String), String> {
    let dir = std::env::temp_dir();
    let out_path = dir.join(format!("shmbus-board-tool.{}.out", std::process::id()));
    let out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break -2;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    Ok((code, text))
}

fn show(cmd: &str, text: &str) {
    for line in text.lines().take(12) {
        console!("SHMBUS-BOARD:   {cmd} | {line}");
    }
}

/// `shmbus list`, `info` and `echo --count 3` against a running publisher
/// (as root, which reads any topic).
pub fn cli() -> Result<String, String> {
    let Some(cli) = tool_path("shmbus", "SHMBUS_CLI") else {
        return Ok("skipped: no shmbus CLI in the image".into());
    };
    let t = BoardTopic::new("cli");
    let mut p = spawn::start(
        "pub",
        &t.args(&[("rate", "50".into()), ("count", "100000".into())]),
        Some(spawn::sensor()),
    )?;
    p.expect("START", Duration::from_secs(60))?;
    let key = format!("0x{:08x}", t.key as u32);
    // A watchdog: only a hang exceeds it.
    let limit = Duration::from_secs(60);
    let mut figures = Vec::new();
    // The topic is another user's (`sensor`) at a key not derived from its
    // name: it is asked for by key, as a name would not reach it.
    for args in [
        vec!["list"],
        vec!["info", &key],
        vec!["echo", &key, "--count", "3"],
    ] {
        let cmd = args.join(" ");
        let started = Instant::now();
        let (code, text) = run_tool(&cli, &args, limit)?;
        show(&format!("shmbus {}", args[0]), &text);
        if code != 0 {
            return Err(format!(
                "`shmbus {cmd}` exited {code}: {}",
                text.lines().last().unwrap_or("")
            ));
        }
        if !(text.contains(&t.name) || text.contains(&key) || args[0] == "echo") {
            return Err(format!(
                "`shmbus {cmd}` does not mention the topic {} ({key})",
                t.name
            ));
        }
        if args[0] == "echo" && text.lines().filter(|l| !l.trim().is_empty()).count() < 3 {
            return Err(format!("`shmbus {cmd}` printed fewer than 3 lines"));
        }
        figures.push(format!("{} {} ms", args[0], started.elapsed().as_millis()));
    }
    Ok(format!(
        "list, info, echo --count 3 ok ({})",
        figures.join(", ")
    ))
}

/// `shmbus-bench --quick` on one core, its table on the console.
pub fn bench() -> Result<String, String> {
    let Some(bench) = tool_path("shmbus-bench", "SHMBUS_BENCH") else {
        return Ok("skipped: no shmbus-bench in the image".into());
    };
    let started = Instant::now();
    let (code, text) = run_tool(&bench, &["--quick"], Duration::from_secs(240))?;
    for line in text.lines() {
        console!("SHMBUS-BOARD:   bench | {line}");
    }
    if code != 0 {
        return Err(format!("`shmbus-bench --quick` exited {code}"));
    }
    Ok(format!(
        "{}; shmbus-bench --quick ran in {} s (table above)",
        bench_figures(&text),
        started.elapsed().as_secs()
    ))
}

/// The median of the table row whose label starts with one of `labels`
/// (the first duration after the label), or "?".
fn median_of(table: &str, labels: &[&str]) -> String {
    for line in table.lines() {
        let l = line.trim_start();
        for label in labels {
            if let Some(rest) = l.strip_prefix(label) {
                let mut w = rest.split_whitespace();
                if let (Some(v), Some(unit)) = (w.next(), w.next()) {
                    if v.parse::<f64>().is_ok() {
                        return format!("{v} {unit}");
                    }
                }
            }
        }
    }
    "?".into()
}

/// The publish and wait costs of a `shmbus bench --quick` table, for the
/// scenario's summary line (and so the CI summary). The labels of older
/// builds are accepted too, so a run of an older image reads the same.
pub fn bench_figures(table: &str) -> String {
    let m = |labels: &[&str]| median_of(table, labels);
    format!(
        "publish 64 B: notify off {}, fixed length {} (the layout's stores alone {}), \
         notify on with nobody asleep {}, with the clock read(s) {}; \
         wait_latest handoff {} (raw futex floor {}); has_new {}",
        m(&["shmbus publish 64 B (pre-encoded, notify off)"]),
        m(&["shmbus publish_array 64 B (fixed length, notify off)"]),
        m(&["floor: the layout's stores for a 64 B publish"]),
        m(&["shmbus publish 64 B (notify on, no waiter)"]),
        m(&[
            "shmbus publish_bytes() 64 B, clock read incl.",
            "shmbus publish_bytes 64 B incl. 2 clock reads"
        ]),
        m(&["shmbus wait_latest (blocking)"]),
        m(&["floor: raw futex wait/wake"]),
        m(&["shmbus has_new(), nothing new"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_come_from_the_rows_of_old_and_new_tables() {
        let old = "  shmbus publish 64 B (pre-encoded, notify off)       308 ns   22.9 us
  shmbus publish 64 B (notify on, no waiter)        147.3 us  326.9 us
  shmbus publish_bytes 64 B incl. 2 clock reads     115.5 us  644.3 us
  shmbus wait_latest (blocking)       235.2 us    3.0 ms
  floor: raw futex wait/wake          132.8 us    3.3 ms
";
        let f = bench_figures(old);
        assert_eq!(
            f,
            "publish 64 B: notify off 308 ns, fixed length ? (the layout's stores alone ?), \
             notify on with nobody asleep 147.3 us, \
             with the clock read(s) 115.5 us; wait_latest handoff 235.2 us (raw futex floor 132.8 us); has_new ?"
        );
        let new = "  shmbus publish_bytes() 64 B, clock read incl.      40 us   50 us
  floor: the layout's stores for a 64 B publish      211 ns    240 ns
  shmbus publish_array 64 B (fixed length, notify off)    250 ns    300 ns
";
        let f = bench_figures(new);
        assert!(f.contains("with the clock read(s) 40 us"), "{f}");
        assert!(
            f.contains("fixed length 250 ns (the layout's stores alone 211 ns)"),
            "{f}"
        );
    }
}
