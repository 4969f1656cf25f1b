//! The commands and configs the documentation gives a user work as written.
//!
//! A stop found docs naming a `shmbus config check` command that never
//! existed: a user typing it at 3 a.m. gets clap's "unrecognized
//! subcommand" instead of the check. This test reads every `shmbus ...`
//! command line in the README, SECURITY.md, configs/README.md and
//! `docs/*.md` (inline code spans, and the lines of fenced blocks) and runs
//! the real binary's `--help` for it: the subcommand must be one `shmbus
//! --help` lists, and every long option on the line must be one that
//! subcommand's `--help` names. A renamed or removed option fails here
//! until the docs follow. Every ```toml block that is a shmbus config (or
//! a part of one) must load without an error or a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Options a program accepts but keeps out of its `--help`, because they
/// are for the program itself (the docs explain them as such):
/// `shmbus bench` re-executes itself as `bench --peer ROLE` for each
/// peer process.
const INTERNAL: &[(&str, &str)] = &[("bench", "--peer")];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Markdown files a user reads.
fn doc_files() -> Vec<PathBuf> {
    let root = root();
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

/// One place a document shows a command: file, line, the text, and
/// whether an unknown subcommand there is an error (a shell block or an
/// inline span) or may be program output (a `text` or unlabelled block,
/// where `shmbus busy-poll ...` is a row of a benchmark table).
struct Shown {
    file: String,
    line: usize,
    text: String,
    strict: bool,
}

/// Inline code spans (joined across line breaks, as Markdown does within a
/// paragraph) and the lines of fenced blocks (a line ending in `\` joined
/// with the next).
fn shown_commands(path: &Path) -> Vec<Shown> {
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

/// The `shmbus` argument lists in one shown text: each shell segment (split
/// at `|`, `&&`, `||`, `;` and `$(`) whose command is `shmbus` (after a
/// prompt, `sudo`, `env` and `VAR=value` words), or `cargo run ... -p
/// shmbus-cli ... -- ARGS`. Words after a redirection are left out.
fn invocations(text: &str) -> Vec<Vec<String>> {
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
            if matches!(w, "$" | "#" | "sudo" | "env" | "exec") || is_assign {
                i += 1;
            } else {
                break;
            }
        }
        let words = &words[i..];
        match words.first() {
            Some(&"shmbus") => out.push(words[1..].iter().map(|s| s.to_string()).collect()),
            Some(&"cargo")
                if words.get(1) == Some(&"run")
                    && words.windows(2).any(|p| p == ["-p", "shmbus-cli"]) =>
            {
                if let Some(dd) = words.iter().position(|w| *w == "--") {
                    out.push(words[dd + 1..].iter().map(|s| s.to_string()).collect());
                }
            }
            _ => {}
        }
    }
    out
}

/// The long options a `--help` text names (`--count`, `--json`, ...).
fn long_options(help: &str) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for w in help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
        if w.len() > 2 && w.starts_with("--") && w.as_bytes()[2].is_ascii_lowercase() {
            set.insert(w.to_string());
        }
    }
    set
}

