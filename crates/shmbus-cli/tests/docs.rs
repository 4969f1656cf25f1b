//! The commands and configs the documentation gives a user work as written.
//!
//! Every `shmbus ...` command line in the README, SECURITY.md,
//! configs/README.md and `docs/*.md` names a real subcommand with options
//! its `--help` names (`shmbus_testkit::docs`; the other programs have the
//! same test in their own crates). Every ```toml block that is a shmbus
//! config (or a part of one) must load without an error or a warning.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Options a program accepts but keeps out of its `--help`, because they
/// are for the program itself (the docs explain them as such):
/// `shmbus bench` re-executes itself as `bench --peer ROLE` for each
/// peer process.
const INTERNAL: &[(&str, &str)] = &[("bench", "--peer")];

fn doc_files() -> Vec<PathBuf> {
    shmbus_testkit::docs::doc_files(&shmbus_testkit::docs::root(env!("CARGO_MANIFEST_DIR")))
}

#[test]
fn every_command_the_docs_show_exists_with_the_options_they_give() {
    shmbus_testkit::docs::assert_programs(
        env!("CARGO_MANIFEST_DIR"),
        "shmbus-cli",
        &[("shmbus", env!("CARGO_BIN_EXE_shmbus"), true)],
        INTERNAL,
        50,
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

/// The text of the source files under `root` (programs, tests, scripts,
/// packaging), one string: what a name the docs cite must occur in.
fn source_text(root: &Path) -> String {
    const CODE: &[&str] = &["rs", "py", "c", "h", "sh", "js", "mjs", "toml", "in"];
    let mut text = String::new();
    let mut dirs: Vec<PathBuf> = [
        "crates",
        "ci",
        "bench",
        "fuzz",
        "packaging",
        "python",
        ".ci",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if !matches!(
                    name.as_str(),
                    "target" | "corpus" | "artifacts" | "node_modules" | "__pycache__"
                ) {
                    dirs.push(p);
                }
                continue;
            }
            let code = p
                .extension()
                .is_some_and(|x| CODE.contains(&x.to_string_lossy().as_ref()))
                || p.parent()
                    .and_then(Path::file_name)
                    .is_some_and(|d| d == "ci" || d == ".ci");
            if code {
                if let Ok(t) = std::fs::read_to_string(&p) {
                    text.push_str(&t);
                    text.push('\n');
                }
            }
        }
    }
    text
}

/// The names in code spans that look like a code identifier a reader
/// could search for: snake_case of four words or more (a test's name, a
/// field, a function), the last part of a `a::b::name` path.
fn cited_identifiers(shown: &str) -> Vec<&str> {
    let name = shown.trim().rsplit("::").next().unwrap_or("");
    let name = name.strip_suffix("()").unwrap_or(name);
    let snake = !name.is_empty()
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && name.split('_').count() >= 4;
    if snake { vec![name] } else { Vec::new() }
}

/// A stop found docs citing, as the test that proves a fix, a test that
/// had since been renamed (the demo's test of a config path that is not
/// UTF-8): a reader who runs `cargo test NAME` gets "0 passed" and no
/// proof. Every test, function or field name the docs cite in a code span
/// exists in the source; a former name is written without backticks.
#[test]
fn every_test_and_identifier_the_docs_cite_exists() {
    let root = shmbus_testkit::docs::root(env!("CARGO_MANIFEST_DIR"));
    let source = source_text(&root);
    assert!(
        source.contains("fn every_test_and_identifier_the_docs_cite_exists"),
        "the source was not read ({} bytes)",
        source.len()
    );
    // Whole identifiers, not substrings: SECURITY.md cited a test by a
    // name that was only the start of the name of the test
    // `rm_removes_a_held_lock_only_squat_with_force`, which proves the
    // opposite of the claim next to it, and the substring passed.
    let idents: BTreeSet<&str> = source
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let mut checked = BTreeSet::new();
    let mut problems = Vec::new();
    let mut files = doc_files();
    files.push(root.join("ci/README.md"));
    for f in files {
        for shown in shmbus_testkit::docs::shown_commands(&f) {
            if !shown.strict {
                continue;
            }
            for name in cited_identifiers(&shown.text) {
                checked.insert(name.to_string());
                if !idents.contains(name) {
                    problems.push(format!(
                        "{}:{}: `{name}` is no identifier of the source (renamed or removed?)",
                        shown.file, shown.line
                    ));
                }
            }
        }
    }
    assert!(
        checked.len() > 100,
        "only {} names found in the docs",
        checked.len()
    );
    assert!(
        problems.is_empty(),
        "{} name(s) the docs cite do not exist:\n{}",
        problems.len(),
        problems.join("\n")
    );
    eprintln!(
        "FIGURE docs: {} cited names found in the source",
        checked.len()
    );
}

