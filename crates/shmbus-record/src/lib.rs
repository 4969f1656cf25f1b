//! shmbus-record (being written).

/// Entry point of `shmbus record`-family subcommands: `args` are the words
/// after the subcommand name. Placeholder until the crate is written.
pub fn main_with_args(subcommand: &str, args: Vec<String>) -> std::process::ExitCode {
    let _ = args;
    eprintln!("shmbus: '{subcommand}' is not available in this build yet");
    std::process::ExitCode::from(2)
}
