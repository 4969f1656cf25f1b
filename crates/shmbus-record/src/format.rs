//! What a shmbus recording holds: channel roles, encodings and the channel
//! metadata keys (specified for humans in `docs/RECORDING.md`).

use std::collections::BTreeMap;

use shmbus_core::layout::{HeaderInfo, LAYOUT_VERSION};

/// Schema encoding of the lossless channels: the postcard-encoded
/// `postcard_schema` `OwnedNamedType`, byte for byte as in the segment.
pub const SCHEMA_POSTCARD: &str = "postcard-schema";
/// Message encoding of the lossless channels: the frame's postcard bytes.
pub const MESSAGE_POSTCARD: &str = "postcard";
/// Schema encoding of the viewer channels (MCAP well-known).
pub const SCHEMA_JSON: &str = "jsonschema";
/// Message encoding of the viewer channels (MCAP well-known).
pub const MESSAGE_JSON: &str = "json";

/// Topic of the missed-frames channel.
pub const MISSED_TOPIC: &str = "/shmbus/missed";
/// Suffix of a lossless channel's MCAP topic: `imu#postcard`. `#` is not
/// allowed in shmbus topic names, so it cannot collide with a real topic.
pub const LOSSLESS_SUFFIX: &str = "#postcard";

/// Channel metadata keys.
pub mod key {
    /// `lossless`, `view` or `missed`.
    pub const ROLE: &str = "shmbus.role";
    /// The shmbus topic name.
    pub const TOPIC: &str = "shmbus.topic";
    /// The System V key, `0x%08x`.
    pub const KEY: &str = "shmbus.key";
    /// Slot count of the ring.
    pub const SLOTS: &str = "shmbus.slots";
    /// Frame capacity, bytes.
    pub const FRAME_CAPACITY: &str = "shmbus.frame_capacity";
    /// Segment layout version the topic had.
    pub const LAYOUT_VERSION: &str = "shmbus.layout_version";
    /// Schema fingerprint (FNV-1a 64 of the schema bytes), `%016x`.
    pub const FINGERPRINT: &str = "shmbus.schema_fingerprint";
    /// Whether the topic had futex notification on (`true`/`false`).
    pub const NOTIFY: &str = "shmbus.notify";
    /// `true` on a view channel whose messages are `{"value": ...}`.
    pub const WRAPPED: &str = "shmbus.wrapped";
    /// The segment's owner uid when it was recorded (decimal).
    pub const OWNER_UID: &str = "shmbus.owner_uid";
    /// The uid that created the segment (decimal; nobody can change it).
    pub const CREATOR_UID: &str = "shmbus.creator_uid";
    /// The full 64-bit generation the recording of the channel starts at
    /// (decimal): every frame on it has this generation or a later one.
    /// With the low 32 bits in each message's `sequence` it gives the
    /// full generation ([`Generations`](super::Generations)).
    pub const START_GENERATION: &str = "shmbus.start_generation";
    /// The clock of the messages' `publish_time`: [`MONOTONIC`](super::MONOTONIC)
    /// (the frame's `CLOCK_MONOTONIC` publish time, ns since boot). Absent
    /// in recordings made before it existed: there `publish_time` equals
    /// `log_time`, the `CLOCK_REALTIME` publish time.
    pub const PUBLISH_TIME: &str = "shmbus.publish_time";
}

/// Value of [`key::PUBLISH_TIME`]: `publish_time` is `CLOCK_MONOTONIC`
/// (ns since boot; MCAP allows any epoch the reader knows). One recording
/// is one boot, so these stamps space its frames correctly across a step
/// of the wall clock, which `log_time` cannot.
pub const MONOTONIC: &str = "monotonic";

/// Whether a channel's `publish_time` is `CLOCK_MONOTONIC`
/// ([`key::PUBLISH_TIME`]).
pub fn publish_time_is_monotonic(metadata: &BTreeMap<String, String>) -> bool {
    metadata.get(key::PUBLISH_TIME).map(String::as_str) == Some(MONOTONIC)
}

