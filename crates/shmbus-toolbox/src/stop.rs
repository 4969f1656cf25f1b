//! Ctrl-C and `kill`: SIGINT, SIGTERM and SIGHUP set a flag that the
//! long-running commands (record, replay, demo) check, so they finish what
//! they write and remove what they created instead of dying mid-way.
//!
//! The handlers are installed without `SA_RESTART`: a blocking call (a
//! sleep, a futex wait, a read) returns `EINTR` and the loop around it sees
//! the flag at once.

use std::sync::atomic::{AtomicBool, Ordering};

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

/// Run `f` with SIGINT, SIGTERM and SIGHUP held back (blocked in the
/// calling thread): one that arrives meanwhile is delivered when `f`
/// returns. A program that lets these signals end it (their default
/// action) is then never ended in the middle of `f`: a publish, whose slot
/// would be left mid-write and read by every subscriber as a publisher
/// that died mid-publish. Two `pthread_sigmask` calls; if the mask cannot
/// be changed, `f` runs anyway.
pub fn deferred<R>(f: impl FnOnce() -> R) -> R {
    use nix::sys::signal::{SigmaskHow, pthread_sigmask};
    let mut stops = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        stops.add(sig);
    }
    let mut before = SigSet::empty();
    let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&stops), Some(&mut before)).is_ok();
    let r = f();
    if blocked {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&before), None);
    }
    r
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

    /// A SIGTERM raised inside `deferred` waits for it to return, then
    /// ends the process as its default action does. Forked children, whose
    /// SIGTERM is reset to the default (another test installs a handler).
    #[test]
    fn a_stop_signal_inside_deferred_waits_for_it_to_return() {
        use shmbus_testkit::ForkChild;
        use std::time::Duration;
        let default_term = || {
            // SAFETY: restores the default action; no handler involved.
            let _ = unsafe { nix::sys::signal::signal(Signal::SIGTERM, SigHandler::SigDfl) };
        };
        // Still running after the raise: it exits 42 from inside.
        let inside = ForkChild::start(|| {
            default_term();
            deferred(|| {
                let _ = nix::sys::signal::raise(Signal::SIGTERM);
                // SAFETY: ends the forked child at once, as ForkChild does.
                unsafe { libc::_exit(42) }
            })
        })
        .unwrap();
        assert_eq!(inside.wait(Duration::from_secs(60)), Ok(42));
        // And ended by it once `deferred` returns, before the next line.
        let after = ForkChild::start(|| {
            default_term();
            deferred(|| {
                let _ = nix::sys::signal::raise(Signal::SIGTERM);
            });
            7
        })
        .unwrap();
        let end = after.wait(Duration::from_secs(60));
        assert_eq!(
            end,
            Err(format!(
                "the child ended by signal {}",
                Signal::SIGTERM as i32
            ))
        );
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
