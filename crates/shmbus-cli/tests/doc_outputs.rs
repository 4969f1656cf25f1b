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
