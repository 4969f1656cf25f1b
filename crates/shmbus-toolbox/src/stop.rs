//! Ctrl-C and `kill`: SIGINT, SIGTERM and SIGHUP set a flag that the
//! long-running commands (record, replay, demo) check, so they finish what
//! they write and remove what they created instead of dying mid-way.
//!
//! The handlers are installed without `SA_RESTART`: a blocking call (a
//! sleep, a futex wait, a read) returns `EINTR` and the loop around it sees
//! the flag at once.
//!
//! Programs that keep the signals' default action (the sensors) run each
//! publish inside [`deferred`] instead: a stop signal still ends them by
//! that signal, but never in the middle of a frame, and at no system call
//! per frame.

use std::cell::Cell;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, compiler_fence};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: core::ffi::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

/// Clear the flag and install the handler for SIGINT, SIGTERM and SIGHUP.
pub fn install() -> Result<(), String> {
    STOP.store(false, Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an AtomicBool, which is
        // async-signal-safe; the previous handlers of these signals are the
        // defaults (nothing else in these programs installs one).
        unsafe { sigaction(sig, &action) }
            .map_err(|e| format!("cannot install the {sig} handler: {e}"))?;
    }
    Ok(())
}

/// True once SIGINT, SIGTERM or SIGHUP arrived since [`install`].
pub fn requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Run `f` (a publish, the open of a topic) so that SIGTERM, SIGINT or
/// SIGHUP cannot end the process in the middle of it: one that arrives
/// meanwhile, in any thread, ends the process by its default action right
/// after `f` returns (or unwinds), and one that arrives outside every
/// `deferred` call ends it at once, as before. Ended inside, a publisher
/// leaves its slot mid-write, read by every subscriber as a publisher that
/// died mid-publish until the next start repairs it.
///
/// No system call per call: the first call takes over the stop signals
/// ([`hold_stop_signals`], a few system calls once) and each call is then
/// two atomic read-modify-writes on a process-wide word.
///
/// ## Which signals
///
/// Only those whose action is the default when they are taken over. One
/// inherited ignored (`nohup`'s SIGHUP, a shell's `&` SIGINT) stays
/// ignored; one with a handler of the program's own ([`install`], which
/// only sets a flag) keeps it, and `deferred` then only counts.
///
/// ## How
///
/// `FRAMES` counts the `deferred` calls in progress in the whole process
/// and carries a pending bit per stop signal. The handler sets its
/// signal's bit: if no frame was in progress it ends the process at once
/// (the default action back, the signal unblocked, `raise`); if one was,
/// it returns, and the call that takes the count back to zero ends the
/// process by the lowest pending signal, as the kernel would deliver a
/// held one. Count and bits share one word, so "no frame in progress" and
/// "a signal is pending" are decided by one atomic operation each, with
/// no window between them:
///
/// - a signal right after the count went back to 0 (before anything else
///   of that thread ran) finds 0 and ends the process at once: the frame
///   is whole by then; the decrement itself returned the bits set before
///   it, so none is missed;
/// - a signal right after the count went up, before the frame's first
///   store, finds it at 1 and waits: the increment is `Acquire` and a
///   compiler fence follows, so no store of `f` is moved above it (nor,
///   `Release` and a fence, below the decrement);
/// - once a bit is set no new frame starts: a `deferred` call that finds
///   one gives its count back and waits for the process to end (another
///   thread may be ending it right then), without running `f`.
///
/// The check of [`hold_stop_signals`] having run is a `Once`: one load.
///
/// ## Fork and exec
///
/// A `fork` child inherits the handler and the taken-over state, but an
/// `atfork` hook sets its count to the frames the forking thread itself
/// is inside (the child has no other thread to end the others) and clears
/// the pending bits (the signal was the parent's): a child forked while
/// another thread publishes still dies of a stop signal at once. A test's
/// fork child that sets a signal back to the default calls
/// [`hold_stop_signals`] again. `exec` resets the handler to the default
/// action, as for any handler; ignored signals stay ignored.
pub fn deferred<R>(f: impl FnOnce() -> R) -> R {
    static TAKEN: Once = Once::new();
    TAKEN.call_once(hold_stop_signals);
    let frame = Frame::begin();
    let r = f();
    drop(frame);
    r
}

