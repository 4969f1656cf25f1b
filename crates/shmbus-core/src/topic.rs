//! Topic descriptions: what a publisher creates and a subscriber attaches.

use crate::error::OpenError;
use crate::layout::MAX_NAME_LEN;

/// Whether the publisher locks the segment in RAM with `SHM_LOCK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockPolicy {
    /// Lock, and fail to open the topic if the kernel refuses
    /// (`RLIMIT_MEMLOCK` too low and no `CAP_IPC_LOCK`).
    Required,
    /// Try to lock; if refused, open anyway and report it
    /// (`Publisher::lock_outcome`). The default: works unprivileged.
    #[default]
    Try,
    /// Do not lock.
    Off,
}

/// The default bus name used to derive keys when none is given.
pub const DEFAULT_BUS: &str = "shmbus";

/// A topic: its name, System V key, ring size and access rules.
///
/// The same description is used by the publisher (which creates the segment
/// with this mode and group) and by subscribers (which use the key and,
/// optionally, the expected publisher uid to refuse spoofed segments).
///
/// Two descriptions are equal when they describe the same topic the same
/// way: every field but [`Topic::bus`], which only says where a derived
/// key came from (a config's topic, made with its key, equals
/// `Topic::new` of the same name on the default bus).
#[derive(Debug, Clone)]
pub struct Topic {
    /// Topic name: 1-63 bytes of `[A-Za-z0-9_.-/]`.
    pub name: String,
    /// System V key (never `IPC_PRIVATE`, 0).
    pub key: i32,
    /// Number of slots in the ring, a power of two. Default 16.
    pub slots: u32,
    /// Permission bits for the segment and the publisher lock. Default 0o644.
    pub mode: u32,
    /// Group id for the segment, or `None` for the publisher's group.
    pub group: Option<u32>,
    /// `SHM_LOCK` policy. Default [`LockPolicy::Try`].
    pub lock: LockPolicy,
    /// Whether the publisher wakes futex waiters after every publish, so
    /// subscribers can block in the kernel. Default true.
    pub notify: bool,
    /// If set, subscribers refuse a segment not created and owned by this
    /// uid, or writable by group or others (anti-spoofing). Default `None`.
    pub publisher_uid: Option<u32>,
    /// The bus the key was derived on ([`Topic::new`], [`Topic::on_bus`]),
    /// checked by [`Topic::validate`] and [`Topic::validate_for_reader`]
    /// with the rule a config's `bus` follows ([`validate_bus`]); `None`
    /// once a key is given ([`Topic::key`]), which no bus derives.
    pub bus: Option<String>,
}

impl PartialEq for Topic {
    fn eq(&self, o: &Topic) -> bool {
        // Every field but `bus`, by name: a field added later is a compile
        // error here until it is decided on.
        let Topic {
            name,
            key,
            slots,
            mode,
            group,
            lock,
            notify,
            publisher_uid,
            bus: _,
        } = self;
        *name == o.name
            && *key == o.key
            && *slots == o.slots
            && *mode == o.mode
            && *group == o.group
            && *lock == o.lock
            && *notify == o.notify
            && *publisher_uid == o.publisher_uid
    }
}

impl Eq for Topic {}

impl Topic {
    /// A topic on the default bus, with the key derived from its name.
    pub fn new(name: &str) -> Topic {
        Topic::on_bus(DEFAULT_BUS, name)
    }

    /// A topic on bus `bus`, with the key derived from both names
    /// ([`derive_key`]). A bus a config could not name (`a/b`, empty, over
    /// 63 bytes: [`validate_bus`]) makes a topic that [`Topic::validate`]
    /// refuses, with the config's message, so no publisher creates it.
    pub fn on_bus(bus: &str, name: &str) -> Topic {
        Topic {
            name: name.to_string(),
            key: derive_key(bus, name),
            slots: 16,
            mode: 0o644,
            group: None,
            lock: LockPolicy::Try,
            notify: true,
            publisher_uid: None,
            bus: Some(bus.to_string()),
        }
    }

