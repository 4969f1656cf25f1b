//! Ctrl-C and `kill`: SIGINT and SIGTERM set a flag that the recorder and
//! replay loops check, so they finish the file (or stop publishing) cleanly.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

#[allow(non_camel_case_types)] // reason: mirrors C's `int` in the handler signature
type libc_int = core::ffi::c_int;

/// Clear the flag and install the SIGINT/SIGTERM handler. Without
/// `SA_RESTART`, so a blocking call returns `EINTR` and its loop sees the
/// flag at once.
pub fn install() -> Result<(), String> {
    STOP.store(false, Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an AtomicBool, which is
        // async-signal-safe; no other handler of ours is replaced.
        unsafe { sigaction(sig, &action) }
            .map_err(|e| format!("cannot install the {sig} handler: {e}"))?;
    }
    Ok(())
}

/// True once SIGINT or SIGTERM arrived since [`install`].
pub fn requested() -> bool {
    STOP.load(Ordering::Relaxed)
}