/// Take over each of SIGTERM, SIGINT and SIGHUP whose action is the
/// default now, for [`deferred`]; leave the others (ignored, or the
/// program's own handler) as they are. [`deferred`] calls it once by
/// itself, before its first frame starts; call it at start to make that
/// first call as quick as the others, or again after setting a signal
/// back to the default (a `fork` child of a test). A signal already taken
/// stays taken.
pub fn hold_stop_signals() {
    static HOOKED: Once = Once::new();
    HOOKED.call_once(|| {
        // SAFETY: `after_fork_child` only reads a thread-local Cell and
        // stores to an atomic, which is sound in a fork child of a
        // multi-threaded process (no lock, no allocation).
        let _ = unsafe { libc::pthread_atfork(None, None, Some(after_fork_child)) };
    });
    for sig in STOP_SIGNALS {
        // SAFETY: all-zero is a valid `sigaction` (SIG_DFL, empty mask).
        let mut now: libc::sigaction = unsafe { core::mem::zeroed() };
        // SAFETY: a query (no new action), into a valid struct.
        if unsafe { libc::sigaction(sig, core::ptr::null(), &mut now) } != 0
            || now.sa_sigaction != libc::SIG_DFL
        {
            continue;
        }
        // SAFETY: all-zero is a valid `sigaction`; its fields are set below.
        let mut ours: libc::sigaction = unsafe { core::mem::zeroed() };
        ours.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // Restarted: a read or wait of `f` interrupted by a signal that it
        // only notes goes on, as it did with the signal blocked.
        ours.sa_flags = libc::SA_RESTART;
        // SAFETY: the action replaced is the default (checked just above),
        // so no handler of the program's is lost; `on_stop_signal` is
        // async-signal-safe: an atomic read-modify-write, and on its one
        // path that ends the process, `sigaction`, `pthread_sigmask` and
        // `raise`, all async-signal-safe, and it never returns there.
        unsafe { libc::sigaction(sig, &ours, core::ptr::null_mut()) };
    }
}

/// SIGTERM (`systemctl stop`), SIGINT (Ctrl-C), SIGHUP (hang-up), in
/// ascending number: their pending bits in `FRAMES` are in the same order.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGHUP, libc::SIGINT, libc::SIGTERM];

/// The lowest pending bit of `FRAMES`; the bits below it count frames.
const PENDING_SHIFT: u32 = usize::BITS - STOP_SIGNALS.len() as u32;
const PENDING: usize = !0 << PENDING_SHIFT;
const COUNT: usize = !PENDING;

/// Low bits: the [`deferred`] calls in progress in this process (all
/// threads). High bits: the stop signals that arrived during one. Every
/// access is a read-modify-write of the one word, so all of them are
/// ordered by its modification order: whoever takes the count to zero
/// with a bit set, or sets a bit at a count of zero, is the one that
/// ends the process.
static FRAMES: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The `deferred` calls this thread is inside (for a fork child).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// One counted frame; its drop (also while unwinding from a panic in `f`)
/// ends it.
struct Frame;

