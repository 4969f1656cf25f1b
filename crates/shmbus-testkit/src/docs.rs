//! The commands the documentation shows a user, checked against the real
//! programs (`tests/docs.rs` of each crate with a program).
//!
//! A stop found docs naming a `shmbus config check` command that never
//! existed: a user typing it at 3 a.m. gets "unrecognized subcommand"
//! instead of the check. [`check_program`] reads every command line of one
//! program in the README, SECURITY.md, configs/README.md and `docs/*.md`
//! (inline code spans, and the lines of fenced blocks) and runs the real
//! binary's `--help` for it: a subcommand must be one the program's
//! `--help` lists, and every long option on the line must be one the
//! (sub)command's `--help` names. A renamed or removed option fails there
//! until the docs follow.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The repository's root, from a crate's `CARGO_MANIFEST_DIR`
/// (`crates/NAME`).
pub fn root(manifest_dir: &str) -> PathBuf {
    Path::new(manifest_dir).join("../..")
}

/// The Markdown files a user reads: README, SECURITY.md,
/// configs/README.md and `docs/*.md`.
pub fn doc_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![
        root.join("README.md"),
        root.join("SECURITY.md"),
        root.join("configs/README.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("a readable docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// One place a document shows a command.
#[derive(Debug)]
pub struct Shown {
    /// The file's name.
    pub file: String,
    /// The line the text starts on.
    pub line: usize,
    /// The text of the span or the (joined) line.
    pub text: String,
    /// Whether an unknown subcommand there is an error (a shell block or
    /// an inline span) or may be program output (a `text` or unlabelled
    /// block, where `shmbus busy-poll ...` is a row of a benchmark table).
    pub strict: bool,
}

/// Inline code spans (joined across line breaks, as Markdown does within a
/// paragraph) and the lines of fenced blocks (a line ending in `\` joined
/// with the next).
pub fn shown_commands(path: &Path) -> Vec<Shown> {
    let text = std::fs::read_to_string(path).expect("a readable doc");
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut out = Vec::new();
    let mut fence: Option<String> = None;
    let mut pending = String::new();
    let mut pending_line = 0;
    // Inline spans: a paragraph at a time, so a span broken over two lines
    // is read whole.
    let mut para = String::new();
    let mut para_start = 0;
    let flush_para = |para: &mut String, start: usize, out: &mut Vec<Shown>| {
        let mut parts = para.split('`');
        parts.next();
        // Every second part is inside backticks. A line-broken span
        // carries a newline: read it as the space Markdown makes of it.
        let mut inside = true;
        for p in parts {
            if inside {
                out.push(Shown {
                    file: file.clone(),
                    line: start,
                    text: p.replace('\n', " "),
                    strict: true,
                });
            }
            inside = !inside;
        }
        para.clear();
    };
    for (i, l) in text.lines().enumerate() {
        let n = i + 1;
        let t = l.trim_start();
        if let Some(rest) = t.strip_prefix("```") {
            if fence.is_none() {
                flush_para(&mut para, para_start, &mut out);
                fence = Some(rest.trim().to_string());
            } else {
                fence = None;
            }
            continue;
        }
        if let Some(lang) = &fence {
            if pending.is_empty() {
                pending_line = n;
            }
            let (body, cont) = match l.strip_suffix('\\') {
                Some(b) => (b, true),
                None => (l, false),
            };
            pending.push_str(body);
            pending.push(' ');
            if !cont {
                out.push(Shown {
                    file: file.clone(),
                    line: pending_line,
                    text: std::mem::take(&mut pending),
                    strict: matches!(lang.as_str(), "sh" | "bash" | "console" | "shell"),
                });
            }
            continue;
        }
        if t.is_empty() {
            flush_para(&mut para, para_start, &mut out);
            continue;
        }
        if para.is_empty() {
            para_start = n;
        }
        para.push_str(l);
        para.push('\n');
    }
    flush_para(&mut para, para_start, &mut out);
    out
}

/// A program as the docs show it run.
#[derive(Debug, Clone, Copy)]
pub struct Program<'a> {
    /// Its name: the command word (`shmbus-bridge`), also as the last part
    /// of a path (`target/release/shmbus-bridge`, `./shmbus-bridge`).
    pub name: &'a str,
    /// The cargo package it is built from: `cargo run -p PACKAGE --bin
    /// NAME -- ARGS` runs it too (without `--bin` when `default_bin`).
    pub package: &'a str,
    /// Whether `cargo run -p PACKAGE -- ARGS` (no `--bin`) runs it.
    pub default_bin: bool,
}

/// Programs that run the command after their own options.
const WRAPPERS: &[&str] = &[
    "sudo",
    "timeout",
    "taskset",
    "chrt",
    "nice",
    "ionice",
    "unshare",
    "nohup",
    "time",
    "strace",
    "setpriv",
    "qemu-arm",
    "qemu-aarch64",
];

/// Whether `word` runs `program`: `shmbus-bridge`,
/// `target/release/shmbus-bridge`, `./shmbus-bridge`, but not
/// `crates/shmbus-bridge/` or `shmbus-bridge.service`.
fn names(word: &str, program: &str) -> bool {
    word.rsplit('/').next() == Some(program) && !word.ends_with('/')
}

/// The argument lists of `program` in one shown text: each shell segment
/// (split at `|`, `&&`, `||`, `;` and `$(`) whose command is the program
/// (after a prompt, `env`, `exec`, `VAR=value` words and a wrapper such as
/// `sudo -u USER`), or a
/// `cargo run` of it. Words after a redirection or a `#` are left out.
pub fn invocations(text: &str, program: Program<'_>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let spaced = text
        .replace("$(", " ; ")
        .replace("&&", " ; ")
        .replace("||", " ; ")
        .replace(['|', '(', ')'], " ; ");
    for seg in spaced.split(';') {
        let mut words: Vec<&str> = seg.split_whitespace().collect();
        if let Some(cut) = words.iter().position(|w| {
            w.starts_with('>') || w.starts_with("2>") || w.starts_with('<') || *w == "#"
        }) {
            words.truncate(cut);
        }
        let mut i = 0;
        while i < words.len() {
            let w = words[i];
            let is_assign = w.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
            });
            if matches!(w, "$" | "#" | "env" | "exec") || is_assign {
                i += 1;
            } else {
                break;
            }
        }
        let mut words = &words[i..];
        // A wrapper (`sudo -u shmbus`, `taskset -c 0`, `qemu-arm -L DIR`,
        // `unshare --ipc`, `timeout 5`, ...): the program is the first of
        // its words that names it.
        if words.first().is_some_and(|w| WRAPPERS.contains(w)) {
            if let Some(at) = words.iter().position(|w| names(w, program.name)) {
                words = &words[at..];
            }
        }
        let Some(first) = words.first() else { continue };
        if names(first, program.name) {
            out.push(words[1..].iter().map(|s| s.to_string()).collect());
        } else if *first == "cargo"
            && words.get(1) == Some(&"run")
            && words.windows(2).any(|p| p == ["-p", program.package])
        {
            let dd = words.iter().position(|w| *w == "--").unwrap_or(words.len());
            let bin = words[..dd]
                .windows(2)
                .find(|p| p[0] == "--bin")
                .map(|p| p[1]);
            let runs_it = match bin {
                Some(b) => b == program.name,
                None => program.default_bin,
            };
            if runs_it && dd < words.len() {
                out.push(words[dd + 1..].iter().map(|s| s.to_string()).collect());
            }
        }
    }
    out
}

