//! Operating-system plumbing: the scratch segment the floors run in, CPU
//! pinning, waiting loops, and peer processes (this executable run again).

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use shmbus_core::sys::{self, WriteAttachment};

/// A private System V segment for the floors (`shmget(IPC_PRIVATE)`).
///
/// It is marked for removal (`IPC_RMID`) as soon as the creator has
/// attached it: Linux lets peers attach a removed segment by its shmid while
/// it still has attachments, and the kernel frees it when the last one
/// detaches, so nothing is left behind even if the bench is killed.
pub struct Scratch {
    att: WriteAttachment,
}

impl Scratch {
    /// Create, attach and mark for removal a segment of `size` bytes.
    pub fn create(size: usize) -> Result<Scratch, String> {
        let id = sys::shmget(nix::libc::IPC_PRIVATE, size, 0o600 | nix::libc::IPC_CREAT).map_err(
            |e| format!("cannot create the scratch segment: {e} (check `shmbus doctor`)"),
        )?;
        let att = WriteAttachment::read_write(id);
        let _ = sys::shm_remove(id);
        Ok(Scratch {
            att: att.map_err(|e| format!("cannot attach the scratch segment: {e}"))?,
        })
    }

    /// Attach the creator's segment `shmid` (in a peer).
    pub fn attach(shmid: i32) -> Result<Scratch, String> {
        Ok(Scratch {
            att: WriteAttachment::read_write(shmid)
                .map_err(|e| format!("cannot attach scratch segment {shmid}: {e}"))?,
        })
    }

    /// The shmid to hand to peers.
    pub fn shmid(&self) -> i32 {
        self.att.shmid()
    }

    /// `n` words at byte `offset`.
    pub fn words(&self, offset: usize, n: usize) -> &[AtomicU32] {
        self.att
            .atomic_words(offset, n)
            .unwrap_or_else(|| panic!("scratch segment too small for {n} words at {offset}"))
    }
}

/// Spins before a busy-wait starts yielding; see [`set_spin_limit`].
static SPIN_LIMIT: AtomicU32 = AtomicU32::new(200);

/// Environment variable that hands the spin limit to peers.
const SPIN_ENV: &str = "SHMBUS_BENCH_SPIN";

/// Set how long busy-waits spin before they yield: short with one CPU (the
/// other side can only run if we give the CPU away), long with several
/// (like iceoryx2's pure spinning, so the scheduler spreads an unpinned
/// pair over two CPUs). Peers inherit the value.
pub fn set_spin_limit(cpus: usize) {
    SPIN_LIMIT.store(if cpus >= 2 { 20_000 } else { 200 }, Ordering::Relaxed);
}

/// In a peer: take the spin limit the parent chose.
pub fn inherit_spin_limit() {
    if let Some(n) = std::env::var(SPIN_ENV).ok().and_then(|v| v.parse().ok()) {
        SPIN_LIMIT.store(n, Ordering::Relaxed);
    }
}

/// How long any wait for the other side may take before the bench gives
/// up on it (a peer that died, or a parent that stopped).
pub const ANSWER_TIMEOUT_NS: u64 = 20_000_000_000;

/// The error for a wait that ran past [`ANSWER_TIMEOUT_NS`].
pub fn no_answer() -> String {
    format!(
        "no answer from the other process within {} s",
        ANSWER_TIMEOUT_NS / 1_000_000_000
    )
}

/// Wait until `ready()` holds: spin, then give the CPU away on every retry
/// (on a one-core board the other side can only run if we yield). The
/// floors and shmbus's busy-poll handoff use this same loop. Fails after
/// [`ANSWER_TIMEOUT_NS`] of yielding.
#[inline]
pub fn spin_until(mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let limit = SPIN_LIMIT.load(Ordering::Relaxed);
    let mut tries = 0u32;
    let mut since = 0u64;
    while !ready() {
        tries = tries.wrapping_add(1);
        if tries < limit {
            core::hint::spin_loop();
        } else {
            sys::yield_now();
            if tries % 1024 == 0 {
                let now = sys::monotonic_ns();
                if since == 0 {
                    since = now;
                } else if now - since > ANSWER_TIMEOUT_NS {
                    return Err(no_answer());
                }
            }
        }
    }
    Ok(())
}

/// The CPUs this process may run on, and pinning to one of them.
pub struct Cpus {
    all: CpuSet,
    list: Vec<usize>,
}

impl Cpus {
    /// Read this process's affinity mask.
    pub fn get() -> Cpus {
        let all = sched_getaffinity(Pid::from_raw(0)).unwrap_or_default();
        let list = (0..CpuSet::count())
            .filter(|c| all.is_set(*c).unwrap_or(false))
            .collect();
        Cpus { all, list }
    }

    /// Two different CPUs to pin a pair of processes to, if there are two.
    pub fn pair(&self) -> Option<(usize, usize)> {
        match self.list.as_slice() {
            [a, b, ..] => Some((*a, *b)),
            _ => None,
        }
    }

    /// Number of usable CPUs.
    pub fn count(&self) -> usize {
        self.list.len()
    }