impl Frame {
    fn begin() -> Frame {
        DEPTH.with(|d| d.set(d.get() + 1));
        // Acquire: no access of `f` moves above the count (pairs with the
        // Release of the decrement in `Drop`, another thread's or ours).
        let before = FRAMES.fetch_add(1, Ordering::AcqRel);
        if before & PENDING != 0 {
            // A stop signal came and the process is ending, or will when
            // the frames in progress end: leave without starting `f`.
            drop(Frame);
            loop {
                std::thread::park();
            }
        }
        // And for the compiler, for a handler on this thread: the frame's
        // stores stay after the increment.
        compiler_fence(Ordering::SeqCst);
        Frame
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        compiler_fence(Ordering::SeqCst);
        // Release: every store of `f` is before the count goes down.
        let before = FRAMES.fetch_sub(1, Ordering::AcqRel);
        DEPTH.with(|d| d.set(d.get() - 1));
        if before & COUNT == 1 && before & PENDING != 0 {
            end_by(before);
        }
    }
}

extern "C" fn on_stop_signal(sig: libc::c_int) {
    let Some(i) = STOP_SIGNALS.iter().position(|&s| s == sig) else {
        return;
    };
    // Pairs with the increment and decrement of `Frame`: at a count of 0
    // no frame is in progress and none will start (the bit is set).
    let before = FRAMES.fetch_or(1 << (PENDING_SHIFT + i as u32), Ordering::AcqRel);
    if before & COUNT == 0 {
        end_by(before | 1 << (PENDING_SHIFT + i as u32));
    }
    // Else: in a frame; the one that ends the last frame ends the process.
}

/// End the process by the lowest stop signal pending in `state`, by its
/// default action (systemd and shells see a death by that signal).
/// Async-signal-safe: called from the handler too.
fn end_by(state: usize) -> ! {
    let sig = STOP_SIGNALS[((state & PENDING) >> PENDING_SHIFT).trailing_zeros() as usize];
    // SAFETY: the default action back for a signal that had it when taken
    // over (only those set pending bits); then delivered at once to this
    // thread, where it is unblocked (inside its handler it is blocked).
    // Each call is async-signal-safe.
    unsafe {
        let mut only: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut only);
        libc::sigaddset(&mut only, sig);
        libc::signal(sig, libc::SIG_DFL);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &only, core::ptr::null_mut());
        libc::raise(sig);
        // Not reached: the default action of all three ends the process.
        libc::_exit(128 + sig)
    }
}

/// In a fork child: only this thread's frames are in progress, and no
/// stop signal was sent to the child.
extern "C" fn after_fork_child() {
    FRAMES.store(DEPTH.with(|d| d.get()), Ordering::Relaxed);
}

/// Sleep until `due`, in steps short enough (100 ms) to notice a stop
/// signal ([`install`]); false if one arrived first. `std::thread::sleep`
/// sleeps again after a signal, so a long pause (`replay` waiting for a
/// frame an hour later, `pub --rate 0.01`) would keep a Ctrl-C waiting.
pub fn sleep_until(due: std::time::Instant) -> bool {
    use std::time::{Duration, Instant};
    loop {
        if requested() {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        std::thread::sleep((due - now).min(Duration::from_millis(100)));
    }
}

/// The flag itself, for code that takes an `&AtomicBool` to watch.
pub fn flag() -> &'static AtomicBool {
    &STOP
}

#[cfg(test)]
mod tests {
    use super::*;

    use shmbus_testkit::ForkChild;
    use std::time::Duration;

    const LIMIT: Duration = Duration::from_secs(60);

