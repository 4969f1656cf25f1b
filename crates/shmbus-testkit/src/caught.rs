//! Hold a child process at the first moment a test's condition holds: one
//! mechanism, advanced one instruction ([`Caught::when`]) or one system
//! call ([`Caught::at_syscall`]) at a time where the process can be traced,
//! and sampled with `SIGSTOP` where it cannot.

use std::time::{Duration, Instant};

use crate::Suspended;

/// A process held at the first moment a test's condition held: see
/// [`Caught::when`] and [`Caught::at_syscall`]. Dropping it lets the
/// process go on.
#[derive(Debug)]
pub struct Caught {
    pid: u32,
    how: Held,
    /// How many traced stops or `SIGSTOP` samples it took.
    tries: u64,
}

#[derive(Debug)]
enum Held {
    /// Under this thread's `ptrace`, stopped after a single step or at a
    /// system-call entry or exit.
    Traced(Advance),
    /// Stopped by `SIGSTOP` (every thread); continued when dropped.
    Stopped { _held: Suspended },
}

/// What a traced process is run by between two looks at the condition.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Advance {
    /// One instruction (`PTRACE_SINGLESTEP`).
    Step,
    /// To the next system-call entry or exit (`PTRACE_SYSCALL`).
    Syscall,
}

impl Advance {
    /// Most traced stops taken: minutes of stepping, or of system calls.
    fn most(self) -> u64 {
        match self {
            Advance::Step => 20_000_000,
            Advance::Syscall => 10_000_000,
        }
    }

    fn stops(self) -> &'static str {
        match self {
            Advance::Step => "single steps",
            Advance::Syscall => "system-call stops",
        }
    }
}

/// Most `SIGSTOP` samples taken where the process cannot be traced...
const MAX_SAMPLES: u64 = 100_000;
/// ...and the longest they go on for.
const SAMPLING: Duration = Duration::from_secs(150);
/// The longest the process runs between two samples (a random time up to
/// this): long enough that it gets somewhere between two looks.
const RUN_BETWEEN: Duration = Duration::from_micros(1_000);

impl Caught {
    /// Hold process `pid` (a child of this test) at the first moment
    /// `at()` is true, reading what it writes (a shared mapping).
    ///
    /// Deterministic where it can be: it traces the process (`ptrace`
    /// seize) and runs it one instruction at a time, checking `at()` after
    /// each, so a window of a few instructions (a publish's odd sequence)
    /// is caught on the first pass through it. Stopping it with `SIGSTOP`
    /// at random moments and looking was not: a stop is taken at the
    /// process's next return to user space, most often at the end of a
    /// system call, never inside the window, and on one CI machine a
    /// million tries never caught it.
    ///
    /// Where a process cannot be traced (`qemu-arm` implements no
    /// `ptrace`; 32-bit ARM kernels have no single step; Yama's
    /// `ptrace_scope` 2 or 3), it falls back to those `SIGSTOP` samples
    /// (a random time of up to 1 ms apart). Under `qemu-arm` that works: the stop is
    /// the host process's, taken anywhere in the emulation, which spends
    /// most of its time in the guest's writes.
    ///
    /// Only the thread `pid` is traced: other threads of the process go on
    /// running while it is held. For a libtest child, whose test runs on a
    /// thread of its own, pass that thread's id.
    pub fn when(pid: u32, at: impl FnMut() -> bool) -> Result<Caught, String> {
        Self::hold(pid, Advance::Step, at)
    }

    /// Hold process `pid` at the first system-call entry or exit at which
    /// `at()` is true, judged from outside (its `/proc` files, the System
    /// V objects it made): for a moment reached through system calls (a
    /// file read so far, a topic not created yet), where [`Caught::when`]
    /// would single-step through millions of instructions to get there.
    ///
    /// Traced (`PTRACE_SYSCALL`), a phase that lasts a few system calls (a
    /// replay's first read through a file, before it creates a topic) is
    /// caught however short it is and however long this test waits for a
    /// CPU; sampling with `SIGSTOP` every millisecond was not. Where it
    /// cannot trace, it samples as [`Caught::when`] does.
    pub fn at_syscall(pid: u32, at: impl FnMut() -> bool) -> Result<Caught, String> {
        Self::hold(pid, Advance::Syscall, at)
    }

