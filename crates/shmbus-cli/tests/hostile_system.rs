//! The `shmbus` readers against bad system states (a hostile-system audit,
//! 2026-12-04): segments at a topic's key that are shmbus but cannot be
//! read. Each test failed before its fix. Every object has a unique key and
//! a Guard; every test has a watchdog.

use std::process::Command;
use std::time::Duration;

use shmbus_core::sys;
use shmbus_pub::Publisher;
use shmbus_testkit::{Guard, TempDir, unique_key, watchdog};

mod common;
use common::{Run, run_cmd};

fn hex(key: i32) -> String {
    format!("0x{:08x}", key as u32)
}

/// `shmbus` with `config` as its only config.
fn shmbus(config: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = common::shmbus(args);
    cmd.env("SHMBUS_CONFIG", config);
    cmd
}

/// A config that puts topic `name` at `key` (a unique test key, so the name
/// lookup goes to it and to nothing another test made).
fn config_for(dir: &TempDir, name: &str, key: i32) -> std::path::PathBuf {
    let p = dir.join(&format!("{name}.toml"));
    std::fs::write(
        &p,
        format!("bus = \"hostile\"\n[[topic]]\nname = \"{name}\"\nkey = {key}\n"),
    )
    .unwrap();
    p
}

/// Every byte of the segment at `key`.
fn segment_bytes(key: i32) -> Vec<u8> {
    let id = sys::shmget(key, 0, 0).expect("segment exists");
    let att = sys::Attachment::read_only(id).expect("attach");
    let words = att.words(0, att.len() / 4).expect("words");
    let mut out = Vec::new();
    shmbus_core::layout::copy_from_words(words, att.len(), &mut out);
    out
}

/// A new segment of `size` bytes at `key`, holding `bytes`.
fn segment_with(key: i32, size: usize, bytes: &[u8]) {
    let id = sys::shmget(key, size, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).unwrap();
    let att = sys::WriteAttachment::read_write(id).unwrap();
    let n = bytes.len().min(size);
    shmbus_core::codec::store_bytes(att.atomic_words(0, n.div_ceil(4)).unwrap(), &bytes[..n]);
}

/// A real topic `name` at `key` with one frame, its publisher gone.
fn real_topic(name: &str, key: i32) {
    let topic = shmbus_core::Topic::new(name)
        .key(key)
        .slots(4)
        .lock(shmbus_core::LockPolicy::Off);
    let mut p = Publisher::<u32>::open(&topic).unwrap();
    p.publish(&7).unwrap();
}

/// A shmbus segment at a name's own key that the lookup cannot read (its
/// header asks for more bytes than the segment has; a newer layout; a
/// header never written, its creator dead) was "no topic named 'X' (its
/// key: K): is its publisher running?" (exit 1) from `info`, `echo`, `hz`,
/// `pub` and `rm` by name, while `list` and the same commands by key said
/// what it is and how to fix it. Now the name gives the same reason and
/// fix as the key, and nothing is removed or written.
#[test]
fn an_unreadable_segment_at_a_names_key_is_named_not_called_missing() {
    watchdog(
        "an_unreadable_segment_at_a_names_key_is_named_not_called_missing",
        Duration::from_secs(180),
    );
    let dir = TempDir::new("hostile-unreadable");
    let pid = std::process::id();
    // (name, key, what the message must say, exit code, guard)
    let mut cases: Vec<(String, i32, String, i32, Guard)> = Vec::new();

    // The header of a real topic in a segment too small for its slots.
    let name = format!("short-{pid}");
    let key = unique_key("hostile-short");
    let guard = Guard(key);
    real_topic(&name, key);
    let image = segment_bytes(key);
    shmbus_testkit::remove_key(key);
    segment_with(key, 256 + 64, &image);
    cases.push((name, key, "is 320 bytes, the topic needs".into(), 2, guard));

    // A real topic whose layout version is one this build does not read.
    let name = format!("newer-{pid}");
    let key = unique_key("hostile-newer");
    let guard = Guard(key);
    real_topic(&name, key);
    let mut image = segment_bytes(key);
    let size = image.len();
    shmbus_testkit::remove_key(key);
    image[8..12].copy_from_slice(&2u32.to_le_bytes());
    segment_with(key, size, &image);
    cases.push((name, key, "has layout version 2".into(), 2, guard));

    // Half-created: the creator took its lock, made the segment and died
    // before the header (the lock is free, the segment all zeros).
    let name = format!("half-{pid}");
    let key = unique_key("hostile-half");
    let guard = Guard(key);
    let mut lock = shmbus_core::lock::PublisherLock::acquire(key, 0o600, None).unwrap();
    lock.keep();
    drop(lock);
    sys::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).unwrap();
    cases.push((name, key, "was left half-created".into(), 2, guard));

    for (name, key, says, code, _guard) in &cases {
        let config = config_for(&dir, name, *key);
        let before = segment_bytes(*key);
        let k = hex(*key);
        for args in [
            vec!["info", name.as_str()],
            vec!["echo", name.as_str(), "--count", "1", "--timeout", "1"],
            vec!["hz", name.as_str(), "--count", "1"],
            vec!["pub", name.as_str(), "7"],
            vec!["rm", name.as_str()],
        ] {
            let r: Run = run_cmd(shmbus(config.as_path(), &args));
            assert_eq!(r.code, *code, "{args:?}: {}", r.stderr);
            assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
            assert!(
                r.stderr
                    .contains(&format!("no readable topic named '{name}'"))
                    && r.stderr.contains(&k)
                    && r.stderr.contains(says.as_str())
                    && r.stderr.contains(&format!("shmbus rm {k}")),
                "{args:?} must name the segment at {k}, say '{says}' and the fix: {}",
                r.stderr
            );
            assert!(
                !r.stderr.contains("is its publisher running"),
                "{args:?}: {}",
                r.stderr
            );
            // The same reason as by key.
            let by_key: Run = run_cmd(shmbus(config.as_path(), &["info", &k]));
            assert!(by_key.stderr.contains(says.as_str()), "{}", by_key.stderr);
            assert_eq!(segment_bytes(*key), before, "{args:?} changed the segment");
        }
        // The fix, typed as printed, removes it.
        let r = run_cmd(shmbus(config.as_path(), &["rm", &k]));
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(sys::shmget(*key, 0, 0).is_err(), "{k} still there");
    }
}
