//! SIGINT and SIGTERM set a flag; the bridge then says goodbye to the
//! broker (`offline`) and exits 0.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: core::ffi::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

/// Install the handler (with `SA_RESTART`: the threads' blocking calls go
/// on; a watcher polls the flag).
pub(crate) fn install() -> Result<(), String> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an AtomicBool, which is
        // async-signal-safe; it replaces no handler of ours.
        unsafe { sigaction(sig, &action) }
            .map_err(|e| format!("cannot install the {sig} handler: {e}"))?;
    }
    Ok(())
}

/// True once SIGINT or SIGTERM arrived.
pub(crate) fn requested() -> bool {
    STOP.load(Ordering::Relaxed)
}
