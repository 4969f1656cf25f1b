//! What the Debian packages ship links no test support. The shipped
//! `shmbus` linked this test kit (the demo and `shmbus bench` took their
//! child-process runner from it), so a test hook and its helpers were in
//! every board's binary, and the crates depending on it could not be
//! published (`shmbus-testkit` is `publish = false`). The crates checked
//! are the ones `packaging/debian/build` lists, so a crate that joins the
//! packages is checked too.

use std::path::Path;
use std::process::Command;

/// Crates the packages build, read from `packaging/debian/build`
/// (`CRATE PROFILE [FEATURE...]`, `#` comments).
fn shipped_crates(root: &Path) -> Vec<String> {
    let list = std::fs::read_to_string(root.join("packaging/debian/build"))
        .expect("read packaging/debian/build");
    list.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| root.join("crates").join(c).join("Cargo.toml").is_file())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_shipped_crates_link_no_test_support() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let crates = shipped_crates(&root);
    assert!(
        crates.iter().any(|c| c == "shmbus-cli") && crates.len() >= 4,
        "the package list: {crates:?}"
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for c in &crates {
        let out = Command::new(&cargo)
            .current_dir(&root)
            .args([
                "tree",
                "--offline",
                "--all-features",
                "-e",
                "normal",
                "--prefix",
                "none",
                "-p",
                c,
            ])
            .output()
            .expect("run cargo tree");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "cargo tree -p {c}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.lines().any(|l| l.starts_with(c.as_str())),
            "{c}: {text}"
        );
        let test_support: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("shmbus-testkit "))
            .collect();
        assert!(
            test_support.is_empty(),
            "{c} links test support into what the packages ship: {test_support:?} (make it a dev-dependency)"
        );
    }
}