    /// Use an explicit key (no bus is involved then).
    pub fn key(mut self, key: i32) -> Topic {
        self.key = key;
        self.bus = None;
        self
    }
    /// Set the slot count (a power of two).
    pub fn slots(mut self, slots: u32) -> Topic {
        self.slots = slots;
        self
    }
    /// Set the permission bits.
    pub fn mode(mut self, mode: u32) -> Topic {
        self.mode = mode;
        self
    }
    /// Set the segment's group.
    pub fn group(mut self, gid: u32) -> Topic {
        self.group = Some(gid);
        self
    }
    /// Set the lock policy.
    pub fn lock(mut self, lock: LockPolicy) -> Topic {
        self.lock = lock;
        self
    }
    /// Enable or disable futex wake-ups.
    pub fn notify(mut self, on: bool) -> Topic {
        self.notify = on;
        self
    }
    /// Require that the segment was created by, and belongs to, `uid`.
    pub fn publisher_uid(mut self, uid: u32) -> Topic {
        self.publisher_uid = Some(uid);
        self
    }

    /// Check the description: name ([`validate_topic_name`]), key, slots,
    /// mode and group.
    pub fn validate(&self) -> Result<(), OpenError> {
        validate_topic_name(&self.name).map_err(|reason| OpenError::InvalidTopic { reason })?;
        self.validate_key()?;
        let bad = |reason: String| Err(OpenError::InvalidTopic { reason });
        if !self.slots.is_power_of_two() || self.slots > crate::layout::MAX_SLOTS {
            return bad(format!(
                "slots = {} must be a power of two between 1 and {}",
                self.slots,
                crate::layout::MAX_SLOTS
            ));
        }
        if self.mode & !0o777 != 0 {
            return bad(format!("mode {:o} has bits outside 0o777", self.mode));
        }
        if self.mode & 0o600 != 0o600 {
            return bad(format!(
                "mode {:03o} must let the owner read and write (0o600)",
                self.mode
            ));
        }
        if self.group == Some(u32::MAX) {
            return bad(
                "group 4294967295 is (gid_t)-1, which names no group (the kernel reads it as \"leave unchanged\" and refuses it here): give a group id below it"
                    .into(),
            );
        }
        Ok(())
    }
}

impl Topic {
    /// Check what a reader uses of the description: the name by the
    /// reader's rule ([`validate_name`], which also admits topics made
    /// before the level rule) and the key. A description no publisher can
    /// create a topic for is [`OpenError::InvalidTopic`] at once, never
    /// [`OpenError::NotFound`]: a reader waiting for it to appear
    /// (`wait_for_topic`) would wait its whole timeout for nothing.
    pub fn validate_for_reader(&self) -> Result<(), OpenError> {
        validate_name(&self.name).map_err(|reason| OpenError::InvalidTopic { reason })?;
        self.validate_key()
    }

    fn validate_key(&self) -> Result<(), OpenError> {
        if let Some(bus) = &self.bus {
            validate_bus(bus).map_err(|reason| OpenError::InvalidTopic { reason })?;
        }
        if self.key == 0 {
            return Err(OpenError::InvalidTopic {
                reason: "key 0 is IPC_PRIVATE and cannot name a topic: leave the key out to derive it from the topic's name (Topic::new), or give the key its publisher uses".into(),
            });
        }
        Ok(())
    }
}

/// Check what a topic name is made of: 1 to 63 bytes of ASCII letters,
/// digits and `_.-/`. This is what a reader accepts in a segment's header
/// and a tool in a TOPIC argument, so that a topic made before the level
/// rule of [`validate_topic_name`] can still be read and removed by name.
/// A topic that is declared or created must pass [`validate_topic_name`].
/// The error shows the name as [`shown`] does.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "topic name '{}' must be 1 to {MAX_NAME_LEN} bytes long",
            shown(name)
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-/".contains(*c)))
    {
        return Err(format!(
            "topic name '{}' contains '{}'; use letters, digits and _ . - /",
            shown(name),
            c.escape_debug()
        ));
    }
    Ok(())
}