    /// Pin the calling process to `cpu`, or back to every allowed CPU.
    pub fn pin(&self, cpu: Option<usize>) {
        let set = match cpu {
            Some(c) => {
                let mut s = CpuSet::new();
                let _ = s.set(c);
                s
            }
            None => self.all,
        };
        let _ = sched_setaffinity(Pid::from_raw(0), &set);
    }
}

/// Pin the calling process to `cpu` (in a peer).
pub fn pin_to(cpu: usize) -> Result<(), String> {
    let mut s = CpuSet::new();
    s.set(cpu).map_err(|e| format!("cpu {cpu}: {e}"))?;
    sched_setaffinity(Pid::from_raw(0), &s).map_err(|e| format!("sched_setaffinity({cpu}): {e}"))
}

/// A peer process: this executable run again as `bench --peer ...`.
/// Killed on drop unless it was waited for.
pub struct Peer {
    child: Child,
    out: BufReader<ChildStdout>,
}

/// The command that runs this executable again with `args`, behind
/// `SHMBUS_TEST_RUNNER` when set (qemu-user cannot exec a foreign binary
/// itself).
pub fn self_command(args: &[String]) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| "shmbus".into());
    let mut cmd = shmbus_toolbox::process::command(exe);
    cmd.arg("bench").arg("--peer").args(args);
    cmd.env(SPIN_ENV, SPIN_LIMIT.load(Ordering::Relaxed).to_string());
    cmd
}

impl Peer {
    /// Spawn a peer playing `role` and wait for its `ready` line. `pass`
    /// are descriptors the peer inherits (their numbers go in `args`).
    pub fn spawn(role: &str, args: &[String], pass: &[BorrowedFd<'_>]) -> Result<Peer, String> {
        let mut all = vec![role.to_string()];
        all.extend_from_slice(args);
        Self::spawn_cmd(self_command(&all), pass)
    }

    /// Spawn `cmd` (stdout piped) and wait for its `ready` line.
    pub fn spawn_cmd(cmd: Command, pass: &[BorrowedFd<'_>]) -> Result<Peer, String> {
        // Until `ready`, the peer may be making its topics: an interrupt's
        // cleanup waits for that (`crate::Creations`).
        crate::creating(|| Self::spawn_ready(cmd, pass))
    }

    fn spawn_ready(mut cmd: Command, pass: &[BorrowedFd<'_>]) -> Result<Peer, String> {
        for fd in pass {
            set_inheritable(*fd, true)?;
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).spawn();
        for fd in pass {
            set_inheritable(*fd, false)?;
        }
        let mut child = child.map_err(|e| format!("cannot start a peer process: {e}"))?;
        let out = BufReader::new(child.stdout.take().ok_or("peer has no stdout")?);
        let mut p = Peer { child, out };
        let line = p.line()?;
        if line != "ready" {
            return Err(format!("peer did not start: said '{line}'"));
        }
        Ok(p)
    }

    /// The next line the peer prints (without the newline).
    pub fn line(&mut self) -> Result<String, String> {
        let mut s = String::new();
        match self.out.read_line(&mut s) {
            Ok(0) => Err("peer exited early (see its message above)".into()),
            Ok(_) => Ok(s.trim_end().to_string()),
            Err(e) => Err(format!("reading from peer: {e}")),
        }
    }

    /// The next line the peer prints, if it prints one within `timeout`
    /// (`None` otherwise). A line is written whole by one `println!`.
    pub fn line_within(&mut self, timeout: std::time::Duration) -> Result<Option<String>, String> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        if !self.out.buffer().contains(&b'\n') {
            let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.out.get_ref().as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => return Ok(None),
                Err(e) => return Err(format!("poll on a peer's output: {e}")),
            }
        }
        self.line().map(Some)
    }

    /// Wait for the peer to exit; an error if it failed.
    pub fn finish(mut self) -> Result<(), String> {
        let st = self
            .child
            .wait()
            .map_err(|e| format!("waiting for peer: {e}"))?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("peer failed: {st}"))
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn set_inheritable(fd: BorrowedFd<'_>, on: bool) -> Result<(), String> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let flags = if on {
        FdFlag::empty()
    } else {
        FdFlag::FD_CLOEXEC
    };
    fcntl(fd, FcntlArg::F_SETFD(flags))
        .map(drop)
        .map_err(|e| format!("fcntl(F_SETFD): {e}"))
}

/// Take ownership of descriptor `fd` inherited from the parent.
pub fn inherited_fd(fd: RawFd) -> Result<OwnedFd, String> {
    // Refuse a number that is not an open descriptor (F_GETFD fails).
    // SAFETY: F_GETFD only inspects the descriptor table.
    if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } < 0 {
        return Err(format!("descriptor {fd} was not inherited"));
    }
    // SAFETY: the parent passed this descriptor to us (it is open, checked
    // above) for our exclusive use; nothing else in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The raw number of a descriptor, to pass on a command line.
pub fn fd_arg(fd: &impl AsFd) -> String {
    use std::os::fd::AsRawFd;
    fd.as_fd().as_raw_fd().to_string()
}