#[test]
fn cited_identifiers_are_the_long_snake_case_names() {
    assert_eq!(
        cited_identifiers("shmbus_core::topic::validate_topic_name_now()"),
        vec!["validate_topic_name_now"]
    );
    assert_eq!(
        cited_identifiers("replay_of_a_topic_recreated_while_recorded"),
        vec!["replay_of_a_topic_recreated_while_recorded"]
    );
    assert!(cited_identifiers("shmbus echo imu --count 3").is_empty());
    assert!(cited_identifiers("max_age_ms").is_empty());
    assert!(cited_identifiers("SHMBUS_TEST_RUNNER_X_Y").is_empty());
}

/// docs/CROSS.md carried a size table whose cells were still the
/// placeholders `SIZE_CORE`, `SIZE_BOARD`, `SIZE_FULL` for stops. No
/// table cell of the docs is a bare upper-case placeholder (an
/// environment variable is written in backticks), and no doc says TODO,
/// TBD or FIXME.
#[test]
fn no_doc_shows_a_placeholder_for_a_figure() {
    let mut problems = Vec::new();
    let mut cells = 0;
    for f in doc_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        for (i, l) in text.lines().enumerate() {
            for w in ["TODO", "TBD", "FIXME"] {
                if l.split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|x| x == w)
                {
                    problems.push(format!("{file}:{}: says {w}", i + 1));
                }
            }
            if !l.trim_start().starts_with('|') {
                continue;
            }
            for cell in l.split('|').map(str::trim) {
                cells += 1;
                let placeholder = cell.len() > 2
                    && cell.contains('_')
                    && cell
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if placeholder {
                    problems.push(format!("{file}:{}: a table cell is `{cell}`", i + 1));
                }
            }
        }
    }
    assert!(cells > 100, "only {cells} table cells read");
    assert!(
        problems.is_empty(),
        "placeholders in the docs:\n{}",
        problems.join("\n")
    );
}

/// The commands `shmbus --help` lists (this build's features; the Debian
/// package builds the default ones), without clap's `help`.
fn commands_in_help() -> Vec<String> {
    let out = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "shmbus --help failed");
    let help = String::from_utf8(out.stdout).unwrap();
    let commands = help
        .split("\nCommands:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no Commands: in shmbus --help:\n{help}"));
    let commands: Vec<String> = commands
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect();
    assert!(
        commands.len() >= 8,
        "too few commands in shmbus --help:\n{help}"
    );
    commands
}