/// Check the name of a topic that is declared (a config, `Topic::validate`
/// before a publisher creates it): [`validate_name`], and its levels. `/`
/// separates levels (`power/battery`), so no level is empty (no `/` at
/// either end, no `//`) and none is `.` or `..`: the MQTT bridge makes
/// each level a topic level, and `imu`, `/imu` and `imu/` would be three
/// topics with three keys that every tool shows alike (`docs/LAYOUT.md`
/// 1.1). The error names the fix.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    validate_name(name)?;
    let problem = if name.starts_with('/') {
        "begins with '/'"
    } else if name.ends_with('/') {
        "ends with '/'"
    } else if name.contains("//") {
        "has an empty level ('//')"
    } else if name.split('/').any(|l| l == "." || l == "..") {
        return Err(format!(
            "topic name '{}' has a level '.' or '..': a topic name is not a path; give the level a letter, digit, '_' or '-'",
            shown(name)
        ));
    } else {
        return Ok(());
    };
    let fixed: Vec<&str> = name.split('/').filter(|l| !l.is_empty()).collect();
    let fixed = fixed.join("/");
    let fix = if !fixed.is_empty() && validate_topic_name(&fixed).is_ok() {
        format!("write '{fixed}'")
    } else {
        "write levels of letters, digits and _ . - between single '/'".into()
    };
    Err(format!(
        "topic name '{}' {problem}: '/' separates the levels of a name and no level may be empty; {fix}",
        shown(name)
    ))
}

/// Check a bus name: 1 to 63 bytes of ASCII letters, digits and `_.-`,
/// without the `/` a topic name may have. A derived key hashes
/// `BUS/NAME`, so a bus with a `/` would give two topics one key: bus
/// `a/b` with topic `c` and bus `a` with topic `b/c` (`docs/LAYOUT.md`
/// 1.1). The error names the fix.
pub fn validate_bus(bus: &str) -> Result<(), String> {
    if bus.is_empty() || bus.len() > MAX_NAME_LEN {
        return Err(format!(
            "bus name '{}' must be 1 to {MAX_NAME_LEN} bytes long",
            shown(bus)
        ));
    }
    // Any other character first: the advice for a `/` below is then a
    // name that passes.
    if let Some(c) = bus
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-/".contains(*c)))
    {
        return Err(format!(
            "bus name '{}' contains '{}'; use letters, digits and _ . -",
            shown(bus),
            c.escape_debug()
        ));
    }
    if bus.contains('/') {
        return Err(format!(
            "bus name '{}' contains '/': keys are derived from BUS/NAME, so bus 'a/b' with topic 'c' would have the key of bus 'a' with topic 'b/c'; use letters, digits and _ . - (e.g. '{}')",
            shown(bus),
            shown(&bus.replace('/', "-"))
        ));
    }
    Ok(())
}

/// A string from outside (an argument, a config file, a payload) longer
/// than this many characters is cut where a message quotes it: the one
/// rule every shmbus tool and library follows ([`long_head`]).
pub const CUT_OVER: usize = 64;
/// How many leading characters of a cut string a message keeps; its
/// length in bytes follows: `abcd... (10000 bytes)`.
pub const CUT_KEEP: usize = 40;

/// The head a message shows of `s` when `s` is too long to quote whole
/// (more than [`CUT_OVER`] characters): its first [`CUT_KEEP`]
/// characters. `None` when `s` is quoted whole.
pub fn long_head(s: &str) -> Option<&str> {
    s.chars().nth(CUT_OVER)?;
    let end = s.char_indices().nth(CUT_KEEP).map_or(s.len(), |(i, _)| i);
    Some(&s[..end])
}

/// A string from outside (an argument, a config file) as an error message
/// shows it: control characters escaped, so none reaches the terminal, and
/// cut as [`long_head`] says with its length in bytes after it, so a 10 kB
/// argument gives a one-line message.
pub fn shown(s: &str) -> String {
    match long_head(s) {
        None => s.chars().flat_map(char::escape_debug).collect(),
        Some(head) => {
            let mut out: String = head.chars().flat_map(char::escape_debug).collect();
            out.push_str(&format!("... ({} bytes)", s.len()));
            out
        }
    }
}