    fn hold(pid: u32, advance: Advance, mut at: impl FnMut() -> bool) -> Result<Caught, String> {
        match Self::traced(pid, advance, &mut at)? {
            Some(c) => Ok(c),
            None => Self::sampled(pid, at),
        }
    }

    /// Where `pid` cannot be traced: `SIGSTOP` it, look, and if `at()` is
    /// false let it run for a random time of up to a millisecond before
    /// the next sample; at most 100,000 samples or 150 s.
    ///
    /// The run between samples is the point. Without it (stop, look,
    /// continue, stop again at once) a process got microseconds between
    /// two samples: under `qemu-arm`, where the test's own look takes
    /// longer than that, a replay sampled 100,000 times in 37 s never got
    /// as far as reading its file, and the test failed. The time is random
    /// so that the samples do not fall into step with a periodic process.
    fn sampled(pid: u32, mut at: impl FnMut() -> bool) -> Result<Caught, String> {
        let start = Instant::now();
        let mut random = Xorshift::seeded(pid);
        let mut tries = 0;
        while tries < MAX_SAMPLES && start.elapsed() < SAMPLING {
            tries += 1;
            let s = Suspended::stop(pid)?;
            if at() {
                return Ok(Caught {
                    pid,
                    how: Held::Stopped { _held: s },
                    tries,
                });
            }
            drop(s);
            std::thread::sleep(RUN_BETWEEN.mul_f64(random.unit()));
        }
        Err(format!(
            "process {pid} was never caught: {tries} SIGSTOP samples in {:.1?} (it cannot be traced here)",
            start.elapsed()
        ))
    }

    /// The traced way: `Ok(None)` if this system cannot trace `pid` or
    /// advance it as asked (it is then left as it was).
    fn traced(
        pid: u32,
        advance: Advance,
        at: &mut impl FnMut() -> bool,
    ) -> Result<Option<Caught>, String> {
        use nix::sys::ptrace;
        use nix::sys::signal::Signal;
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        let raw = i32::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
        let p = nix::unistd::Pid::from_raw(raw);
        // EXITKILL: if this test dies while holding it, the kernel kills
        // the process rather than leave it stopped. TRACESYSGOOD: a
        // system-call stop is told apart from a SIGTRAP for the process.
        let options = ptrace::Options::PTRACE_O_EXITKILL | ptrace::Options::PTRACE_O_TRACESYSGOOD;
        if ptrace::seize(p, options).is_err() {
            return Ok(None);
        }
        // From here on, any way out detaches (and so continues) it.
        let mut c = Caught {
            pid,
            how: Held::Traced(advance),
            tries: 0,
        };
        ptrace::interrupt(p).map_err(|e| format!("PTRACE_INTERRUPT {pid}: {e}"))?;
        loop {
            let mut inject = None;
            match waitpid(p, Some(WaitPidFlag::__WALL)) {
                // The stop asked for: after a step, at a system call, or
                // the interrupt's.
                Ok(WaitStatus::PtraceSyscall(_)) | Ok(WaitStatus::PtraceEvent(..)) => {}
                Ok(WaitStatus::Stopped(_, Signal::SIGTRAP)) if advance == Advance::Step => {}
                // A signal for the process: passed on as it goes on, and
                // never a stop to hold it at (detaching there would lose
                // the signal).
                Ok(WaitStatus::Stopped(_, sig)) => inject = Some(sig),
                Ok(other) => return Err(format!("process {pid} ended while traced: {other:?}")),
                Err(e) => return Err(format!("waitpid {pid} under ptrace: {e}")),
            }
            if inject.is_none() {
                if at() {
                    return Ok(Some(c));
                }
                if c.tries == advance.most() {
                    return Err(format!(
                        "process {pid} was never caught in {} {}",
                        c.tries,
                        advance.stops()
                    ));
                }
                c.tries += 1;
            }
            let went = match advance {
                Advance::Step => ptrace::step(p, inject),
                Advance::Syscall => ptrace::syscall(p, inject),
            };
            if let Err(e) = went {
                if advance == Advance::Step && c.tries == 1 {
                    // No single step on this kernel (32-bit ARM: EIO).
                    drop(c);
                    return Ok(None);
                }
                return Err(format!("advancing traced process {pid}: {e}"));
            }
        }
    }