/// Recovers the full 64-bit generation of each recorded frame, read in
/// file order: MCAP's `sequence` holds only its low 32 bits. On a channel
/// the generations only go up; a frame's generation is the first one at
/// or after the previous frame's + 1 (the channel's
/// `shmbus.start_generation` for its first frame; 1 in recordings made
/// before that key existed) whose low 32 bits are the `sequence`. Exact
/// unless 2^32 or more frames were lost between two recorded ones, which
/// the recorder always reports as missed: a missed event's
/// `at_generation` (a full value) is the generation of the topic's next
/// recorded frame, and is taken as such when its low bits match.
#[derive(Debug, Default)]
pub struct Generations {
    /// Per channel: the full generation of its last frame.
    last: std::collections::HashMap<u16, u64>,
    /// Per topic name: the `at_generation` of its last missed event, not
    /// yet matched by a frame.
    missed_at: std::collections::HashMap<String, u64>,
}

impl Generations {
    /// A missed event of `topic` whose next recorded frame is `at`.
    pub fn missed(&mut self, topic: &str, at: u64) {
        self.missed_at.insert(topic.to_string(), at);
    }

    /// The full generation of a frame on lossless channel `ch`.
    pub fn frame(&mut self, ch: &mcap::Channel<'_>, sequence: u32) -> u64 {
        let topic = ch.metadata.get(key::TOPIC).map_or("", String::as_str);
        let after = match self.last.get(&ch.id) {
            Some(&g) => g.saturating_add(1),
            None => ch
                .metadata
                .get(key::START_GENERATION)
                .and_then(|g| g.parse::<u64>().ok())
                .unwrap_or(1),
        };
        let g = match self.missed_at.get(topic) {
            Some(&at) if at as u32 == sequence && at >= after => {
                self.missed_at.remove(topic);
                at
            }
            _ => after.saturating_add(u64::from(sequence.wrapping_sub(after as u32))),
        };
        self.last.insert(ch.id, g);
        g
    }
}

/// Channel roles.
pub mod role {
    /// postcard bytes + postcard-schema: replayable, decodable.
    pub const LOSSLESS: &str = "lossless";
    /// JSON + JSON Schema: for viewers.
    pub const VIEW: &str = "view";
    /// Missed-frames events.
    pub const MISSED: &str = "missed";
}

/// Everything replay needs to recreate a topic, from a channel's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// System V key.
    pub key: i32,
    /// Slot count.
    pub slots: u32,
    /// Frame capacity, bytes.
    pub frame_capacity: usize,
    /// Futex notification on.
    pub notify: bool,
}

impl TopicMeta {
    /// From an attached segment's header.
    pub fn from_header(info: &HeaderInfo, key: i32) -> TopicMeta {
        TopicMeta {
            name: info.name.clone(),
            key,
            slots: info.geometry.slot_count,
            frame_capacity: info.geometry.frame_capacity,
            notify: info.notify(),
        }
    }

    /// The channel metadata for `role`.
    pub fn to_metadata(&self, role: &str, fingerprint: u64) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(key::ROLE.into(), role.into());
        m.insert(key::TOPIC.into(), self.name.clone());
        m.insert(key::KEY.into(), format!("0x{:08x}", self.key as u32));
        m.insert(key::SLOTS.into(), self.slots.to_string());
        m.insert(key::FRAME_CAPACITY.into(), self.frame_capacity.to_string());
        m.insert(key::LAYOUT_VERSION.into(), LAYOUT_VERSION.to_string());
        m.insert(key::FINGERPRINT.into(), format!("{fingerprint:016x}"));
        m.insert(key::NOTIFY.into(), self.notify.to_string());
        m
    }

    /// Back from channel metadata; `Err` names the missing or bad key.
    pub fn from_metadata(m: &BTreeMap<String, String>) -> Result<TopicMeta, String> {
        let get = |k: &str| {
            m.get(k)
                .ok_or_else(|| format!("channel metadata lacks '{k}'"))
        };
        let bad = |k: &str| format!("channel metadata '{k}' is not a valid value");
        let key_text = get(key::KEY)?;
        let key = parse_key(key_text).ok_or_else(|| bad(key::KEY))?;
        Ok(TopicMeta {
            name: get(key::TOPIC)?.clone(),
            key,
            slots: get(key::SLOTS)?.parse().map_err(|_| bad(key::SLOTS))?,
            frame_capacity: get(key::FRAME_CAPACITY)?
                .parse()
                .map_err(|_| bad(key::FRAME_CAPACITY))?,
            notify: m.get(key::NOTIFY).is_none_or(|v| v != "false"),
        })
    }
}