/// True if `key` is in the range [`derive_key`] gives (`0x53` in the top
/// byte): a key shmbus names its topics by, not one another program is
/// likely to use.
pub fn is_derived_key(key: i32) -> bool {
    (key as u32) >> 24 == 0x53
}

/// The key of topic `name` on bus `bus`: `0x53` ('S') in the top byte and
/// the low 24 bits of FNV-1a 32 of `"{bus}/{name}"`. Never 0 (`IPC_PRIVATE`).
/// Collisions are possible (24 bits); the config loader rejects them within a
/// bus, and an attach to a colliding topic fails with
/// [`OpenError::NameMismatch`].
pub fn derive_key(bus: &str, name: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bus.bytes().chain(*b"/").chain(name.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (0x5300_0000 | (h & 0x00ff_ffff)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group of (gid_t)-1 is refused by name before any system call (it
    /// was `semctl(IPC_SET): Invalid argument` after the lock was made);
    /// the group below it is a group like any other.
    #[test]
    fn a_group_of_gid_minus_one_is_invalid() {
        let t = Topic::new("imu").key(0x5000_0001);
        match t.clone().group(u32::MAX).validate() {
            Err(OpenError::InvalidTopic { reason }) => {
                assert!(reason.contains("group 4294967295"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(t.clone().group(u32::MAX - 1).validate().is_ok());
        assert!(t.group(0).validate().is_ok());
    }

    #[test]
    fn names_in_errors_are_escaped_and_cut() {
        assert_eq!(shown("imu"), "imu");
        assert_eq!(shown("a\u{1b}[2J\n"), "a\\u{1b}[2J\\n");
        let long = "é".repeat(5000);
        let s = shown(&long);
        assert!(
            s.starts_with(&"é".repeat(40)) && s.ends_with("... (10000 bytes)"),
            "{s}"
        );
        assert_eq!(
            shown(&"b".repeat(CUT_OVER)),
            "b".repeat(CUT_OVER),
            "64 characters are shown whole"
        );
        assert_eq!(
            shown(&"b".repeat(CUT_OVER + 1)),
            format!("{}... (65 bytes)", "b".repeat(CUT_KEEP)),
            "one more is cut to 40"
        );
        let e = validate_name(&"x".repeat(10_000)).unwrap_err();
        assert!(e.len() < 120 && e.contains("(10000 bytes)"), "{e}");
        let e = validate_name("a\tb").unwrap_err();
        assert!(e.contains("'a\\tb' contains '\\t'"), "{e}");
    }

    #[test]
    fn derived_keys_are_stable_and_tagged() {
        let k = derive_key("shmbus", "imu");
        assert_eq!(k, derive_key("shmbus", "imu"));
        assert_ne!(k, derive_key("shmbus", "gnss"));
        assert_ne!(k, derive_key("other", "imu"));
        assert_eq!((k as u32) >> 24, 0x53);
        assert!(is_derived_key(k));
    }

    /// The test vectors of `docs/LAYOUT.md` section 1.1.
    #[test]
    fn derived_keys_match_the_documented_vectors() {
        assert_eq!(derive_key("shmbus", "imu") as u32, 0x5308_873f);
        assert_eq!(derive_key("shmbus", "gnss") as u32, 0x53f6_c3fd);
        assert_eq!(derive_key("shmbus", "power") as u32, 0x53b4_32b7);
        assert_eq!(Topic::new("imu").key, derive_key(DEFAULT_BUS, "imu"));
    }

    /// A bus with a `/` gave two topics one key (bus `a/b` topic `c`, bus
    /// `a` topic `b/c`); names with empty or dot levels were three topics
    /// for one (`imu`, `/imu`, `imu/`). Declared names and buses follow the
    /// level rule; a header's name and a TOPIC argument still only need
    /// the characters, so a topic made before the rule is read and removed.
    #[test]
    fn buses_have_no_slash_and_declared_names_no_empty_or_dot_level() {
        assert_eq!(derive_key("a/b", "c"), derive_key("a", "b/c"));
        let e = validate_bus("a/b").unwrap_err();
        assert!(
            e.contains("bus name 'a/b' contains '/'") && e.contains("(e.g. 'a-b')"),
            "{e}"
        );
        assert!(validate_bus("a").is_ok() && validate_bus("demo-1.x_2").is_ok());
        let e = validate_bus("").unwrap_err();
        assert!(e.contains("must be 1 to 63 bytes"), "{e}");
        let e = validate_bus("a\u{1b}b").unwrap_err();
        assert!(e.contains("'a\\u{1b}b' contains '\\u{1b}'"), "{e}");
        let e = validate_bus(&"é".repeat(70)).unwrap_err();
        assert!(e.contains("... (140 bytes)"), "{e}");
        for (name, fix) in [
            (
                "/imu",
                "begins with '/': '/' separates the levels of a name and no level may be empty; write 'imu'",
            ),
            ("imu/", "ends with '/'"),
            ("a//b", "has an empty level ('//')"),
            (
                "/",
                "write levels of letters, digits and _ . - between single '/'",
            ),
            ("..", "has a level '.' or '..'"),
            ("a/./b", "has a level '.' or '..'"),
        ] {
            let e = validate_topic_name(name).unwrap_err();
            assert!(e.contains(fix), "{name}: {e}");
            assert!(validate_name(name).is_ok(), "{name}: readers take it");
            let e = Topic::new(name).validate().unwrap_err().to_string();
            assert!(e.contains(fix), "{name}: {e}");
        }
        for name in [
            "imu",
            "power/battery",
            "examples/imu-py",
            ".x",
            "...",
            "a..b/c",
        ] {
            assert_eq!(validate_topic_name(name), Ok(()), "{name}");
        }
        let e = validate_topic_name("a b").unwrap_err();
        assert!(e.contains("contains ' '"), "{e}");
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(Topic::new("imu").validate().is_ok());
        let e = Topic::new("imu").slots(3).validate().unwrap_err();
        assert!(e.to_string().contains("power of two"), "{e}");
        let e = Topic::new("bad name").validate().unwrap_err();
        assert!(e.to_string().contains("contains ' '"), "{e}");
        assert!(Topic::new("").validate().is_err());
        assert!(Topic::new(&"x".repeat(64)).validate().is_err());
        assert!(Topic::new("imu").key(0).validate().is_err());
        assert!(Topic::new("imu").mode(0o444).validate().is_err());
        assert!(Topic::new("imu").mode(0o1644).validate().is_err());
    }

    /// `Topic::on_bus("a/b", "c")` was accepted and opened: bus `a/b` with
    /// topic `c` has the key of bus `a` with topic `b/c`, which a config
    /// refuses. The topic is refused now, by both the publisher's and the
    /// reader's check, with the config's message; a key given explicitly
    /// has no bus to check.
    #[test]
    fn a_bus_a_config_refuses_is_refused_by_on_bus_too() {
        for bus in ["a/b", "", "a b", &"x".repeat(64)] {
            let want = validate_bus(bus).unwrap_err();
            let t = Topic::on_bus(bus, "c");
            for e in [
                t.validate().unwrap_err(),
                t.validate_for_reader().unwrap_err(),
            ] {
                assert!(
                    matches!(&e, OpenError::InvalidTopic { reason } if *reason == want),
                    "{bus:?}: {e}"
                );
            }
            assert!(t.clone().key(0x1234).validate().is_ok(), "{bus:?}");
        }
        assert!(Topic::on_bus("lab-2.b_c", "c").validate().is_ok());
        assert!(Topic::new("imu").validate_for_reader().is_ok());
        // Where a key came from is no part of what the topic is.
        let k = Topic::new("imu").key;
        assert_eq!(Topic::new("imu").key(k), Topic::new("imu"));
    }
}