    /// In a forked child: the stop signals back to their default action
    /// (another test of this process installs its flag handler, and a test
    /// run can inherit them ignored), then taken over for `deferred`.
    fn default_stops_held() {
        for sig in STOP_SIGNALS {
            // SAFETY: restores the default action; no handler involved.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
        hold_stop_signals();
    }

    fn raise(sig: Signal) {
        let _ = nix::sys::signal::raise(sig);
    }

    fn died_of(sig: Signal) -> Result<i32, String> {
        Err(format!("the child ended by signal {}", sig as i32))
    }

    /// A SIGTERM raised inside `deferred` waits for it to return, then
    /// ends the process as its default action does. Forked children.
    #[test]
    fn a_stop_signal_inside_deferred_waits_for_it_to_return() {
        // Still running after the raise: it exits 42 from inside.
        let inside = ForkChild::start(|| {
            default_stops_held();
            deferred(|| {
                raise(Signal::SIGTERM);
                // SAFETY: ends the forked child at once, as ForkChild does.
                unsafe { libc::_exit(42) }
            })
        })
        .unwrap();
        assert_eq!(inside.wait(LIMIT), Ok(42));
        // And ended by it once `deferred` returns, before the next line.
        let after = ForkChild::start(|| {
            default_stops_held();
            deferred(|| raise(Signal::SIGTERM));
            7
        })
        .unwrap();
        assert_eq!(after.wait(LIMIT), died_of(Signal::SIGTERM));
    }

    /// Outside every `deferred` call (before the first, between two) a
    /// stop signal ends the process at once, by that signal.
    #[test]
    fn a_stop_signal_outside_deferred_ends_the_process_at_once() {
        for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            let between = ForkChild::start(move || {
                default_stops_held();
                deferred(|| ());
                raise(sig);
                7
            })
            .unwrap();
            assert_eq!(between.wait(LIMIT), died_of(sig), "{sig}");
        }
    }

    /// Two signals inside one frame: the process dies of the lower one,
    /// as the kernel delivers two held signals.
    #[test]
    fn two_stop_signals_inside_deferred_end_it_by_the_lower() {
        let child = ForkChild::start(|| {
            default_stops_held();
            deferred(|| {
                raise(Signal::SIGTERM);
                raise(Signal::SIGINT);
            });
            7
        })
        .unwrap();
        assert_eq!(child.wait(LIMIT), died_of(Signal::SIGINT));
    }

    /// A SIGHUP inherited ignored (`nohup`) stays ignored: taking the stop
    /// signals over leaves it alone, inside `deferred` and outside.
    #[test]
    fn an_ignored_stop_signal_stays_ignored_across_deferred() {
        let child = ForkChild::start(|| {
            default_stops_held();
            // SAFETY: ignoring a signal installs no handler.
            unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
            hold_stop_signals();
            deferred(|| raise(Signal::SIGHUP));
            raise(Signal::SIGHUP);
            deferred(|| ());
            raise(Signal::SIGHUP);
            5
        })
        .unwrap();
        assert_eq!(child.wait(LIMIT), Ok(5));
    }

    /// A program with its own handler ([`install`], the CLI tools) keeps
    /// it: the signal sets its flag, inside `deferred` and outside, and
    /// does not end the process.
    #[test]
    fn a_programs_own_handler_is_not_replaced() {
        let child = ForkChild::start(|| {
            default_stops_held();
            if install().is_err() {
                return 1;
            }
            hold_stop_signals();
            deferred(|| raise(Signal::SIGTERM));
            if !requested() {
                return 2;
            }
            STOP.store(false, Ordering::Relaxed);
            raise(Signal::SIGTERM);
            deferred(|| ());
            if requested() { 9 } else { 3 }
        })
        .unwrap();
        assert_eq!(child.wait(LIMIT), Ok(9));
    }