/// Parse a System V key: `0x53a1b2c3` (hex, as `ipcs` shows it) or decimal
/// (possibly negative, as `/proc/sysvipc/shm` shows it).
pub fn parse_key(s: &str) -> Option<i32> {
    shmbus_toolbox::parse::key(s).ok()
}

/// The recording's bytes as one front-to-back read of one open file: the
/// magic bytes already checked, then the rest. It remembers the last bytes
/// it read, so a reader of a pipe or FIFO (read once, never reopened)
/// still learns at the end whether the file ended with the MCAP magic.
pub struct Source {
    inner: std::io::Chain<std::io::Cursor<Vec<u8>>, std::fs::File>,
    /// The last 8 bytes read (the start is zeros until 8 were read).
    last: [u8; 8],
    /// Bytes read in all.
    read: u64,
}

impl std::io::Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let got = self.inner.read(buf)?;
        let n = got.min(self.last.len());
        self.last.copy_within(n.., 0);
        let keep = self.last.len() - n;
        self.last[keep..].copy_from_slice(&buf[got - n..got]);
        self.read += got as u64;
        Ok(got)
    }
}

/// After a streaming read that ended without an error (the MCAP reader
/// stops at the data end record): read the rest, the summary and footer,
/// and tell whether the file ended with the MCAP magic after more than the
/// leading one, i.e. its writer finished it. Blocks like `cat(1)` on a
/// pipe whose writer has not closed it.
pub fn finished_after(reader: Messages) -> bool {
    let mut rest = reader.source;
    if std::io::copy(&mut rest, &mut std::io::sink()).is_err() {
        return false;
    }
    // Read to the end: the buffer is empty and the source saw every byte.
    let source = rest.into_inner();
    ends_finished(source.read, &source.last)
}

/// Most bytes handed to the MCAP reader per read. The reader asks for a
/// whole record at once, and makes room for what it asks before a byte
/// arrives: a length field that lies (a 60-byte file whose first record
/// says 250 MiB) would allocate that much. Handing it at most this much
/// per read, its buffer grows only with the bytes the file really has.
const READ_STEP: usize = 64 * 1024;

/// The linked messages of a recording in file order ([`open_messages`]):
/// `mcap::io::MessageReader` with its reads bounded to 64 KiB each.
pub struct Messages {
    source: std::io::BufReader<Source>,
    reader: mcap::sans_io::MessageReader,
    done: bool,
}

impl Messages {
    /// A channel the reader has passed, by id.
    pub fn get_channel(&self, id: u16) -> Option<std::sync::Arc<mcap::Channel<'static>>> {
        self.reader.get_channel(id)
    }
}

