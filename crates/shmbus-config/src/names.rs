//! Which segment a topic NAME means, for every tool that takes a name.
//!
//! System V keys are one namespace shared by every user of the machine, and
//! any user can create a segment that carries any topic name. A name is
//! therefore resolved first to the key it derives from, as the config
//! derives it, and only then looked up elsewhere, among segments the caller
//! trusts:
//!
//! 1. **Its keys** ([`NameRule::keys`]): with `--bus B`, only
//!    `derive_key(B, name)`. Otherwise, for a topic of the config (found by
//!    the usual search order), the config's key; for any other name, the key
//!    derived from the config's bus, then from the default bus `shmbus` (the
//!    key `Topic::new(name)` uses). A segment there that carries the name is
//!    the topic; if the config names a publisher user, it must also have
//!    been created by and belong to that uid, or it is refused as a squat
//!    ([`NameError::Squatted`]). A shmbus segment there that cannot be read
//!    (a newer layout, a size its header does not fit, left half-created)
//!    is where the name belongs: if nothing readable carries the name
//!    elsewhere, the lookup returns it with the attach's own reason and fix
//!    ([`NameError::Unusable`]), never "not found".
//! 2. **Elsewhere** (not with `--bus`): a segment that carries the name at another key (a demo
//!    on its own bus, a topic with an explicit key) is taken only if it was
//!    created by and belongs to a trusted uid ([`NameRule::trusts`]): the
//!    configured publisher uid if there is one, else the caller's own uid or
//!    root. Another user's segment is never taken under a name: it is
//!    listed in the error with its key, and the caller can ask for it by key.
//!
//! So another user can at most *block* a name (by squatting its key, which
//! also stops the real publisher from starting), never be shown under it.

use std::cell::OnceCell;
use std::collections::HashMap;

use shmbus_core::lock::publisher_status;
use shmbus_core::sysvipc::{self, ProcEntry};
use shmbus_core::topic::{DEFAULT_BUS, derive_key};
use shmbus_core::{OpenError, Segment};

use crate::Config;

/// The note a name lookup gives when the config does not load: one line,
/// its first problem and how many more (a tool prints it as one line, and
/// the list of up to 50 made a line that broke in the middle of the
/// parenthesis).
pub(crate) fn not_loaded(e: &crate::ConfigErrors) -> String {
    let first = e
        .iter()
        .next()
        .map_or_else(String::new, ToString::to_string);
    let more = match e.len() {
        0 | 1 => String::new(),
        2 => "; and 1 more problem: `shmbus doctor` lists them".to_string(),
        n => format!("; and {} more problems: `shmbus doctor` lists them", n - 1),
    };
    format!("the config does not load ({first}{more}); names are looked up on bus '{DEFAULT_BUS}'")
}

/// The publisher uid of a rule whose config names a `publisher_user` this
/// machine does not have: `(uid_t)-1`, which no process runs as, so no
/// segment is taken as that topic; [`squatted_text`] says why.
pub const NO_SUCH_USER: u32 = u32::MAX;

/// The SHM_DEST flag in `/proc/sysvipc/shm`'s `perms`: removed, still attached.
const SHM_DEST: u32 = 0o1000;

/// Where a name's topic belongs and whom to trust elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRule {
    /// The topic name.
    pub name: String,
    /// The keys the name derives to, in the order they are tried.
    pub keys: Vec<i32>,
    /// The uid the config names as the topic's publisher, if any.
    pub publisher_uid: Option<u32>,
    /// Where the keys come from, for messages (`bus 'lab' of /etc/...`).
    pub source: String,
    /// Look only at the keys, never elsewhere (`--bus`).
    pub only_keys: bool,
}

impl NameRule {
    /// The rule for `name`: on `bus` if given, else from the config found by
    /// the search order (a config that does not load gives the default bus,
    /// and the error as the second value). For many names, [`Rules`] finds
    /// the config once.
    pub fn for_name(name: &str, bus: Option<&str>) -> (NameRule, Option<String>) {
        Rules::find(bus).rule(name)
    }

    /// The rule for `name` on bus `bus` only.
    pub fn on_bus(name: &str, bus: &str) -> NameRule {
        NameRule {
            name: name.to_string(),
            keys: vec![derive_key(bus, name)],
            publisher_uid: None,
            source: format!("bus '{}'", crate::error::arg_shown(bus)),
            only_keys: false,
        }
    }

