//! Outputs shown in the docs that a reader can reproduce exactly: the
//! committed sample recording and what `shmbus cat` prints for it in
//! docs/RECORDING.md. (The doc once lacked the `/shmbus/missed` channel
//! line that `cat` has printed since that channel was added.)

use std::path::Path;

#[test]
fn recording_md_shows_what_cat_prints_for_the_sample_recording() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/RECORDING.md")).unwrap();
    let prompt = "$ shmbus cat docs/samples/demo.mcap\n";
    let start = doc
        .find(prompt)
        .expect("docs/RECORDING.md shows `shmbus cat docs/samples/demo.mcap`")
        + prompt.len();
    let shown = &doc[start..start + doc[start..].find("```").unwrap()];
    // Behind SHMBUS_TEST_RUNNER (qemu-arm in CI's armv7 suite).
    let out = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus"))
        .args(["cat", "docs/samples/demo.mcap"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        shown, printed,
        "docs/RECORDING.md's `shmbus cat docs/samples/demo.mcap` is not what it prints"
    );
}

/// The README's session "while `shmbus demo` ran": the lines its `$ CMD`
/// printed, up to the next `$ ` line or the end of the block.
fn readme_session_output(readme: &str, cmd: &str) -> Vec<String> {
    let prompt = format!("\n$ {cmd}");
    let start = readme
        .find(&prompt)
        .unwrap_or_else(|| panic!("README.md's session shows `{cmd}`"));
    readme[start + 1..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("$ ") && !l.starts_with("```"))
        .map(str::to_string)
        .collect()
}

/// The README's `shmbus list` during the demo shows every topic the demo
/// publishes (the topics of configs/demo.toml, the demo's bus): before, it
/// showed four of the six, from before the power and net sensors.
#[test]
fn readme_list_during_the_demo_shows_every_demo_topic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let rows = readme_session_output(&readme, "shmbus list");
    assert!(rows[0].starts_with("TOPIC "), "{rows:?}");
    let mut shown: Vec<&str> = rows[1..]
        .iter()
        .map(|r| r.split_whitespace().next().unwrap())
        .collect();
    shown.sort_unstable();
    let demo = std::fs::read_to_string(root.join("configs/demo.toml")).unwrap();
    let config = shmbus_config::Config::parse(&demo, "configs/demo.toml").unwrap();
    let mut topics: Vec<&str> = config.topics.iter().map(|t| t.name.as_str()).collect();
    topics.sort_unstable();
    assert_eq!(
        shown, topics,
        "README.md's `shmbus list` during the demo does not show the demo's topics"
    );
}

/// The README's doctor excerpt says what the locked topics of
/// configs/demo.toml need, as doctor computes it now (it said 10.5 KiB, from
/// before the power and net topics; the limit before it is this machine's).
#[test]
fn readme_doctor_excerpt_gives_the_memlock_need_of_the_demo_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let need = |line: &str| {
        line.split("; topics to lock need about ")
            .nth(1)
            .map(str::to_string)
    };
    let shown = readme_session_output(&readme, "shmbus doctor --config configs/demo.toml")
        .iter()
        .find_map(|l| need(l))
        .expect("README.md's doctor excerpt has the memlock line");
    let out = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus"))
        .args(["doctor", "--config", "configs/demo.toml"])
        .current_dir(&root)
        .output()
        .unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    let now = printed
        .lines()
        .find_map(need)
        .unwrap_or_else(|| panic!("doctor printed no memlock line:\n{printed}"));
    assert_eq!(
        shown, now,
        "README.md's doctor excerpt is not what doctor says now"
    );
}