impl Iterator for Messages {
    type Item = mcap::McapResult<mcap::Message<'static>>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::io::Read;
        if self.done {
            return None;
        }
        while let Some(event) = self.reader.next_event() {
            match event {
                Ok(mcap::sans_io::MessageReadEvent::ReadRequest(need)) => {
                    let buf = self.reader.insert(need.clamp(1, READ_STEP));
                    let read = loop {
                        match self.source.read(buf) {
                            Ok(n) => break n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(e) => {
                                self.done = true;
                                return Some(Err(e.into()));
                            }
                        }
                    };
                    self.reader.notify_read(read);
                }
                Ok(mcap::sans_io::MessageReadEvent::Message(m)) => return Some(Ok(m)),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.done = true;
        None
    }
}

/// The one rule for "its writer finished it", given the file's length and
/// its last bytes: it ends with the MCAP magic, and is longer than the
/// leading magic alone (an 8-byte file is a recording cut at its start).
fn ends_finished(len: u64, tail: &[u8]) -> bool {
    len > mcap::MAGIC.len() as u64 && tail == mcap::MAGIC
}

/// A streaming reader over a recording that needs no summary and no end
/// magic (a file cut short by a crash reads up to its last complete
/// chunk); chunk CRCs are checked before a chunk's messages are yielded.
/// The file is opened and read once, so a pipe or FIFO works too;
/// [`finished_after`] says at the end whether the file was finished.
pub fn open_messages(path: &std::path::Path) -> Result<Messages, crate::Exit> {
    use std::io::Read;
    let shown = path.display();
    let mut file = std::fs::File::open(path).map_err(|e| {
        let msg = format!("cannot open {shown}: {e}");
        if e.kind() == std::io::ErrorKind::NotFound {
            crate::Exit::not_found(format!("{msg}; check the path"))
        } else {
            crate::Exit::error(msg)
        }
    })?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(crate::Exit::error(format!(
            "{shown} is a directory; give a .mcap file written by `shmbus record`"
        )));
    }
    // The magic first: anything else is named as such, never "cut short".
    // Up to 8 bytes however the reads split them (a pipe may give fewer
    // per read); they are handed on to the MCAP reader, not read again.
    let mut magic = Vec::with_capacity(mcap::MAGIC.len());
    (&mut file)
        .take(mcap::MAGIC.len() as u64)
        .read_to_end(&mut magic)
        .map_err(|e| crate::Exit::error(format!("cannot read {shown}: {e}")))?;
    if magic[..] != mcap::MAGIC[..] {
        if let Some(pid) = recorder_writing(path) {
            return Err(crate::Exit::not_found(format!(
                "{shown} is being recorded now (recorder pid {pid}) and holds nothing yet: the recorder writes it a chunk at a time, at least once a second"
            )));
        }
        return Err(crate::Exit::error(format!(
            "{shown} is not an MCAP file ({}); give a file written by `shmbus record`",
            if magic.is_empty() {
                "it is empty".to_string()
            } else {
                "it does not start with the MCAP magic".to_string()
            }
        )));
    }
    // The source counts the magic when the MCAP reader reads it from the
    // cursor.
    let source = Source {
        inner: std::io::Cursor::new(magic).chain(file),
        last: [0; 8],
        read: 0,
    };
    let options = mcap::sans_io::LinearReaderOptions::default()
        .with_skip_end_magic(true)
        .with_prevalidate_chunk_crcs(true)
        .with_record_length_limit(256 * 1024 * 1024);
    Ok(Messages {
        source: std::io::BufReader::with_capacity(256 * 1024, source),
        reader: mcap::sans_io::MessageReader::new_with_options(options),
        done: false,
    })
}

/// Refuse what cannot be read more than once (a pipe, a FIFO, a
/// terminal): `replay` reads a recording's start, then the whole of it on
/// each pass. `cat` reads once and takes any of them.
pub fn require_regular_file(path: &std::path::Path) -> Result<(), crate::Exit> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() && !m.is_dir() => Err(crate::Exit::error(format!(
            "{} is not a regular file (a pipe or a device?): replay reads a recording more than once; save it to a file first (`cat > rec.mcap`)",
            path.display()
        ))),
        // Missing files, directories and unreadable ones get
        // `open_messages`'s own messages.
        _ => Ok(()),
    }
}

/// How a streaming read of a recording ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Read to the end.
    Complete,
    /// The file stops inside a record: cut short (crash, full disk).
    CutShort,
}