    /// The rule for `name` under `config`.
    pub fn from_config(config: &Config, name: &str) -> NameRule {
        if let Some(t) = config.topic(name) {
            return NameRule {
                name: name.to_string(),
                keys: vec![t.key],
                // A user name the machine does not know cannot own anything.
                publisher_uid: t
                    .publisher_user
                    .as_ref()
                    .map(|u| crate::resolve_user(u).unwrap_or(NO_SUCH_USER)),
                source: format!(
                    "topic '{name}' of {}",
                    crate::error::path_shown(&config.path)
                ),
                only_keys: false,
            };
        }
        let mut keys = vec![derive_key(&config.bus, name)];
        let default = derive_key(DEFAULT_BUS, name);
        if !keys.contains(&default) {
            keys.push(default);
        }
        NameRule {
            name: name.to_string(),
            keys,
            publisher_uid: None,
            source: format!(
                "bus '{}' of {}, or bus '{DEFAULT_BUS}'",
                config.bus,
                crate::error::path_shown(&config.path)
            ),
            only_keys: false,
        }
    }

    /// Whether a segment owned by `uid` and created by `cuid` may be taken
    /// under this name away from its keys: both must be the configured
    /// publisher uid, or (without one) the caller's uid `me` or root.
    pub fn trusts(&self, uid: u32, cuid: u32, me: u32) -> bool {
        match self.publisher_uid {
            Some(p) => uid == p && cuid == p,
            None => [me, 0].contains(&uid) && [me, 0].contains(&cuid),
        }
    }

    /// Whether the segment at one of the keys, owned by `uid` and created by
    /// `cuid`, is the topic's (checked only with a configured publisher uid).
    pub fn owns_key(&self, uid: u32, cuid: u32) -> bool {
        self.publisher_uid.is_none_or(|p| uid == p && cuid == p)
    }
}

/// The rules of many names ([`NameRule::for_name`] for each), with the
/// config found and loaded once rather than once per name.
#[derive(Debug)]
pub struct Rules(RuleSource);

#[derive(Debug)]
enum RuleSource {
    /// `--bus`: names only on its keys; no config is looked for.
    Bus(String),
    /// The config found by the search order.
    Config(Box<Config>),
    /// The config does not load: the default bus, and this note.
    NotLoaded(String),
}

impl Rules {
    /// On `bus` if given, else under the config found by the search order.
    pub fn find(bus: Option<&str>) -> Rules {
        Rules(match bus {
            Some(b) => RuleSource::Bus(b.to_string()),
            None => match Config::find(None) {
                Ok((c, _)) => RuleSource::Config(Box::new(c)),
                Err(e) => RuleSource::NotLoaded(not_loaded(&e)),
            },
        })
    }

    /// The rule for `name`, and the note when the config does not load, as
    /// [`NameRule::for_name`] gives them.
    pub fn rule(&self, name: &str) -> (NameRule, Option<String>) {
        match &self.0 {
            RuleSource::Bus(b) => (
                NameRule {
                    only_keys: true,
                    ..NameRule::on_bus(name, b)
                },
                None,
            ),
            RuleSource::Config(c) => (NameRule::from_config(c, name), None),
            RuleSource::NotLoaded(note) => {
                (NameRule::on_bus(name, DEFAULT_BUS), Some(note.clone()))
            }
        }
    }
}

/// A segment a name resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its System V key.
    pub key: i32,
    /// Its shmid.
    pub shmid: i32,
    /// True if it sits at one of the name's keys.
    pub at_own_key: bool,
}

/// A segment that carries the name but is not taken under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Other {
    /// Its key.
    pub key: i32,
    /// Owner uid.
    pub uid: u32,
    /// Creator uid.
    pub cuid: u32,
}