    /// In a fresh process: a thread that raises `sig` (delivered to
    /// itself) when told to, and says when it has.
    fn other_thread(sig: Signal) -> impl Fn() {
        let (go, wait_go) = std::sync::mpsc::channel::<()>();
        let (done, wait_done) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if wait_go.recv().is_ok() {
                raise(sig);
                let _ = done.send(());
            }
        });
        move || {
            let _ = go.send(());
            let _ = wait_done.recv();
        }
    }

    /// Run `case` of test `name` of this module in a fresh process (its
    /// exit code or how it died): for a child that starts threads, which
    /// a fork child of this process must not (see
    /// `shmbus_testkit::in_fresh_process`).
    fn fresh(name: &str, case: &str) -> Result<i32, String> {
        shmbus_testkit::in_fresh_process(module_path!(), name, case, LIMIT)
    }

    /// In the fresh process [`fresh`] started: run the case, end the
    /// process with its code.
    fn as_fresh_process(case: impl FnOnce(&str) -> i32) {
        if let Some(c) = shmbus_testkit::fresh_case() {
            let code = case(&c);
            // SAFETY: ends this process, which exists for the case only.
            unsafe { libc::_exit(code) }
        }
    }

    /// A stop signal delivered to another thread (one that never publishes)
    /// while this one is inside `deferred` waits for it too: the count is
    /// the process's, not the thread's. The thread is started before the
    /// frame (one started inside would inherit a mask held for the frame).
    /// Each case runs in a fresh process (it starts a thread).
    #[test]
    fn a_stop_signal_to_another_thread_waits_for_the_frame() {
        const NAME: &str = "a_stop_signal_to_another_thread_waits_for_the_frame";
        as_fresh_process(|case| {
            // "SIGTERM inside", "SIGHUP after", ...
            let Some((Ok(sig), when)) = case.split_once(' ').map(|(s, w)| (s.parse(), w)) else {
                return 3;
            };
            default_stops_held();
            let signal_it = other_thread(sig);
            match when {
                // Still running after the signal: it exits 42 from inside.
                "inside" => deferred(|| {
                    signal_it();
                    // SAFETY: ends the process at once.
                    unsafe { libc::_exit(42) }
                }),
                "after" => {
                    deferred(signal_it);
                    7
                }
                _ => 3,
            }
        });
        for sig in [Signal::SIGTERM, Signal::SIGHUP] {
            let inside = fresh(NAME, &format!("{sig} inside"));
            assert_eq!(inside, Ok(42), "{sig}");
            let after = fresh(NAME, &format!("{sig} after"));
            assert_eq!(after, died_of(sig), "{sig}");
        }
    }

    /// A frame that panics still ends: the stop signal that came during
    /// it ends the process as the panic unwinds out of `deferred`.
    #[test]
    fn a_panic_inside_deferred_still_ends_the_frame() {
        let child = ForkChild::start(|| {
            default_stops_held();
            let _ = std::panic::catch_unwind(|| {
                deferred(|| {
                    raise(Signal::SIGTERM);
                    panic!("a frame that fails");
                })
            });
            7
        })
        .unwrap();
        assert_eq!(child.wait(LIMIT), died_of(Signal::SIGTERM));
    }

    /// A fork child of a process whose other thread is inside `deferred`
    /// does not inherit that frame (the thread is not in the child): a stop
    /// signal ends it at once.
    ///
    /// The parent is a fresh process (it starts a thread); its child, a fork
    /// child that starts none.
    #[test]
    fn a_fork_child_does_not_inherit_another_threads_frame() {
        as_fresh_process(|_| {
            default_stops_held();
            let (entered, wait_entered) = std::sync::mpsc::channel();
            let (release, wait_release) = std::sync::mpsc::channel::<()>();
            let publisher = std::thread::spawn(move || {
                deferred(|| {
                    let _ = entered.send(());
                    let _ = wait_release.recv();
                })
            });
            if wait_entered.recv().is_err() {
                return 1;
            }
            let child = ForkChild::start(|| {
                raise(Signal::SIGTERM);
                7
            });
            let end = child.map(|c| c.wait(LIMIT));
            let _ = release.send(());
            let _ = publisher.join();
            match end {
                Ok(e) if e == died_of(Signal::SIGTERM) => 0,
                _ => 2,
            }
        });
        let parent = fresh("a_fork_child_does_not_inherit_another_threads_frame", "");
        assert_eq!(parent, Ok(0));
    }

    #[test]
    fn a_signal_sets_the_flag() {
        install().unwrap();
        assert!(!requested());
        nix::sys::signal::raise(Signal::SIGTERM).unwrap();
        assert!(requested(), "SIGTERM sets the flag instead of killing");
        install().unwrap();
        assert!(!requested(), "install clears it");
    }
}