fn help_of(args: &[&str]) -> String {
    // Behind `SHMBUS_TEST_RUNNER` (qemu-arm) when the suite is emulated.
    let out = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus"))
        .args(args)
        .arg("--help")
        .output()
        .expect("shmbus runs");
    assert!(
        out.status.success(),
        "shmbus {args:?} --help failed: {out:?}"
    );
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The subcommands `shmbus --help` lists.
fn subcommands() -> BTreeSet<String> {
    let help = help_of(&[]);
    let list = help
        .split("Commands:")
        .nth(1)
        .and_then(|s| s.split("Options:").next())
        .expect("shmbus --help lists its commands");
    list.lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn every_command_the_docs_show_exists_with_the_options_they_give() {
    let subs = subcommands();
    assert!(
        subs.contains("echo") && subs.contains("doctor"),
        "the command list was not read: {subs:?}"
    );
    let mut helps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for f in doc_files() {
        for shown in shown_commands(&f) {
            for args in invocations(&shown.text) {
                let Some(sub) = args.first() else { continue };
                let at = format!("{}:{}: `{}`", shown.file, shown.line, shown.text.trim());
                if sub.starts_with('-') {
                    // `shmbus --version`, `shmbus --help`.
                    if !matches!(sub.as_str(), "--version" | "-V" | "--help" | "-h") {
                        problems.push(format!("{at}: `shmbus {sub}` is not an option of shmbus"));
                    }
                    continue;
                }
                let word_like = sub.chars().all(|c| c.is_ascii_lowercase() || c == '-');
                if !subs.contains(sub) {
                    // In a shell block or an inline span an unknown word
                    // after `shmbus` is a command that does not exist; in
                    // program output it is a table row's label.
                    if shown.strict && word_like {
                        problems.push(format!("{at}: there is no `shmbus {sub}` command"));
                    }
                    continue;
                }
                let opts = helps
                    .entry(sub.clone())
                    .or_insert_with(|| long_options(&help_of(&[sub])));
                checked += 1;
                for a in &args[1..] {
                    let flag = a.split('=').next().unwrap_or(a);
                    let flag = flag.trim_end_matches([',', '.', '`', '\'', '"']);
                    if flag.len() > 2
                        && flag.starts_with("--")
                        && flag.as_bytes()[2].is_ascii_lowercase()
                        && !opts.contains(flag)
                        && flag != "--help"
                        && !INTERNAL.contains(&(sub.as_str(), flag))
                    {
                        problems.push(format!(
                            "{at}: `shmbus {sub}` has no option {flag} (its --help does not name it)"
                        ));
                    }
                }
            }
        }
    }
    // The docs show dozens of commands: a parse that found none would pass
    // everything.
    assert!(checked > 50, "only {checked} commands found in the docs");
    assert!(
        problems.is_empty(),
        "{} command(s) in the docs do not work as written:\n{}",
        problems.len(),
        problems.join("\n")
    );
    eprintln!("FIGURE docs: {checked} shmbus command lines checked against --help");
}

#[test]
fn the_reader_of_the_docs_finds_what_is_there_and_what_is_not() {
    // The parser itself, on the shapes the docs use.
    assert_eq!(
        invocations("sudo SHMBUS_CONFIG=/etc/b.toml shmbus echo imu --count 3 | head -n 2"),
        vec![vec!["echo", "imu", "--count", "3"]]
    );
    assert_eq!(
        invocations("cargo run --release -p shmbus-cli -- demo --duration 5 > /tmp/x --nope"),
        vec![vec!["demo", "--duration", "5"]]
    );
    assert_eq!(
        invocations("shmbus list && shmbus rm $(shmbus list --json)"),
        vec![vec!["list"], vec!["rm"], vec!["list", "--json"]]
    );
    assert!(invocations("shmbus_core::topic::shown").is_empty());
    let dir = std::env::temp_dir().join(format!("shmbus-docs-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("x.md");
    std::fs::write(
        &f,
        "Run `shmbus config\ncheck` to see.\n\n```text\n  shmbus busy-poll 10 ns\n```\n\n```sh\nshmbus echo imu \\\n  --count 3\n```\n",
    )
    .unwrap();
    let shown = shown_commands(&f);
    std::fs::remove_dir_all(&dir).unwrap();
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

/// The ```toml blocks of the docs that are shmbus configs (or a part of
/// one: `[[topic]]`, `[defaults]`, `[bridge...]`), with where they start.
fn config_blocks(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).expect("a readable doc");
    let mut out = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim_start();
        match (&mut block, t.strip_prefix("```")) {
            (None, Some(lang)) if lang.trim() == "toml" => block = Some((i + 1, String::new())),
            (Some(_), Some(_)) => {
                let (at, body) = block.take().unwrap();
                let is_config = body.lines().any(|l| {
                    let l = l.trim_start();
                    l.starts_with("[[topic]]")
                        || l.starts_with("[defaults]")
                        || l.starts_with("[bridge")
                        || l.starts_with("[[bridge")
                });
                if is_config {
                    out.push((at, body));
                }
            }
            (Some((_, body)), None) => {
                body.push_str(t);
                body.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// The topic names a config part refers to (`topic = "x"`, `topics =
/// ["x", "y"]`) without declaring them.
fn referred_topics(body: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_topic = false;
    let mut declared = BTreeSet::new();
    for l in body.lines() {
        let l = l.split('#').next().unwrap_or("").trim();
        if l.starts_with('[') {
            in_topic = l == "[[topic]]";
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        let k = k.trim();
        let quoted = v.split('"').skip(1).step_by(2).map(str::to_string);
        match k {
            "name" if in_topic => declared.extend(quoted),
            "topic" | "topics" => names.extend(quoted),
            _ => {}
        }
    }
    &names - &declared
}

#[test]
fn every_config_the_docs_show_loads_without_warnings() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for f in doc_files() {
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        for (line, body) in config_blocks(&f) {
            // A part of a config (the bridge's sections) is checked with
            // the topics it names declared with every default.
            let mut text = body.clone();
            if !body
                .lines()
                .any(|l| l.trim_start().starts_with("[[topic]]"))
            {
                for name in referred_topics(&body) {
                    text.push_str(&format!("\n[[topic]]\nname = \"{name}\"\n"));
                }
            }
            let at = format!("{file}:{line}");
            checked += 1;
            match shmbus_config::Config::parse(&text, &at) {
                Ok(c) => {
                    for w in c.warnings() {
                        problems.push(format!("{at}: a warning: {w}"));
                    }
                }
                Err(e) => problems.push(format!("{at}: does not load:\n{e}")),
            }
        }
    }
    assert!(checked >= 1, "no config block found in the docs");
    assert!(
        problems.is_empty(),
        "configs in the docs that do not load as shown:\n{}",
        problems.join("\n")
    );
    eprintln!("FIGURE docs: {checked} config block(s) loaded");
}

#[test]
fn a_config_part_is_completed_with_the_topics_it_names() {
    let body = "[bridge]\ntopics = [\"imu\", \"power\"]\n[[bridge.in]]\ntopic = \"sp\" # x\n[[topic]]\nname = \"imu\"\n";
    let want: BTreeSet<String> = ["power", "sp"].iter().map(|s| s.to_string()).collect();
    assert_eq!(referred_topics(body), want);
}