/// Why a name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The segment at the name's key carries the name but was not created
    /// by, or does not belong to, the configured publisher.
    Squatted {
        /// The key.
        key: i32,
        /// Owner uid.
        uid: u32,
        /// Creator uid.
        cuid: u32,
        /// The configured publisher uid.
        expected: u32,
    },
    /// No trusted segment carries the name.
    NotFound {
        /// Segments with the name that belong to other users.
        others: Vec<Other>,
        /// A segment at one of the keys that is not a shmbus topic (key,
        /// owner uid, creator uid): possibly a squat.
        foreign: Option<Other>,
    },
    /// No readable segment carries the name, and a shmbus segment at one of
    /// its keys cannot be read (a newer layout, a header that asks for more
    /// than the segment has, left half-created, being created): the name
    /// belongs there, and `error` says why it cannot be read and what fixes
    /// it. Every tool reports this, never "not found" (which sends the user
    /// looking for a publisher that is not the problem).
    Unusable {
        /// The key.
        key: i32,
        /// Its shmid.
        shmid: i32,
        /// Why it cannot be read (the attach's own error).
        error: OpenError,
    },
    /// Several trusted segments carry the name and none is the only one
    /// with a live publisher.
    Ambiguous {
        /// Their keys.
        keys: Vec<i32>,
    },
}

/// The one text every tool gives for [`NameError::Squatted`]: who created
/// the segment at the name's key and who should have, and the fix. If a
/// process holds that segment's publisher lock, the fix names it: a shmbus
/// publisher creates a removed topic again within a second, so it must be
/// stopped first, and removing the segment under a live lock takes
/// `--force`.
pub fn squatted_text(rule: &NameRule, key: i32, uid: u32, cuid: u32, expected: u32) -> String {
    let k = format!("0x{:08x}", key as u32);
    if expected == NO_SUCH_USER {
        // Not a spoof: the config names a user this machine lacks, and the
        // fix is the config or the user. "Not the configured publisher uid
        // 4294967295 ... stop pid N" sent the one on call to kill the real
        // sensor.
        return format!(
            "the config names a `publisher_user` for '{}' ({}) that does not exist on this machine, so no segment can be that topic's; the one at key {k} was created by {} and belongs to {}: create that user and run the publisher as it, or correct `publisher_user` in the config (`shmbus doctor` names the line)",
            rule.name,
            rule.source,
            who(cuid),
            who(uid),
        );
    }
    let fix = match shmbus_core::lock::publisher_status(key) {
        shmbus_core::PublisherStatus::Alive { pid } => format!(
            "its process, pid {pid}, holds the topic's publisher lock and would create it again: find out what it is and stop it, then remove it as root (`shmbus rm --force {k}`)"
        ),
        _ => format!("remove it as root (`shmbus rm {k}`) and find out who created it"),
    };
    format!(
        "the segment at key {k}, where '{}' belongs ({}), was created by {} and belongs to {}, not the configured publisher {}: refusing a possibly spoofed topic; {fix}",
        rule.name,
        rule.source,
        who(cuid),
        who(uid),
        who(expected),
    )
}

/// A user by name and uid (`shmbus-sensors (uid 998)`), or the uid alone.
use shmbus_toolbox::units::user as who;

/// The one text every tool gives for [`NameError::NotFound`]'s `foreign`:
/// the name's key holds a segment that is not a shmbus topic. No publisher
/// can create the topic there, so it is not "not found, start its
/// publisher" and not "recorded (or served) once it appears".
pub fn foreign_text(f: &Other) -> String {
    let k = format!("0x{:08x}", f.key as u32);
    format!(
        "its key {k} holds a segment that is not a shmbus topic (created by {}, owner {}): squatted? no publisher can create the topic there; if that memory is no other program's, root removes it (`ipcrm -M {k}`), else move the topic to another key or bus",
        who(f.cuid),
        who(f.uid),
    )
}

/// Resolve `rule.name` among the segments in `/proc/sysvipc/shm` (removed
/// ones are never taken), as the module doc says. `me` is the caller's
/// effective uid. With several trusted candidates away from the keys, the
/// only one with a live publisher wins (the others are stale copies).
///
/// One lookup lists the machine's segments and, for a name not at its own
/// key, attaches every one of them: to look up many names at once, read a
/// [`Directory`] once and ask it for each ([`Directory::resolve`] gives the
/// same answers).
pub fn resolve(rule: &NameRule, me: u32) -> Result<Found, NameError> {
    Directory::read().resolve(rule, me)
}

/// What a segment's attach said: the topic name it carries, or why it
/// cannot be read.
type Probe = Result<String, OpenError>;

