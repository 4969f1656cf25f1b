//! Development binary: `shmbus-record record|replay|cat ...`, the same as
//! `shmbus record|replay|cat ...`.

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next() {
        Some(sub) if sub != "-h" && sub != "--help" => {
            shmbus_record::main_with_args(&sub, args.collect())
        }
        _ => {
            println!("Usage: shmbus-record record|replay|cat ... (each has --help)");
            std::process::ExitCode::SUCCESS
        }
    }
}