/// The long options a `--help` text names (`--count`, `--json`, ...).
pub fn long_options(help: &str) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for w in help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
        if w.len() > 2 && w.starts_with("--") && w.as_bytes()[2].is_ascii_lowercase() {
            set.insert(w.to_string());
        }
    }
    set
}

/// `EXE ARGS --help`, behind `SHMBUS_TEST_RUNNER` (qemu-arm) when the
/// suite is emulated.
pub fn help_of(exe: &str, args: &[&str]) -> String {
    let out = crate::command(exe)
        .args(args)
        .arg("--help")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the program runs");
    assert!(
        out.status.success(),
        "{exe} {args:?} --help failed: {out:?}"
    );
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The subcommands a `--help` text lists under `Commands:` (none for a
/// program without subcommands).
pub fn subcommands(help: &str) -> BTreeSet<String> {
    let Some(list) = help.split("Commands:").nth(1) else {
        return BTreeSet::new();
    };
    let list = list.split("Options:").next().unwrap_or(list);
    list.lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// What [`check_program`] found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Command lines checked against a `--help`.
    pub lines: usize,
    /// Each command line that does not work as written, with where it is.
    pub problems: Vec<String>,
}

/// Check every command line of `program` in the docs under `root` against
/// the `--help` of `exe` (its binary). `internal` lists options a
/// (sub)command takes but keeps out of its `--help`, as `(SUBCOMMAND,
/// OPTION)`, `SUBCOMMAND` empty for a program without subcommands.
pub fn check_program(
    root: &Path,
    program: Program<'_>,
    exe: &str,
    internal: &[(&str, &str)],
) -> Checked {
    let top = help_of(exe, &[]);
    let subs = subcommands(&top);
    let mut helps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    helps.insert(String::new(), long_options(&top));
    let mut checked = Checked::default();
    let name = program.name;
    for f in doc_files(root) {
        for shown in shown_commands(&f) {
            for args in invocations(&shown.text, program) {
                let at = format!("{}:{}: `{}`", shown.file, shown.line, shown.text.trim());
                let (sub, rest) = match args.first() {
                    _ if subs.is_empty() => (String::new(), &args[..]),
                    None => continue,
                    Some(a) if a.starts_with('-') => {
                        // `shmbus --version`, `shmbus --help`.
                        if !matches!(a.as_str(), "--version" | "-V" | "--help" | "-h") {
                            checked
                                .problems
                                .push(format!("{at}: `{name} {a}` is not an option of {name}"));
                        }
                        continue;
                    }
                    Some(a) if !subs.contains(a) => {
                        // In a shell block or an inline span an unknown
                        // word after the program is a command that does
                        // not exist; in program output it is a table
                        // row's label.
                        let word_like = a.chars().all(|c| c.is_ascii_lowercase() || c == '-');
                        if shown.strict && word_like {
                            checked
                                .problems
                                .push(format!("{at}: there is no `{name} {a}` command"));
                        }
                        continue;
                    }
                    Some(a) => (a.clone(), &args[1..]),
                };
                let opts = helps
                    .entry(sub.clone())
                    .or_insert_with(|| long_options(&help_of(exe, &[sub.as_str()])));
                checked.lines += 1;
                for a in rest {
                    let flag = a.split('=').next().unwrap_or(a);
                    let flag = flag.trim_end_matches([',', '.', '`', '\'', '"']);
                    if flag.len() > 2
                        && flag.starts_with("--")
                        && flag.as_bytes()[2].is_ascii_lowercase()
                        && !opts.contains(flag)
                        && flag != "--help"
                        && !internal.contains(&(sub.as_str(), flag))
                    {
                        let what = if sub.is_empty() {
                            format!("`{name}`")
                        } else {
                            format!("`{name} {sub}`")
                        };
                        checked.problems.push(format!(
                            "{at}: {what} has no option {flag} (its --help does not name it)"
                        ));
                    }
                }
            }
        }
    }
    checked
}

/// [`check_program`] for each of `programs` (name and binary), asserting
/// that each is shown at least `min_lines` times in all and that every
/// line works as written; prints a `FIGURE docs:` line.
pub fn assert_programs(
    manifest_dir: &str,
    package: &str,
    programs: &[(&str, &str, bool)],
    internal: &[(&str, &str)],
    min_lines: usize,
) {
    let root = root(manifest_dir);
    let mut lines = 0;
    let mut problems = Vec::new();
    for &(name, exe, default_bin) in programs {
        let program = Program {
            name,
            package,
            default_bin,
        };
        let c = check_program(&root, program, exe, internal);
        eprintln!(
            "FIGURE docs: {} {name} command lines checked against --help",
            c.lines
        );
        lines += c.lines;
        problems.extend(c.problems);
    }
    // A parse that found none would pass everything.
    assert!(
        lines >= min_lines,
        "only {lines} command lines of {package}'s programs found in the docs (expected {min_lines} or more)"
    );
    assert!(
        problems.is_empty(),
        "{} command line(s) in the docs do not work as written:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHMBUS: Program<'static> = Program {
        name: "shmbus",
        package: "shmbus-cli",
        default_bin: true,
    };

    #[test]
    fn the_reader_of_the_docs_finds_what_is_there_and_what_is_not() {
        assert_eq!(
            invocations(
                "sudo SHMBUS_CONFIG=/etc/b.toml shmbus echo imu --count 3 | head -n 2",
                SHMBUS
            ),
            vec![vec!["echo", "imu", "--count", "3"]]
        );
        assert_eq!(
            invocations(
                "cargo run --release -p shmbus-cli -- demo --duration 5 > /tmp/x --nope",
                SHMBUS
            ),
            vec![vec!["demo", "--duration", "5"]]
        );
        assert_eq!(
            invocations("shmbus list && shmbus rm $(shmbus list --json)", SHMBUS),
            vec![vec!["list"], vec!["rm"], vec!["list", "--json"]]
        );
        assert!(invocations("shmbus_core::topic::shown", SHMBUS).is_empty());
        // A program by path, and a cargo run that names its binary.
        let imu = Program {
            name: "shmbus-sensor-imu",
            package: "shmbus-sensors",
            default_bin: false,
        };
        assert_eq!(
            invocations(
                "target/release/shmbus-sensor-imu --demo-config --rate 200 &",
                imu
            ),
            vec![vec!["--demo-config", "--rate", "200", "&"]]
        );
        assert_eq!(
            invocations(
                "cargo run -p shmbus-sensors --bin shmbus-sensor-imu -- --rate 5",
                imu
            ),
            vec![vec!["--rate", "5"]]
        );
        assert!(
            invocations(
                "cargo run -p shmbus-sensors --bin shmbus-sensor-net -- --rate 5",
                imu
            )
            .is_empty()
        );
        assert!(invocations("ls crates/shmbus-sensor-imu/ -l", imu).is_empty());
        assert_eq!(
            invocations(
                "sudo -u shmbus taskset -c 0 qemu-arm -L /x shmbus-sensor-imu --rate 5",
                imu
            ),
            vec![vec!["--rate", "5"]]
        );
        assert!(invocations("journalctl -u shmbus-sensor-imu -f", imu).is_empty());
        let dir = crate::TempDir::new("docs-test");
        let f = dir.join("x.md");
        std::fs::write(
            &f,
            "Run `shmbus config\ncheck` to see.\n\n```text\n  shmbus busy-poll 10 ns\n```\n\n```sh\nshmbus echo imu \\\n  --count 3\n```\n",
        )
        .unwrap();
        let shown = shown_commands(&f);
        let texts: Vec<(usize, &str, bool)> = shown
            .iter()
            .map(|s| (s.line, s.text.trim(), s.strict))
            .collect();
        assert_eq!(
            texts,
            vec![
                (1, "shmbus config check", true),
                (5, "shmbus busy-poll 10 ns", false),
                (9, "shmbus echo imu    --count 3", true),
            ]
        );
    }

    #[test]
    fn subcommands_are_read_from_the_help() {
        let help = "Usage: x <COMMAND>\n\nCommands:\n  record  Record\n  cat     Show\n\nOptions:\n  -h, --help  Print help\n";
        let want: BTreeSet<String> = ["record", "cat"].iter().map(|s| s.to_string()).collect();
        assert_eq!(subcommands(help), want);
        assert!(subcommands("Usage: x [OPTIONS]\n\nOptions:\n  --rate <HZ>\n").is_empty());
        assert!(long_options("  --rate <HZ>  Rate\n  -h, --help\n").contains("--rate"));
    }
}