/// The machine's segments as one pass of name lookups sees them: listed
/// once, each attached at most once (when a lookup first needs it), so
/// resolving N names costs one scan of the M segments, not N of them.
/// Before, a tool that resolved each of its names with [`resolve`] attached
/// every segment once per name.
///
/// It is a snapshot: segments created or removed after [`Directory::read`]
/// are not seen, and what an attach said is kept. Read a new one for each
/// pass (a scan of a long-running tool).
pub struct Directory {
    /// Live segments (not removed, key not IPC_PRIVATE), in listing order.
    all: Vec<ProcEntry>,
    /// The first entry at each key.
    by_key: HashMap<i32, usize>,
    /// What attaching each entry said, filled on first use.
    probes: Vec<OnceCell<Probe>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("segments", &self.all.len())
            .field("attached", &self.attached())
            .finish()
    }
}

impl Directory {
    /// List the machine's segments (`/proc/sysvipc/shm`; none if it cannot
    /// be read, as [`resolve`] always did). Nothing is attached yet.
    pub fn read() -> Directory {
        Directory::of(sysvipc::segments().unwrap_or_default())
    }

    /// The directory of `list` (live segments only are kept).
    fn of(list: Vec<ProcEntry>) -> Directory {
        let all: Vec<ProcEntry> = list
            .into_iter()
            .filter(|e| e.mode() & SHM_DEST == 0 && e.key() != 0)
            .collect();
        let mut by_key = HashMap::with_capacity(all.len());
        for (i, e) in all.iter().enumerate() {
            by_key.entry(e.key()).or_insert(i);
        }
        let probes = all.iter().map(|_| OnceCell::new()).collect();
        Directory {
            all,
            by_key,
            probes,
        }
    }

    /// Number of segments listed.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// True if no segment was listed.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Number of segments attached so far (each at most once).
    pub fn attached(&self) -> usize {
        self.probes.iter().filter(|p| p.get().is_some()).count()
    }

    /// What attaching entry `i` says (attached on first use only).
    fn probe(&self, i: usize) -> &Probe {
        self.probes[i].get_or_init(|| {
            let e = &self.all[i];
            Segment::attach_shmid(e.id(), e.key()).map(|seg| seg.info().name.clone())
        })
    }