/// The `shmbus` commands a list of the docs names: the words in
/// backticks of `line`.
fn backticked(line: &str) -> BTreeSet<String> {
    line.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The README ("The `shmbus` tool") and INSTALL.md (what `/usr/bin/shmbus`
/// is) list the tool's commands: every command `shmbus --help` has is
/// there. Before, both left out `bridge`, and INSTALL.md `foxglove` too.
#[test]
fn the_command_lists_of_readme_and_install_md_are_complete() {
    let root = shmbus_testkit::docs::root(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let tool = readme
        .split("\n## The `shmbus` tool\n\n")
        .nth(1)
        .expect("README.md has a section 'The `shmbus` tool'");
    let readme_list = backticked(&tool[..tool.find(';').expect("the list ends with ';'")]);
    let install = std::fs::read_to_string(root.join("docs/INSTALL.md")).unwrap();
    let row = install
        .lines()
        .find(|l| l.starts_with("| `/usr/bin/shmbus` |"))
        .expect("INSTALL.md has a row for /usr/bin/shmbus");
    let install_list = backticked(row.split("the tool:").nth(1).expect("the tool: ..."));
    let mut missing = Vec::new();
    for c in commands_in_help() {
        for (doc, list) in [
            ("README.md", &readme_list),
            ("docs/INSTALL.md", &install_list),
        ] {
            if !list.contains(&c) {
                missing.push(format!("{doc} does not list `{c}`"));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// Where the `scp` lines of a shell block put files on `board:`: for each
/// source (a glob `*` in a file name is expanded in the repository), its
/// path on the board.
fn scp_destinations(root: &Path, block: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for line in block.lines().filter(|l| l.starts_with("scp ")) {
        let words: Vec<&str> = line
            .split(" #")
            .next()
            .unwrap()
            .split_whitespace()
            .skip(1)
            .collect();
        let (dst, srcs) = words.split_last().unwrap();
        let dst = dst
            .strip_prefix("board:")
            .unwrap_or_else(|| panic!("not to board: {line}"));
        for src in srcs.iter().filter(|s| !s.starts_with('-')) {
            let mut files = Vec::new();
            match src.rsplit_once('/').filter(|(_, name)| name.contains('*')) {
                Some((dir, name)) => {
                    let (pre, post) = name.split_once('*').unwrap();
                    for e in std::fs::read_dir(root.join(dir)).unwrap() {
                        let n = e.unwrap().file_name().to_string_lossy().into_owned();
                        if n.starts_with(pre) && n.ends_with(post) {
                            files.push(format!("{dir}/{n}"));
                        }
                    }
                    assert!(!files.is_empty(), "{src} matches nothing: {line}");
                }
                None => files.push(src.to_string()),
            }
            for f in files {
                let on_board = match dst.strip_suffix('/') {
                    Some(d) => format!(
                        "{d}/{}",
                        f.trim_end_matches('/').rsplit('/').next().unwrap()
                    ),
                    None => dst.to_string(),
                };
                out.insert((f, on_board));
            }
        }
    }
    out
}

/// CROSS.md's deployment by hand leaves a board whose units can start:
/// their config at the path their `ExecStart` names (a config that loads),
/// the units in /etc/systemd/system, the sensor program where they run it,
/// and doctor run on that config. Before, it copied the directory
/// `configs/` (no /etc/shmbus/shmbus.toml: every unit failed to start, and
/// `shmbus doctor` checked the built-in config) and no unit.
#[test]
fn cross_md_deploys_by_hand_what_the_units_need() {
    let root = shmbus_testkit::docs::root(env!("CARGO_MANIFEST_DIR"));
    let cross = std::fs::read_to_string(root.join("docs/CROSS.md")).unwrap();
    let section = cross
        .split("\n## Deploying to the board\n")
        .nth(1)
        .expect("CROSS.md has 'Deploying to the board'");
    let block = section
        .split("\n```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a ```sh block there");
    let copied = scp_destinations(&root, block);
    let on_board: BTreeSet<&str> = copied.iter().map(|(_, b)| b.as_str()).collect();
    let mut problems = Vec::new();
    let mut configs = BTreeSet::new();
    for unit in ["shmbus-sensor@.service", "shmbus-sensor-imu.service"] {
        let path = format!("/etc/systemd/system/{unit}");
        if !on_board.contains(path.as_str()) {
            problems.push(format!("the block does not copy {unit} to {path}"));
        }
        let text = std::fs::read_to_string(root.join("configs/systemd").join(unit)).unwrap();
        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap();
        let program = exec.split_whitespace().next().unwrap();
        let dir = program.rsplit_once('/').unwrap().0;
        if !on_board.contains(format!("{dir}/shmbus-sensor").as_str()) {
            problems.push(format!(
                "{unit} runs {program}, but shmbus-sensor is not copied to {dir}"
            ));
        }
        let config = exec
            .split("--config ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        configs.insert(config.to_string());
    }
    for config in &configs {
        match copied.iter().find(|(_, b)| b == config) {
            None => problems.push(format!(
                "the units read {config}, which the block does not copy"
            )),
            Some((src, _)) => {
                let text = std::fs::read_to_string(root.join(src)).unwrap();
                if let Err(e) = shmbus_config::Config::parse(&text, src) {
                    problems.push(format!("{src}, copied to {config}, does not load: {e}"));
                }
            }
        }
        if !block.contains(&format!("shmbus doctor --config {config}")) {
            problems.push(format!("the block does not run doctor on {config}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n--- the block:\n{block}",
        problems.join("\n")
    );
}