/// True if the file ends with the MCAP magic, i.e. its writer finished it
/// (footer and summary written). A streaming read that ends without an
/// error on a file without it means the file was cut at a chunk boundary.
/// Opens the file again: for regular files only ([`require_regular_file`];
/// a one-pass reader asks [`finished_after`]).
pub fn finished(path: &std::path::Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let n = mcap::MAGIC.len();
    let mut tail = vec![0u8; n];
    std::fs::File::open(path)
        .and_then(|mut f| {
            let len = f.metadata()?.len();
            if len < n as u64 {
                return Ok(false);
            }
            f.seek(SeekFrom::End(-(n as i64)))?;
            f.read_exact(&mut tail)?;
            Ok(ends_finished(len, &tail))
        })
        .unwrap_or(false)
}

/// Why a file that no recorder is writing has no end, as `cat` and
/// `replay` say it: they cannot tell a killed recorder from one whose
/// disk filled (the recorder reports a full disk itself, and cuts the
/// file back to its last complete record).
pub const CUT_SHORT_WHY: &str = "its recorder did not finish it: killed, or out of disk space?";

/// The line `cat` and `replay` print for a file with no end (its last
/// chunk complete, no footer): a note when a recorder is writing it now,
/// a warning that it was cut short otherwise; `doing` says what the tool
/// does with it ("shown", "replaying").
pub fn unfinished_line(path: &std::path::Path, doing: &str) -> String {
    match recorder_writing(path) {
        Some(pid) => format!(
            "shmbus: note: {} is being recorded now (recorder pid {pid}); {doing} up to its last complete chunk",
            path.display()
        ),
        None => format!(
            "shmbus: warning: {} was cut short ({CUT_SHORT_WHY}); {doing} up to its last complete chunk",
            path.display()
        ),
    }
}

/// The pid of a recorder writing `path` now: a process holding an
/// exclusive `flock` on it (the recorder holds one on its output while it
/// writes), found in `/proc/locks` without taking a lock (a test lock
/// could make a recorder starting at that moment refuse its file).
/// `None` for anything else, and where `/proc/locks` cannot be read.
pub fn recorder_writing(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    let (major, minor) = (
        nix::sys::stat::major(m.dev()),
        nix::sys::stat::minor(m.dev()),
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|l| {
        // `1: FLOCK  ADVISORY  WRITE 5195 fe:00:9830430 0 EOF`
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1) != Some(&"FLOCK") || f.get(3) != Some(&"WRITE") {
            return None;
        }
        let mut id = f.get(5)?.split(':');
        let ma = u64::from_str_radix(id.next()?, 16).ok()?;
        let mi = u64::from_str_radix(id.next()?, 16).ok()?;
        let ino: u64 = id.next()?.parse().ok()?;
        (ma == major && mi == minor && ino == m.ino())
            .then(|| f[4].parse().ok())
            .flatten()
    })
}