    /// [`resolve`] among the listed segments: the same answers, and the
    /// same errors, as the single lookup made at the time of the listing.
    pub fn resolve(&self, rule: &NameRule, me: u32) -> Result<Found, NameError> {
        let mut foreign = None;
        let mut unusable = None;
        for &k in &rule.keys {
            let Some(&i) = self.by_key.get(&k) else {
                continue;
            };
            let e = &self.all[i];
            let (uid, _, _) = e.owner();
            let cuid = e.creator_uid();
            // The name's segment at its own key: taken, unless the config
            // names its publisher and another user made it.
            let at_own_key = || {
                if !rule.owns_key(uid, cuid) {
                    return Err(NameError::Squatted {
                        key: k,
                        uid,
                        cuid,
                        expected: rule.publisher_uid.unwrap_or(NO_SUCH_USER),
                    });
                }
                Ok(Found {
                    key: k,
                    shmid: e.id(),
                    at_own_key: true,
                })
            };
            match self.probe(i) {
                Ok(name) if *name == rule.name => {
                    return at_own_key();
                }
                // Another topic's name (a 24-bit key collision): not this one.
                Ok(_) => {}
                Err(OpenError::NotShmbus { .. }) => foreign = Some(Other { key: k, uid, cuid }),
                // Unreadable or broken: this is where the name belongs; the
                // caller's attach reports why it cannot be read.
                Err(OpenError::PermissionDenied { .. } | OpenError::Corrupt { .. }) => {
                    return at_own_key();
                }
                // Gone since the listing.
                Err(OpenError::NotFound { .. } | OpenError::Removed { .. }) => {}
                // A shmbus segment this build cannot read: named if nothing
                // readable carries the name elsewhere.
                Err(error) => {
                    if unusable.is_none() {
                        unusable = Some((e, error.clone()));
                    }
                }
            }
        }
        let mut trusted = Vec::new();
        let mut others = Vec::new();
        for (i, e) in self.all.iter().enumerate() {
            if rule.only_keys || rule.keys.contains(&e.key()) {
                continue;
            }
            match self.probe(i) {
                Ok(name) if *name == rule.name => {}
                _ => continue,
            }
            let (uid, _, _) = e.owner();
            let cuid = e.creator_uid();
            if rule.trusts(uid, cuid, me) {
                trusted.push(e);
            } else {
                others.push(Other {
                    key: e.key(),
                    uid,
                    cuid,
                });
            }
        }
        match trusted.len() {
            0 => match unusable {
                Some((e, _)) if !rule.owns_key(e.owner().0, e.creator_uid()) => {
                    Err(NameError::Squatted {
                        key: e.key(),
                        uid: e.owner().0,
                        cuid: e.creator_uid(),
                        expected: rule.publisher_uid.unwrap_or(NO_SUCH_USER),
                    })
                }
                Some((e, error)) => Err(NameError::Unusable {
                    key: e.key(),
                    shmid: e.id(),
                    error,
                }),
                None => Err(NameError::NotFound { others, foreign }),
            },
            1 => Ok(Found {
                key: trusted[0].key(),
                shmid: trusted[0].id(),
                at_own_key: false,
            }),
            _ => {
                let alive: Vec<&&ProcEntry> = trusted
                    .iter()
                    .filter(|e| publisher_status(e.key()).is_alive())
                    .collect();
                match alive[..] {
                    [only] => Ok(Found {
                        key: only.key(),
                        shmid: only.id(),
                        at_own_key: false,
                    }),
                    _ => Err(NameError::Ambiguous {
                        keys: trusted.iter().map(|e| e.key()).collect(),
                    }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_config_or_the_bus() {
        let c = Config::parse(
            "bus = \"lab\"\n[[topic]]\nname = \"imu\"\nkey = 0x7e001234\npublisher_user = \"0\"\n",
            "lab.toml",
        )
        .unwrap();
        let r = NameRule::from_config(&c, "imu");
        assert_eq!(r.keys, [0x7e00_1234]);
        assert_eq!(r.publisher_uid, Some(0));
        let r = NameRule::from_config(&c, "gnss");
        assert_eq!(
            r.keys,
            [derive_key("lab", "gnss"), derive_key(DEFAULT_BUS, "gnss")]
        );
        assert_eq!(r.publisher_uid, None);
        assert_eq!(NameRule::on_bus("imu", "x").keys, [derive_key("x", "imu")]);
    }

    /// A config that does not load is one line in a name lookup's note,
    /// whatever its number of problems; before, every problem was a line of
    /// its own inside the note's parenthesis.
    #[test]
    fn a_config_that_does_not_load_is_one_line_in_a_lookup_note() {
        let one = Config::parse("bus = \"lab\"\n", "a.toml").unwrap_err();
        assert_eq!(
            not_loaded(&one),
            "the config does not load (a.toml:1:1: no topics: add at least one [[topic]] table with a `name`); names are looked up on bus 'shmbus'"
        );
        let two = Config::parse("bus = 7\n", "b.toml").unwrap_err();
        let n = not_loaded(&two);
        assert!(!n.contains('\n'), "{n}");
        assert!(
            n.starts_with("the config does not load (b.toml:1:1: no topics")
                && n.ends_with("; and 1 more problem: `shmbus doctor` lists them); names are looked up on bus 'shmbus'"),
            "{n}"
        );
        // 80 unknown fields and no topics: 81 problems, 50 of them kept.
        let text: String = (0..80).map(|i| format!("x{i} = 1\n")).collect();
        let many = Config::parse(&text, "c.toml").unwrap_err();
        let n = not_loaded(&many);
        assert!(!n.contains('\n'), "{n}");
        assert!(n.contains("; and 80 more problems"), "{n}");
    }

    #[test]
    fn trust_is_the_publisher_or_the_caller_or_root() {
        let mut r = NameRule::on_bus("imu", "x");
        assert!(r.trusts(1000, 1000, 1000));
        assert!(r.trusts(0, 0, 1000));
        assert!(r.trusts(0, 1000, 1000));
        assert!(!r.trusts(1001, 1001, 1000), "another user");
        assert!(
            !r.trusts(1000, 1001, 1000),
            "created by another user, given away"
        );
        assert!(r.owns_key(1001, 1001), "no publisher uid: the key decides");
        r.publisher_uid = Some(1001);
        assert!(r.trusts(1001, 1001, 1000));
        assert!(!r.trusts(1000, 1000, 1000), "the configured publisher only");
        assert!(!r.owns_key(1002, 1001));
    }
}
