//! Hold a process at the first system call after which a test's condition
//! holds: for a moment that is reached through system calls (a file read
//! so far, a topic not created yet), where [`crate::Caught`] would single-step
//! through millions of instructions to get there.

use crate::Suspended;

/// A process held at a system-call stop (or, where it cannot be traced,
/// by `SIGSTOP`) at the first one after which a test's condition held:
/// see [`AtSyscall::when`]. Dropping it lets the process go on.
#[derive(Debug)]
pub struct AtSyscall {
    pid: u32,
    how: Held,
    /// How many system-call stops or `SIGSTOP` samples it took.
    tries: u64,
}

#[derive(Debug)]
enum Held {
    /// Under this thread's `ptrace`, at a system-call entry or exit.
    Traced,
    /// Stopped by `SIGSTOP` (every thread); continued when dropped.
    Stopped { _held: Suspended },
}

/// Most system-call stops [`AtSyscall::when`] takes (two a call).
const MAX_STOPS: u64 = 10_000_000;
/// Most `SIGSTOP` samples [`AtSyscall::when`] takes where it cannot trace.
const MAX_SAMPLES: u64 = 100_000;

impl AtSyscall {
    /// Hold process `pid` (a child of this test) at the first system-call
    /// entry or exit at which `at()` is true, judged from outside (its
    /// `/proc` files, the System V objects it made).
    ///
    /// Deterministic where it can be: it traces the process (`ptrace`
    /// seize, `PTRACE_SYSCALL`) and checks `at()` at every stop, so a phase
    /// that lasts a few system calls (a replay's first read through a
    /// file, before it creates a topic) is caught however short it is and
    /// however long this test waits for a CPU. Sampling with `SIGSTOP`
    /// every millisecond was not: on a loaded machine this thread waited
    /// longer than the whole phase for its turn, and the test failed.
    ///
    /// Where a process cannot be traced (`qemu-arm` implements no
    /// `ptrace`; Yama's `ptrace_scope` 2 or 3), it falls back to `SIGSTOP`
    /// samples, at most 100,000.
    ///
    /// Only the thread `pid` (the main thread) is traced: other threads
    /// of the process go on running while it is held.
    pub fn when(pid: u32, mut at: impl FnMut() -> bool) -> Result<AtSyscall, String> {
        if let Some(c) = Self::traced(pid, &mut at)? {
            return Ok(c);
        }
        for tries in 1..=MAX_SAMPLES {
            let s = Suspended::stop(pid)?;
            if at() {
                return Ok(AtSyscall {
                    pid,
                    how: Held::Stopped { _held: s },
                    tries,
                });
            }
        }
        Err(format!(
            "process {pid} was never caught: {MAX_SAMPLES} SIGSTOP samples (it cannot be traced here)"
        ))
    }

    /// The traced way: `Ok(None)` if this system cannot trace `pid` (it is
    /// then left as it was).
    fn traced(pid: u32, at: &mut impl FnMut() -> bool) -> Result<Option<AtSyscall>, String> {
        use nix::sys::ptrace;
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
        let mut c = AtSyscall {
            pid,
            how: Held::Traced,
            tries: 0,
        };
        ptrace::interrupt(p).map_err(|e| format!("PTRACE_INTERRUPT {pid}: {e}"))?;
        loop {
            match waitpid(p, Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::PtraceSyscall(_)) | Ok(WaitStatus::PtraceEvent(..)) => {}
                // A signal for the process: passed on as it goes on (not
                // a system-call stop, so not one to be held at).
                Ok(WaitStatus::Stopped(_, sig)) => {
                    ptrace::syscall(p, sig).map_err(|e| format!("PTRACE_SYSCALL {pid}: {e}"))?;
                    continue;
                }
                Ok(other) => return Err(format!("process {pid} ended while traced: {other:?}")),
                Err(e) => return Err(format!("waitpid {pid} under ptrace: {e}")),
            }
            if at() {
                return Ok(Some(c));
            }
            if c.tries == MAX_STOPS {
                return Err(format!(
                    "process {pid} was never caught in {MAX_STOPS} system-call stops"
                ));
            }
            c.tries += 1;
            ptrace::syscall(p, None).map_err(|e| format!("PTRACE_SYSCALL {pid}: {e}"))?;
        }
    }

    /// Send `sig` to the held process, then let it go on: it takes the
    /// signal where it was held (at the end of the system call it is in).
    pub fn signal_and_go(self, sig: nix::sys::signal::Signal) -> Result<(), String> {
        let raw = i32::try_from(self.pid).map_err(|_| format!("pid {} out of range", self.pid))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), sig)
            .map_err(|e| format!("{sig} to {}: {e}", self.pid))
        // Drop: detached or continued, with `sig` pending.
    }

    /// How it was caught, for a failure's message: "after N system-call
    /// stops" or "after N SIGSTOP samples".
    pub fn how(&self) -> String {
        match self.how {
            Held::Traced => format!("after {} system-call stops", self.tries),
            Held::Stopped { .. } => format!("after {} SIGSTOP samples", self.tries),
        }
    }
}

impl Drop for AtSyscall {
    fn drop(&mut self) {
        if let Held::Traced = self.how {
            if let Ok(raw) = i32::try_from(self.pid) {
                // At a ptrace stop, so detaching is allowed; it continues
                // it. A process already gone has nothing to do.
                let _ = nix::sys::ptrace::detach(nix::unistd::Pid::from_raw(raw), None);
            }
        }
        // Held::Stopped: Suspended's drop continues it.
    }
}
