//! Running the scenarios: as `/init` on the board (mount the pseudo file
//! systems, run, power off) or as `shmbus-board scenarios` on a developer
//! machine (as root). A watchdog thread fails the run if a scenario hangs.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::scenarios::{MEMLOCK_LIMIT, Scenario};

/// The scenario running now and its deadline, for the watchdog.
static CURRENT: Mutex<Option<(&'static str, Instant)>> = Mutex::new(None);

/// Print a console line the host (ci/board/boot.sh) picks up.
fn say(line: &str) {
    console!("SHMBUS-BOARD: {line}");
}

/// The hard end of a run: on the board, flush the console, sync and power
/// off; elsewhere, exit.
fn finish(on_board: bool, pass: bool) -> ! {
    say(if pass { "PASS" } else { "FAIL" });
    if on_board {
        let _ = nix::sys::termios::tcdrain(std::io::stdout());
        nix::unistd::sync();
        let e = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
        eprintln!("shmbus-board: reboot(RB_POWER_OFF) failed: {e:?}");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    std::process::exit(if pass { 0 } else { 1 });
}

fn start_watchdog(on_board: bool) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let current = *CURRENT.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((name, deadline)) = current {
                if Instant::now() > deadline {
                    say(&format!(
                        "{name} ... FAIL: still running at its deadline (watchdog)"
                    ));
                    finish(on_board, false);
                }
            }
        }
    });
}

/// How long a scenario may take before the watchdog fails the run.
fn limit_of(name: &str) -> Duration {
    match name {
        "bench" => Duration::from_secs(300),
        _ => Duration::from_secs(120),
    }
}

/// Mount what a bare initramfs lacks. Errors are reported, not fatal: a
/// scenario that needs the mount fails with its own message.
fn mount_pseudo_fs() {
    use nix::mount::{MsFlags, mount};
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    for (src, dir, fs, fl, data) in [
        ("proc", "/proc", "proc", flags, None),
        ("sysfs", "/sys", "sysfs", flags, None),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        ),
    ] {
        let _ = std::fs::create_dir_all(dir);
        if let Err(e) = mount(Some(src), dir, Some(fs), fl, data) {
            if e != nix::errno::Errno::EBUSY {
                say(&format!("mount {fs} on {dir}: {e}"));
            }
        }
    }
}

fn describe_system() {
    let uname = nix::sys::utsname::uname().ok();
    let release = uname
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned());
    let machine = uname
        .as_ref()
        .map(|u| u.machine().to_string_lossy().into_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/device-tree/model").unwrap_or_default();
    let limits: Vec<String> = ["shmmax", "shmall", "shmmni"]
        .iter()
        .map(|k| {
            format!(
                "{k}={}",
                shmbus_core::sysvipc::kernel_limit(k).map_or("?".into(), |v| v.to_string())
            )
        })
        .collect();
    say(&format!(
        "system: Linux {} {}, {cores} core(s), model '{}', {}",
        release.unwrap_or_default(),
        machine.unwrap_or_default(),
        model.trim_end_matches('\0').trim(),
        limits.join(" ")
    ));
}

/// Run every scenario; print one line each and the verdict; never returns.
pub fn run(on_board: bool) -> ! {
    if on_board {
        mount_pseudo_fs();
    }
    say(&format!("runner pid {} started", std::process::id()));
    describe_system();
    start_watchdog(on_board);
    // Before any role drops to `sensor`: the limit they inherit. Root keeps
    // CAP_IPC_LOCK, so this does not constrain the runner itself.
    let memlock = nix::sys::resource::Resource::RLIMIT_MEMLOCK;
    let lim = MEMLOCK_LIMIT as libc::rlim_t; // 32-bit on armv7
    if let Err(e) = nix::sys::resource::setrlimit(memlock, lim, lim) {
        say(&format!(
            "setrlimit(RLIMIT_MEMLOCK, {MEMLOCK_LIMIT}) ... FAIL: {e}"
        ));
        finish(on_board, false);
    }
    let mut all: Vec<Scenario> = crate::scenarios::scenarios();
    all.extend(crate::tools::scenarios());
    all.extend(crate::hardening::scenarios());
    let only = std::env::var("SHMBUS_BOARD_ONLY").unwrap_or_default();
    // A name that is no scenario ran nothing and said only "0 scenarios".
    let unknown: Vec<&str> = only
        .split(',')
        .filter(|o| !o.is_empty() && !all.iter().any(|(name, _)| name == o))
        .collect();
    if !unknown.is_empty() {
        let names: Vec<&str> = all.iter().map(|(name, _)| *name).collect();
        say(&format!(
            "SHMBUS_BOARD_ONLY names no scenario {:?}; the scenarios: {} ... FAIL",
            unknown,
            names.join(",")
        ));
        finish(on_board, false);
    }
    let mut failed = 0;
    let mut ran = 0;
    for (name, f) in all {
        if !only.is_empty() && !only.split(',').any(|o| o == name) {
            continue;
        }
        ran += 1;
        let t0 = Instant::now();
        *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some((name, t0 + limit_of(name)));
        let outcome = std::panic::catch_unwind(f).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("panicked: {msg}"))
        });
        *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let secs = t0.elapsed().as_secs_f64();
        match outcome {
            Ok(summary) => say(&format!("{name} ... ok ({secs:.1} s): {summary}")),
            Err(reason) => {
                failed += 1;
                say(&format!("{name} ... FAIL ({secs:.1} s): {reason}"));
            }
        }
    }
    say(&format!("{ran} scenarios, {failed} failed"));
    finish(on_board, failed == 0 && ran > 0);
}
