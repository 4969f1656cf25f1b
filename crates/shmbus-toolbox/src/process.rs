//! Processes: why a live one does nothing (its scheduler state, for the
//! tools that show a publisher that is alive but sends no frame, `shmbus
//! hz` and `shmbus top`), and how a program starts another copy of itself
//! or a sibling program under emulation ([`command`]).

use std::process::Command;

/// The environment variable that names a runner to put in front of every
/// program a shmbus program starts, such as `qemu-arm -L
/// /usr/arm-linux-gnueabihf`: a process under qemu-user cannot exec a
/// foreign binary itself (no binfmt registration on CI machines). The demo
/// starts its sensors, and `shmbus bench` its peers, through [`command`];
/// so do the tests. Unset or empty on a board: the program runs directly.
pub const RUNNER_ENV: &str = "SHMBUS_TEST_RUNNER";

/// A command that runs program `exe`, behind the runner [`RUNNER_ENV`]
/// names when it is set.
pub fn command(exe: impl AsRef<std::ffi::OsStr>) -> Command {
    command_behind(&std::env::var(RUNNER_ENV).unwrap_or_default(), exe)
}

/// [`command`] with the runner given (empty: none; split at whitespace).
///
/// A child behind a runner gets `G_SLICE=always-malloc`, whatever this
/// process's environment: QEMU 7.2's user mode (Debian 12's) can deadlock in
/// the child of a fork made while other guest threads run, in glib's GSlice
/// allocator (QEMU issue 285, fixed in 8.0), and the parent then waits for
/// good on a child that never reaches its exec. The variable puts glib's
/// slices on malloc, which is fork-safe. `ci/arm-env.sh` exports it for the
/// test binaries themselves.
pub fn command_behind(runner: &str, exe: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut parts = runner.split_whitespace();
    match parts.next() {
        Some(r) => {
            let mut c = Command::new(r);
            c.args(parts).arg(exe).env("G_SLICE", "always-malloc");
            c
        }
        None => Command::new(exe),
    }
}

/// Why a live publisher may be publishing nothing, read from its
/// `/proc/PID/stat`: stopped (SIGSTOP, a debugger), or blocked in the kernel
/// (an uninterruptible wait, such as a sysfs read from a hung I2C device;
/// with the kernel function it waits in, from `/proc/PID/wchan`, when this
/// process may see it). `None` for a process that runs or sleeps as usual,
/// or one this process cannot see (another PID namespace). Show it only
/// for a topic without a frame for a while: a sensor is in the kernel for a
/// moment during every read.
pub fn held_up(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let wchan = || {
        std::fs::read_to_string(format!("/proc/{pid}/wchan"))
            .ok()
            .filter(|w| !w.trim().is_empty() && w.trim() != "0")
    };
    held_up_in(&stat, wchan)
}

fn held_up_in(stat: &str, wchan: impl FnOnce() -> Option<String>) -> Option<String> {
    // "PID (COMM) STATE ...": COMM may hold spaces and parentheses; the
    // state is the first field after the last ')'.
    let state = stat[stat.rfind(')')? + 1..].split_whitespace().next()?;
    match state {
        "T" => Some("suspended (SIGSTOP; SIGCONT resumes it)".into()),
        "t" => Some("suspended by a debugger".into()),
        "D" => Some(match wchan() {
            Some(w) => format!("blocked in the kernel (uninterruptible, in {})", w.trim()),
            None => "blocked in the kernel (uninterruptible)".into(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_up_reads_the_state_after_the_last_parenthesis() {
        let none = || None;
        assert_eq!(held_up_in("42 (imu) S 1 42 42", none), None);
        assert_eq!(held_up_in("42 (imu) R 1 42 42", none), None);
        assert_eq!(
            held_up_in("42 (a (T) b) T 1 42", none).as_deref(),
            Some("suspended (SIGSTOP; SIGCONT resumes it)")
        );
        assert_eq!(
            held_up_in("42 (imu) t 1", none).as_deref(),
            Some("suspended by a debugger")
        );
        assert_eq!(
            held_up_in("42 (imu) D 1", || Some("i2c_imx_xfer\n".into())).as_deref(),
            Some("blocked in the kernel (uninterruptible, in i2c_imx_xfer)")
        );
        assert_eq!(
            held_up_in("42 (imu) D 1", none).as_deref(),
            Some("blocked in the kernel (uninterruptible)")
        );
        // A comm of ") T" is not a state; garbage is nothing.
        assert_eq!(held_up_in("42 () T) S 1", none), None);
        assert_eq!(held_up_in("garbage", none), None);
        assert_eq!(held_up_in("42 (imu)", none), None);
    }

    #[test]
    fn held_up_of_this_process_is_nothing() {
        assert_eq!(held_up(std::process::id() as i32), None);
        assert_eq!(held_up(i32::MAX), None);
    }
}