/// Classify a read error: a truncated file is [`End::CutShort`] (its
/// complete chunks were read); anything else is an error naming the file.
pub fn classify(path: &std::path::Path, e: mcap::McapError) -> Result<End, crate::Exit> {
    match e {
        mcap::McapError::UnexpectedEof | mcap::McapError::UnexpectedEoc => Ok(End::CutShort),
        mcap::McapError::BadMagic => Err(crate::Exit::error(format!(
            "{} is not an MCAP file (bad magic); give a file written by `shmbus record`",
            path.display()
        ))),
        mcap::McapError::Io(io) => Err(crate::Exit::error(format!(
            "cannot read {}: {io}",
            path.display()
        ))),
        // Not damage: a chunk compressed by another tool (`mcap compress`
        // uses zstd, other writers lz4). shmbus reads uncompressed chunks
        // only (no decompressor is built for the board), and `mcap recover`
        // would not help; `mcap decompress` does.
        mcap::McapError::UnsupportedCompression(how) => Err(crate::Exit::error(format!(
            "{} holds chunks compressed with '{}', which shmbus does not read (it reads the uncompressed chunks it writes); decompress it first, e.g. `mcap decompress {} -o plain.mcap` with Foxglove's mcap CLI, and give plain.mcap; the messages before the first compressed chunk were read",
            path.display(),
            shmbus_core::topic::shown(&how),
            path.display()
        ))),
        e => Err(crate::Exit::error(format!(
            "{} is damaged: {e}; messages before the damage were read (recover the rest with `mcap recover`)",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_remembers_the_last_eight_bytes_however_reads_split_them() {
        use std::io::Read;
        let tmp = shmbus_testkit::TempDir::new("source");
        let path = tmp.join("body");
        let body: Vec<u8> = (0..100u8).chain(mcap::MAGIC.iter().copied()).collect();
        std::fs::write(&path, &body).unwrap();
        for chunk in [1usize, 3, 7, 8, 9, 64, 4096] {
            let mut src = Source {
                inner: std::io::Cursor::new(mcap::MAGIC.to_vec())
                    .chain(std::fs::File::open(&path).unwrap()),
                last: [0; 8],
                read: 0,
            };
            let mut buf = vec![0u8; chunk];
            let mut seen = Vec::new();
            loop {
                let n = src.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                assert_eq!(src.last[8 - n.min(8)..], seen[seen.len() - n.min(8)..]);
            }
            assert_eq!(src.read, 8 + body.len() as u64, "chunk {chunk}");
            assert_eq!(&src.last[..], mcap::MAGIC, "chunk {chunk}");
        }
    }

    #[test]
    fn full_generations_come_back_from_their_low_bits() {
        let channel = |id: u16, start: Option<u64>| {
            let mut metadata = BTreeMap::new();
            metadata.insert(key::TOPIC.to_string(), "imu".to_string());
            if let Some(s) = start {
                metadata.insert(key::START_GENERATION.to_string(), s.to_string());
            }
            mcap::Channel {
                id,
                topic: "imu#postcard".into(),
                schema: None,
                message_encoding: MESSAGE_POSTCARD.into(),
                metadata,
            }
        };
        let big = (5u64 << 32) + 7;
        let mut g = Generations::default();
        let a = channel(1, Some(big));
        for want in [big, big + 1, big + 5] {
            assert_eq!(g.frame(&a, want as u32), want);
        }
        // Across a 2^32 boundary.
        let top = (6u64 << 32) - 1;
        assert_eq!(g.frame(&a, top as u32), top);
        assert_eq!(g.frame(&a, (top + 1) as u32), top + 1);
        // A loss of more than 2^32 frames, reported as missed.
        let far = top + 1 + (3u64 << 32) + 9;
        g.missed("imu", far);
        assert_eq!(g.frame(&a, far as u32), far);
        // Another channel of the topic (recreated): its own start.
        let b = channel(2, Some(1));
        assert_eq!(g.frame(&b, 1), 1);
        assert_eq!(g.frame(&b, 2), 2);
        // A recording made before the key: as before below 2^32.
        let old = channel(3, None);
        assert_eq!(g.frame(&old, 40), 40);
        assert_eq!(g.frame(&old, 41), 41);
    }

    #[test]
    fn keys_parse_in_both_notations() {
        assert_eq!(parse_key("0x53000001"), Some(0x5300_0001));
        assert_eq!(parse_key("1392508928"), Some(1_392_508_928));
        assert_eq!(parse_key("-1"), Some(-1));
        assert_eq!(parse_key("0xffffffff"), Some(-1));
        assert_eq!(parse_key("imu"), None);
        assert_eq!(parse_key("0x1ffffffff"), None);
    }

    #[test]
    fn metadata_round_trips() {
        let t = TopicMeta {
            name: "imu".into(),
            key: 0x7e12_3456,
            slots: 64,
            frame_capacity: 77,
            notify: false,
        };
        let m = t.to_metadata(role::LOSSLESS, 0xabcd);
        assert_eq!(m[key::ROLE], "lossless");
        assert_eq!(m[key::KEY], "0x7e123456");
        assert_eq!(TopicMeta::from_metadata(&m).unwrap(), t);
        let mut broken = m.clone();
        broken.remove(key::SLOTS);
        assert!(
            TopicMeta::from_metadata(&broken)
                .unwrap_err()
                .contains("shmbus.slots")
        );
    }
}
