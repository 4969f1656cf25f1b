//! `shmbus demo`: placeholder until helper "sensors" writes the demo.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Run the demo publishers. Placeholder: not available in this build yet.
pub fn run(duration: Option<Duration>, config: Option<PathBuf>) -> ExitCode {
    let _ = (duration, config);
    eprintln!("shmbus: 'demo' is not available in this build yet");
    ExitCode::from(2)
}