    /// Send `sig` to the held process, then let it go on: it takes the
    /// signal right where it was held (after a system-call stop, at the
    /// end of that call).
    pub fn signal_and_go(self, sig: nix::sys::signal::Signal) -> Result<(), String> {
        let raw = i32::try_from(self.pid).map_err(|_| format!("pid {} out of range", self.pid))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), sig)
            .map_err(|e| format!("{sig} to {}: {e}", self.pid))
        // Drop: detached or continued, with `sig` pending.
    }

    /// How it was caught, for a failure's message: "after N single steps",
    /// "after N system-call stops" or "after N SIGSTOP samples".
    pub fn how(&self) -> String {
        match self.how {
            Held::Traced(advance) => format!("after {} {}", self.tries, advance.stops()),
            Held::Stopped { .. } => format!("after {} SIGSTOP samples", self.tries),
        }
    }
}

impl Drop for Caught {
    fn drop(&mut self) {
        if let Held::Traced(_) = self.how {
            if let Ok(raw) = i32::try_from(self.pid) {
                // At a ptrace stop, so detaching is allowed; it continues
                // it. A process already gone has nothing to do.
                let _ = nix::sys::ptrace::detach(nix::unistd::Pid::from_raw(raw), None);
            }
        }
        // Held::Stopped: Suspended's drop continues it.
    }
}

/// Enough randomness for sample times (no dependency for it).
struct Xorshift(u64);

impl Xorshift {
    fn seeded(pid: u32) -> Xorshift {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Xorshift((now ^ (u64::from(pid) << 32)) | 1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU time process `pid` has used, in clock ticks (`/proc/PID/stat`).
    fn cpu_ticks(pid: u32) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // After the command name's closing parenthesis: state is field 3,
        // utime and stime fields 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|v| v.parse().ok())
            .collect();
        f.iter().sum()
    }

    /// Sampling (the way under `qemu-arm`) lets the process get somewhere
    /// between two samples: a busy child is caught once it has used 30
    /// clock ticks of CPU (300 ms at 100 Hz), and stays where it was caught
    /// while held. With no run between samples it got microseconds per
    /// sample, and under emulation a replay never reached its first read.
    #[test]
    fn sampling_lets_the_process_run_between_samples_and_holds_it_when_caught() {
        crate::watchdog("sampling", Duration::from_secs(300));
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "while :; do :; done"]);
        crate::dies_with_parent(&mut cmd);
        let child = crate::KillOnDrop(cmd.spawn().unwrap());
        let pid = child.0.id();
        let held = Caught::sampled(pid, || cpu_ticks(pid) >= 30).unwrap();
        let at = cpu_ticks(pid);
        assert!(at >= 30, "{at}");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(cpu_ticks(pid), at, "held {} but it ran on", held.how());
        drop(held);
        let went_on = crate::settled(|| cpu_ticks(pid), |&t| t > at);
        assert!(went_on > at, "not continued when let go");
    }

    #[test]
    fn the_random_run_between_samples_stays_in_the_unit_interval() {
        let mut r = Xorshift::seeded(42);
        let (mut low, mut high) = (false, false);
        for _ in 0..10_000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u), "{u}");
            low |= u < 0.1;
            high |= u > 0.9;
        }
        assert!(low && high, "not spread over the interval");
    }
}
