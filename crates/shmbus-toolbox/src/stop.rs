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

/// The flag itself, for code that takes an `&AtomicBool` to watch.
pub fn flag() -> &'static AtomicBool {
    &STOP
}

#[cfg(test)]
mod tests {
    use super::*;

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
