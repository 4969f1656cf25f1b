//! The server resolves every name it serves or waits for in one pass with
//! one listing of the machine's segments (`shmbus_config::names::Directory`)
//! instead of one `names::resolve` per name, each of which attached every
//! segment on the machine. This checks that the pass gives the same answer,
//! and the same error, as the single lookup for every kind of name.
//! Topics use keys with the top byte 0x7a and names that carry their key,
//! so other tests and programs on the machine never change the answers.

use std::time::Duration;

use shmbus_config::names::{self, Directory, Found, NameError, NameRule};
use shmbus_core::{LockPolicy, sys};
use shmbus_pub::{Publisher, Topic};
use shmbus_testkit::{Guard, unique_key_family, watchdog};

/// shmget's flags for a new segment of ours.
const CREATE: i32 = nix::libc::IPC_CREAT | nix::libc::IPC_EXCL | 0o600;

/// A unique key of this family, its guard, and a name that carries it.
fn key(test: &str) -> (i32, Guard, String) {
    let k = unique_key_family(0x7a, test);
    (k, Guard(k), format!("fox-lookup/{test}-{:08x}", k as u32))
}

/// A topic `name` at `key` whose publisher is gone (the segment stays).
fn topic_at(name: &str, key: i32) {
    let t = Topic::new(name).key(key).slots(4).lock(LockPolicy::Off);
    let mut p = Publisher::<u32>::open(&t).unwrap();
    p.publish(&7).unwrap();
}

/// What a lookup's answer must be.
type Expect = fn(&Result<Found, NameError>) -> bool;

/// A rule for `name` whose only key is `key`.
fn rule(name: &str, key: i32) -> NameRule {
    NameRule {
        name: name.to_string(),
        keys: vec![key],
        publisher_uid: None,
        source: "the test".to_string(),
        only_keys: false,
    }
}

#[test]
fn one_pass_of_many_names_gives_what_each_lookup_gives() {
    watchdog("lookup-many-names", Duration::from_secs(120));
    let me = nix::unistd::geteuid().as_raw();
    let mut guards = Vec::new();
    // (what, rule, what the answer must be)
    let mut cases: Vec<(&str, NameRule, Expect)> = Vec::new();

    // At its own key.
    let (k, g, n) = key("own");
    guards.push(g);
    topic_at(&n, k);
    cases.push(("own key", rule(&n, k), |r| {
        matches!(
            r,
            Ok(Found {
                at_own_key: true,
                ..
            })
        )
    }));

    // Not at its key (nothing there), but at another key of ours.
    let (k, g, n) = key("elsewhere");
    let (k2, g2, _) = key("elsewhere-2");
    guards.extend([g, g2]);
    topic_at(&n, k2);
    cases.push(("elsewhere", rule(&n, k), |r| {
        matches!(
            r,
            Ok(Found {
                at_own_key: false,
                ..
            })
        )
    }));

    // The same, with `--bus`: never looked for elsewhere.
    let (k, g, n) = key("only-keys");
    let (k2, g2, _) = key("only-keys-2");
    guards.extend([g, g2]);
    topic_at(&n, k2);
    let mut only = rule(&n, k);
    only.only_keys = true;
    cases.push((
        "only its keys",
        only,
        |r| matches!(r, Err(NameError::NotFound { others, foreign: None }) if others.is_empty()),
    ));

    // Another topic at its key (a key collision) and itself elsewhere.
    let (k, g, n) = key("collision");
    let (k2, g2, _) = key("collision-2");
    guards.extend([g, g2]);
    topic_at(&format!("{n}-other"), k);
    topic_at(&n, k2);
    cases.push(("collision", rule(&n, k), |r| {
        matches!(
            r,
            Ok(Found {
                at_own_key: false,
                ..
            })
        )
    }));

    // Nothing anywhere.
    let (k, g, n) = key("missing");
    guards.push(g);
    cases.push((
        "missing",
        rule(&n, k),
        |r| matches!(r, Err(NameError::NotFound { others, foreign: None }) if others.is_empty()),
    ));

    // Another program's segment at its key.
    let (k, g, n) = key("foreign");
    guards.push(g);
    // Not all zeros (that is a half-created topic, below).
    let id = sys::shmget(k, 4096, CREATE).unwrap();
    let att = sys::WriteAttachment::read_write(id).unwrap();
    shmbus_core::codec::store_bytes(
        att.atomic_words(0, 8).unwrap(),
        b"NOT A SHMBUS SEGMENT AT ALL!",
    );
    drop(att);
    cases.push(("foreign at its key", rule(&n, k), |r| {
        matches!(
            r,
            Err(NameError::NotFound {
                foreign: Some(_),
                ..
            })
        )
    }));

    // A shmbus segment at its key left half-created (its creator died
    // before the header): unusable, with the attach's own reason.
    let (k, g, n) = key("half");
    guards.push(g);
    let mut lock = shmbus_core::lock::PublisherLock::acquire(k, 0o600, None).unwrap();
    lock.keep();
    drop(lock);
    sys::shmget(k, 4096, CREATE).unwrap();
    let half = rule(&n, k);
    cases.push(("half-created at its key", half.clone(), |r| {
        matches!(r, Err(NameError::Unusable { .. }))
    }));

    // Half-created at its key, and readable elsewhere: the readable one.
    let (k, g, n) = key("half-and-elsewhere");
    let (k2, g2, _) = key("half-and-elsewhere-2");
    guards.extend([g, g2]);
    let mut lock = shmbus_core::lock::PublisherLock::acquire(k, 0o600, None).unwrap();
    lock.keep();
    drop(lock);
    sys::shmget(k, 4096, CREATE).unwrap();
    topic_at(&n, k2);
    cases.push(("half-created and elsewhere", rule(&n, k), |r| {
        matches!(
            r,
            Ok(Found {
                at_own_key: false,
                ..
            })
        )
    }));

    // Two of ours carry it away from its key, no publisher alive.
    let (k, g, n) = key("duplicate");
    let (k2, g2, _) = key("duplicate-2");
    let (k3, g3, _) = key("duplicate-3");
    guards.extend([g, g2, g3]);
    topic_at(&n, k2);
    topic_at(&n, k3);
    cases.push((
        "duplicate",
        rule(&n, k),
        |r| matches!(r, Err(NameError::Ambiguous { keys }) if keys.len() == 2),
    ));

    // At its key, but the config names another publisher.
    let (k, g, n) = key("squatted");
    guards.push(g);
    topic_at(&n, k);
    let mut squat = rule(&n, k);
    squat.publisher_uid = Some(me.wrapping_add(4242));
    cases.push(("squatted", squat, |r| {
        matches!(r, Err(NameError::Squatted { .. }))
    }));

    // Each name alone, then all of them in one pass.
    let single: Vec<_> = cases
        .iter()
        .map(|(_, r, _)| names::resolve(r, me))
        .collect();
    let dir = Directory::read();
    let many: Vec<_> = cases.iter().map(|(_, r, _)| dir.resolve(r, me)).collect();
    for (((what, _, expect), one), pass) in cases.iter().zip(&single).zip(&many) {
        assert!(expect(one), "{what}: unexpected {one:?}");
        assert_eq!(pass, one, "{what}: the pass differs from the single lookup");
    }
    // Asked twice in one pass: the same answer (what an attach said is kept).
    assert_eq!(dir.resolve(&half, me), single[6]);
    drop(guards);
}
