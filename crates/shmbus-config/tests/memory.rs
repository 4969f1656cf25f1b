//! How much heap a parse takes, whatever the file holds: a file that is
//! not a config (a log, a script, a line of garbage repeated) given as
//! `--config` must not cost a board more memory than a real config of the
//! same size. This binary counts every allocation, so it holds one test.

use shmbus_config::{Config, MAX_CONFIG_BYTES, RECOVER_BYTES};
use shmbus_testkit::CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The heap `Config::parse` of `text` took at its peak, beyond what was
/// live before (the text itself included in neither).
fn peak_of_parse(text: &str) -> usize {
    let (result, peak) = CountingAlloc::peak_during(|| Config::parse(text, "x.toml"));
    assert!(result.is_err(), "garbage was taken for a config");
    peak
}

/// Files of the largest size `load` takes, each with a syntax error on
/// every line, take heap in proportion to their length like any parse,
/// not a few hundred bytes per error: 1 MiB of `=` lines (three errors on
/// each line) took 406 bytes of heap per byte of text before, 426 MB.
/// And a file up to `RECOVER_BYTES` still gets every error collected.
#[test]
fn a_file_of_syntax_errors_costs_memory_in_proportion_to_its_size() {
    let size = MAX_CONFIG_BYTES as usize;
    let log: String = (0..)
        .map(|i| {
            format!(
                "Dec  2 14:44:{:02} board kernel: [{i}] eth0 link up\n",
                i % 60
            )
        })
        .take_while({
            let mut n = 0;
            move |l: &String| {
                n += l.len();
                n <= size
            }
        })
        .collect();
    // One unknown field as long as the file: its "did you mean" is looked
    // for among the known fields. A first version of the tenth pass's
    // hint kept a whole table of distances (its length by each field's):
    // 101 bytes of heap per byte of it.
    let field = format!("{} = 1\n", "a".repeat(size - 5));
    // 7 bytes of heap per byte of it on x86_64 now (one token; its name
    // and its lower-case copy); a third of the others' bound.
    for (what, text, most) in [
        ("`=` lines", "=\n".repeat(size / 2), 160),
        ("a kernel log", log, 160),
        ("one unknown field", field, 50),
    ] {
        let peak = peak_of_parse(&text);
        println!(
            "{what}: {} bytes of text, {} bytes of heap at the peak ({:.0} per byte)",
            text.len(),
            peak,
            peak as f64 / text.len() as f64
        );
        // The parser's tokens and events alone: 103 bytes of heap per
        // byte of `=` lines on x86_64, 24 for the log. 160 leaves room
        // for another word size, and is far below the 406 per byte that
        // keeping every error took.
        assert!(
            peak < most * text.len(),
            "{what}: {peak} bytes of heap for {} bytes of text",
            text.len()
        );
    }
    // Up to RECOVER_BYTES every error is still collected (and counted).
    let text = "=\n".repeat(RECOVER_BYTES / 2);
    let e = Config::parse(&text, "x.toml").expect_err("garbage");
    assert!(e.len() >= RECOVER_BYTES / 2, "{} problems", e.len());
}
