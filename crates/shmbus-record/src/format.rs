//! What a shmbus recording holds: channel roles, encodings and the channel
//! metadata keys (specified for humans in `docs/RECORDING.md`).

use std::collections::BTreeMap;

use shmbus_core::layout::{HeaderInfo, LAYOUT_VERSION};
use shmbus_core::plural::count;

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
    /// The user name of [`OWNER_UID`] on the machine that recorded, when
    /// it had one: `cat` names the user as that machine knew it, not as
    /// the machine reading the file does (uid 1000 is another user there).
    pub const OWNER_USER: &str = "shmbus.owner_user";
    /// The user name of [`CREATOR_UID`] on the machine that recorded.
    pub const CREATOR_USER: &str = "shmbus.creator_user";
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
pub fn finished_after(reader: Messages) -> (bool, u64) {
    let mut rest = reader.source;
    if std::io::copy(&mut rest, &mut std::io::sink()).is_err() {
        return (false, rest.get_ref().read);
    }
    // Read to the end: the buffer is empty and the source saw every byte.
    let source = rest.into_inner();
    (ends_finished(source.read, &source.last), source.read)
}

/// Longest record the reader takes (a chunk of the recorder's is at most a
/// few MiB): a longer length field is garbage, and the read stops there.
const RECORD_LENGTH_LIMIT: u64 = 256 * 1024 * 1024;

/// Opcodes the reader looks at (MCAP spec).
mod op {
    pub const SCHEMA: u8 = 0x03;
    pub const CHANNEL: u8 = 0x04;
    pub const MESSAGE: u8 = 0x05;
    pub const CHUNK: u8 = 0x06;
    pub const FOOTER: u8 = 0x02;
    pub const DATA_END: u8 = 0x0F;
}

/// CRC-32 (IEEE, reflected), as MCAP's chunk CRCs.
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// A damaged record the reader skipped, then read on after: its length
/// field was sane, so the next record is known, but its body was not
/// (a chunk whose CRC fails, a record that does not parse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Byte offset of the record (its opcode) in the file.
    pub offset: u64,
    /// Its size in bytes, opcode and length field included.
    pub size: u64,
    /// `chunk` or `record`.
    pub kind: &'static str,
    /// Messages it claimed (counted in its damaged body), when its record
    /// framing still holds; `None` when it does not.
    pub messages: Option<u64>,
    /// Messages of it already read before its damage showed (a chunk
    /// without a CRC whose records stop parsing part way).
    pub read_before: u64,
    /// What is wrong with it.
    pub why: String,
}

impl Skipped {
    /// The one line `cat` and `replay` print for it on standard error.
    pub fn line(&self, path: &std::path::Path) -> String {
        let claimed = match self.messages {
            Some(n) => format!("{n} message{}", if n == 1 { "" } else { "s" }),
            None => "messages unknown".to_string(),
        };
        let before = if self.read_before > 0 {
            format!(", {} read before the damage", self.read_before)
        } else {
            String::new()
        };
        format!(
            "shmbus: warning: {} is damaged: skipped the {} at byte {} ({}, {claimed}{before}): {}; reading on after it",
            path.display(),
            self.kind,
            self.offset,
            count(self.size, "byte"),
            self.why
        )
    }
}

/// The messages the records of a chunk body claim: counted by walking its
/// record framing; `None` if the framing does not end exactly at its end.
fn messages_claimed(records: &[u8]) -> Option<u64> {
    let mut at = 0usize;
    let mut n = 0u64;
    while at < records.len() {
        let head = records.get(at..at.checked_add(9)?)?;
        let len = usize::try_from(u64::from_le_bytes(head[1..9].try_into().ok()?)).ok()?;
        n += u64::from(head[0] == op::MESSAGE);
        at = at.checked_add(9)?.checked_add(len)?;
    }
    (at == records.len()).then_some(n)
}

/// The linked messages of a recording in file order ([`open_messages`]).
///
/// It walks the top-level records itself (opcode, 64-bit length, body),
/// so that one damaged record whose length is sane (a chunk whose CRC
/// fails: a bit flipped on an SD card) is skipped and named
/// ([`Messages::next_skip`]) and the records after it are read. A length
/// over 256 MiB or past the end of the file cannot be skipped: the read
/// ends there with an error ([`classify`]). Memory: one record at a time,
/// allocated as its bytes arrive, never as its length field claims.
pub struct Messages {
    source: std::io::BufReader<Source>,
    /// Offset of the next top-level record.
    pos: u64,
    /// Offset of the top-level record being read (the one a file cut
    /// short stops inside).
    record_at: u64,
    /// The data section's end (or the footer) was reached: every message
    /// of the file was read, though its summary may be cut off.
    data_end: bool,
    channels: mcap::read::ChannelAccumulator<'static>,
    /// The records of the chunk being read, and where the next one starts.
    chunk: Vec<u8>,
    chunk_at: usize,
    /// Offset and size of that chunk, and the messages it gave so far.
    chunk_record: (u64, u64),
    chunk_given: u64,
    skips: Vec<Skipped>,
    reported: usize,
    /// Messages of channels never defined (their definition was in a
    /// skipped record), by channel id.
    unknown: std::collections::BTreeMap<u16, u64>,
    /// The file, when it can be read again: its summary section repeats
    /// every schema and channel, for those a skipped chunk defined.
    again: Option<std::path::PathBuf>,
    summary_read: bool,
    done: bool,
}

impl Messages {
    /// Bytes read from the source so far (a pipe or FIFO has no size of
    /// its own to show).
    pub fn bytes_read(&self) -> u64 {
        self.source.get_ref().read
    }

    /// Offset in the file of the next top-level record: after a read cut
    /// short ([`End::CutShort`]), where the record the file stops inside
    /// starts.
    pub fn record_offset(&self) -> u64 {
        self.record_at
    }

    /// Whether the read reached the end of the data section (or the
    /// footer): every message the file holds was read, whatever follows
    /// (a summary cut short) is missing.
    pub fn read_all_data(&self) -> bool {
        self.data_end
    }

    /// A channel the reader has passed, by id.
    pub fn get_channel(&self, id: u16) -> Option<std::sync::Arc<mcap::Channel<'static>>> {
        self.channels.get(id)
    }

    /// The next damaged record skipped and not yet handed out: call after
    /// each [`Iterator::next`] (the skip came before the message it
    /// returned) and once more after the last.
    pub fn next_skip(&mut self) -> Option<Skipped> {
        let s = self.skips.get(self.reported).cloned();
        if s.is_some() {
            self.reported += 1;
        }
        s
    }

    /// Every damaged record skipped so far.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skips
    }

    /// Messages left out because their channel was never defined (its
    /// definition was in a skipped record, and the file has no summary
    /// that repeats it), by channel id.
    pub fn unknown_channels(&self) -> &std::collections::BTreeMap<u16, u64> {
        &self.unknown
    }

    /// What the skips cost, for a final error: `None` if nothing was
    /// skipped.
    pub fn damage(&self, path: &std::path::Path) -> Option<String> {
        let what = self.skipped_summary()?;
        Some(format!(
            "{} is damaged: {what}; everything else was read",
            path.display()
        ))
    }

    /// How much was skipped: `N damaged records skipped (B bytes, M
    /// messages)`, and the messages of channels they defined; `None` if
    /// nothing was.
    pub fn skipped_summary(&self) -> Option<String> {
        if self.skips.is_empty() && self.unknown.is_empty() {
            return None;
        }
        let bytes: u64 = self.skips.iter().map(|s| s.size).sum();
        let known: u64 = self.skips.iter().filter_map(|s| s.messages).sum();
        let unknown = self.skips.iter().filter(|s| s.messages.is_none()).count();
        let n = self.skips.len();
        let mut what = format!(
            "{} skipped ({}, holding {}{})",
            count(n, "damaged record"),
            count(bytes, "byte"),
            count(known, "message"),
            if unknown > 0 {
                format!(" and the messages of {unknown} whose count is unknown")
            } else {
                String::new()
            }
        );
        let lost: u64 = self.unknown.values().sum();
        if lost > 0 {
            what.push_str(&format!(
                ", and {lost} message{} of channels they defined",
                if lost == 1 { "" } else { "s" }
            ));
        }
        Some(what)
    }

    /// The lines naming the messages of undefined channels, one per
    /// channel id.
    pub fn unknown_lines(&self, path: &std::path::Path) -> Vec<String> {
        self.unknown
            .iter()
            .map(|(id, n)| {
                format!(
                    "shmbus: warning: {}: {n} message{} of channel {id} left out: the channel's definition was in a damaged record{}",
                    path.display(),
                    if *n == 1 { "" } else { "s" },
                    if self.again.is_some() {
                        " and the file has no summary that repeats it"
                    } else {
                        " (read from a pipe, the summary at its end that repeats it cannot be read first)"
                    }
                )
            })
            .collect()
    }

    fn skip(&mut self, s: Skipped) {
        self.skips.push(s);
    }

    /// `len` bytes of the source, allocated as they arrive.
    fn body(&mut self, len: u64) -> mcap::McapResult<Vec<u8>> {
        use std::io::Read;
        let mut body = Vec::new();
        let got = (&mut self.source).take(len).read_to_end(&mut body)?;
        if (got as u64) < len {
            return Err(mcap::McapError::UnexpectedEof);
        }
        Ok(body)
    }

    /// The next message out of the chunk being read; `None` at its end
    /// (or when the rest of it is damaged: skipped and named).
    fn next_in_chunk(&mut self) -> Option<mcap::Message<'static>> {
        while self.chunk_at < self.chunk.len() {
            let rest = &self.chunk[self.chunk_at..];
            let parsed = if rest.len() < 9 {
                Err("it ends in the middle of a record".to_string())
            } else {
                let len = u64::from_le_bytes(rest[1..9].try_into().unwrap_or([0; 8]));
                match usize::try_from(len).ok().filter(|&l| l <= rest.len() - 9) {
                    None => Err("a record in it runs past its end".to_string()),
                    Some(l) => Ok((rest[0], 9 + l)),
                }
            };
            let (opcode, size) = match parsed {
                Ok(x) => x,
                Err(why) => {
                    self.chunk_failed(why);
                    return None;
                }
            };
            let body = std::mem::take(&mut self.chunk);
            let record = &body[self.chunk_at + 9..self.chunk_at + size];
            let got = self.record(opcode, record);
            self.chunk = body;
            self.chunk_at += size;
            match got {
                Ok(Some(m)) => {
                    self.chunk_given += 1;
                    return Some(m);
                }
                Ok(None) => {}
                Err(why) => {
                    self.chunk_failed(why);
                    return None;
                }
            }
        }
        self.chunk = Vec::new();
        None
    }

    /// The rest of the chunk being read is damaged: skip it, named.
    fn chunk_failed(&mut self, why: String) {
        let (offset, size) = self.chunk_record;
        self.skip(Skipped {
            offset,
            size,
            kind: "chunk",
            messages: None,
            read_before: self.chunk_given,
            why,
        });
        self.chunk = Vec::new();
        self.chunk_at = 0;
    }

    /// A schema, channel or message record (top-level or in a chunk):
    /// the message it is, if any; `Err` says why it is damaged.
    fn record(
        &mut self,
        opcode: u8,
        body: &[u8],
    ) -> Result<Option<mcap::Message<'static>>, String> {
        if !matches!(opcode, op::SCHEMA | op::CHANNEL | op::MESSAGE) {
            return Ok(None);
        }
        let record = mcap::parse_record(opcode, body).map_err(|e| e.to_string())?;
        match record {
            mcap::records::Record::Schema { header, data } => self
                .channels
                .add_schema_from_slice(header, &data)
                .map_err(|e| e.to_string())?,
            mcap::records::Record::Channel(c) => {
                self.channels.add_channel(c).map_err(|e| e.to_string())?
            }
            mcap::records::Record::Message { header, data } => {
                let mut channel = self.channels.get(header.channel_id);
                if channel.is_none() && !self.skips.is_empty() && !self.summary_read {
                    self.summary_read = true;
                    if let Some(path) = self.again.clone() {
                        read_summary_channels(&path, &mut self.channels);
                    }
                    channel = self.channels.get(header.channel_id);
                }
                let Some(channel) = channel else {
                    *self.unknown.entry(header.channel_id).or_default() += 1;
                    return Ok(None);
                };
                return Ok(Some(mcap::Message {
                    channel,
                    sequence: header.sequence,
                    log_time: header.log_time,
                    publish_time: header.publish_time,
                    data: std::borrow::Cow::Owned(data.into_owned()),
                }));
            }
            _ => {}
        }
        Ok(None)
    }

    /// A chunk record read whole: its records to be read, or skipped.
    fn load_chunk(&mut self, offset: u64, body: Vec<u8>) -> mcap::McapResult<()> {
        let size = 9 + body.len() as u64;
        let damaged = |why: String, messages: Option<u64>| Skipped {
            offset,
            size,
            kind: "chunk",
            messages,
            read_before: 0,
            why,
        };
        let (header, data_at) = match mcap::parse_record(op::CHUNK, &body) {
            Ok(mcap::records::Record::Chunk { header, data }) => {
                // Where the records lie in `body`: `parse_record` borrows
                // them from it. Checked, so that a reader that ever handed
                // back a copy names the chunk instead of slicing wrong.
                let at = (data.as_ptr() as usize).checked_sub(body.as_ptr() as usize);
                match at.filter(|at| at + data.len() <= body.len()) {
                    Some(at) => (header, at..at + data.len()),
                    None => {
                        self.skip(damaged("its records could not be located".into(), None));
                        return Ok(());
                    }
                }
            }
            Ok(_) => return Ok(()),
            Err(e) => {
                self.skip(damaged(format!("its header does not parse ({e})"), None));
                return Ok(());
            }
        };
        if !header.compression.is_empty() {
            return Err(mcap::McapError::UnsupportedCompression(header.compression));
        }
        let data = &body[data_at.clone()];
        let claimed = messages_claimed(data);
        if header.uncompressed_size != data.len() as u64 {
            self.skip(damaged(
                format!(
                    "its header says {} of records, it holds {}",
                    count(header.uncompressed_size, "byte"),
                    data.len()
                ),
                claimed,
            ));
            return Ok(());
        }
        if header.uncompressed_crc != 0 {
            let calculated = crc32(data);
            if calculated != header.uncompressed_crc {
                self.skip(damaged(
                    format!(
                        "its CRC fails (saved {:08X}, computed {calculated:08X})",
                        header.uncompressed_crc
                    ),
                    claimed,
                ));
                return Ok(());
            }
        }
        let mut body = body;
        body.truncate(data_at.end);
        self.chunk = body;
        self.chunk_at = data_at.start;
        self.chunk_record = (offset, size);
        self.chunk_given = 0;
        Ok(())
    }

    fn next_inner(&mut self) -> mcap::McapResult<Option<mcap::Message<'static>>> {
        use std::io::Read;
        loop {
            if let Some(m) = self.next_in_chunk() {
                return Ok(Some(m));
            }
            let offset = self.pos;
            self.record_at = offset;
            let mut head = [0u8; 9];
            let mut got = 0;
            while got < head.len() {
                match self.source.read(&mut head[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if got == 0 {
                // The end, at a record boundary.
                return Ok(None);
            }
            if got < head.len() {
                return Err(mcap::McapError::UnexpectedEof);
            }
            let opcode = head[0];
            let len = u64::from_le_bytes(head[1..].try_into().unwrap_or([0; 8]));
            if matches!(opcode, op::DATA_END | op::FOOTER) {
                // The summary after it repeats what was read.
                self.data_end = true;
                return Ok(None);
            }
            if len > RECORD_LENGTH_LIMIT {
                return Err(mcap::McapError::RecordTooLarge { opcode, len });
            }
            self.pos = offset + 9 + len;
            match opcode {
                op::CHUNK => {
                    let body = self.body(len)?;
                    self.load_chunk(offset, body)?;
                }
                op::SCHEMA | op::CHANNEL | op::MESSAGE => {
                    let body = self.body(len)?;
                    match self.record(opcode, &body) {
                        Ok(Some(m)) => return Ok(Some(m)),
                        Ok(None) => {}
                        Err(why) => self.skip(Skipped {
                            offset,
                            size: 9 + len,
                            kind: "record",
                            messages: Some(u64::from(opcode == op::MESSAGE)),
                            read_before: 0,
                            why,
                        }),
                    }
                }
                _ => {
                    // Indexes, attachments, metadata: not needed here.
                    let n = std::io::copy(&mut (&mut self.source).take(len), &mut std::io::sink())?;
                    if n < len {
                        return Err(mcap::McapError::UnexpectedEof);
                    }
                }
            }
        }
    }
}

/// The schemas and channels a finished file's summary section repeats,
/// added to `channels` (what a skipped chunk defined). Reads the footer at
/// the end, then the summary's records one at a time; anything that does
/// not parse ends it quietly (the messages stay "of unknown channels").
fn read_summary_channels(
    path: &std::path::Path,
    channels: &mut mcap::read::ChannelAccumulator<'static>,
) {
    use std::io::{Read, Seek, SeekFrom};
    let tail_len = 9 + 20 + mcap::MAGIC.len() as u64;
    let Ok(mut f) = std::fs::File::open(path) else {
        return;
    };
    let Ok(len) = f.metadata().map(|m| m.len()) else {
        return;
    };
    if len < mcap::MAGIC.len() as u64 + tail_len {
        return;
    }
    let footer_at = len - tail_len;
    let mut tail = [0u8; 37];
    if f.seek(SeekFrom::Start(footer_at)).is_err() || f.read_exact(&mut tail).is_err() {
        return;
    }
    if tail[0] != op::FOOTER || tail[1..9] != 20u64.to_le_bytes() || tail[29..] != mcap::MAGIC[..] {
        return;
    }
    let start = u64::from_le_bytes(tail[9..17].try_into().unwrap_or([0; 8]));
    if start == 0 || start >= footer_at || f.seek(SeekFrom::Start(start)).is_err() {
        return;
    }
    let mut r = std::io::BufReader::new(f);
    let mut at = start;
    while at + 9 <= footer_at {
        let mut head = [0u8; 9];
        if r.read_exact(&mut head).is_err() {
            return;
        }
        let len = u64::from_le_bytes(head[1..].try_into().unwrap_or([0; 8]));
        if len > RECORD_LENGTH_LIMIT || at + 9 + len > footer_at {
            return;
        }
        at += 9 + len;
        if matches!(head[0], op::SCHEMA | op::CHANNEL) {
            let mut body = Vec::new();
            if (&mut r).take(len).read_to_end(&mut body).ok() != Some(len as usize) {
                return;
            }
            match mcap::parse_record(head[0], &body) {
                Ok(mcap::records::Record::Schema { header, data }) => {
                    let _ = channels.add_schema_from_slice(header, &data);
                }
                Ok(mcap::records::Record::Channel(c)) => {
                    let _ = channels.add_channel(c);
                }
                _ => return,
            }
        } else if r.seek_relative(len as i64).is_err() {
            return;
        }
    }
}

impl Iterator for Messages {
    type Item = mcap::McapResult<mcap::Message<'static>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_inner() {
            Ok(Some(m)) => Some(Ok(m)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
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
/// [`finished_after`] says at the end whether the file was finished (and
/// how many bytes it had: a pipe's size is not known before).
pub fn open_messages(path: &std::path::Path) -> Result<Messages, crate::Exit> {
    use std::io::Read;
    let shown = path.display();
    let mut file = std::fs::File::open(path).map_err(|e| {
        let msg = if e.kind() == std::io::ErrorKind::PermissionDenied {
            let why = shmbus_toolbox::files::permission_denied("shmbus", path);
            format!("cannot open {shown}: {why}")
        } else {
            format!("cannot open {shown}: {e}")
        };
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
    // A regular file can be read again for its summary (the channels a
    // damaged chunk defined); a pipe cannot.
    let again = std::fs::metadata(path)
        .is_ok_and(|m| m.is_file())
        .then(|| path.to_path_buf());
    let mut source = std::io::BufReader::with_capacity(256 * 1024, source);
    // The magic, checked above: the records start after it.
    let mut skip_magic = [0u8; 8];
    source
        .read_exact(&mut skip_magic)
        .map_err(|e| crate::Exit::error(format!("cannot read {shown}: {e}")))?;
    Ok(Messages {
        source,
        pos: mcap::MAGIC.len() as u64,
        record_at: mcap::MAGIC.len() as u64,
        data_end: false,
        channels: mcap::read::ChannelAccumulator::default(),
        chunk: Vec::new(),
        chunk_at: 0,
        chunk_record: (0, 0),
        chunk_given: 0,
        skips: Vec::new(),
        reported: 0,
        unknown: std::collections::BTreeMap::new(),
        again,
        summary_read: false,
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
        // A length field that is garbage: the next record cannot be
        // found, so the read ends here (a damaged record with a sane
        // length is skipped by the reader instead, [`Messages::next_skip`]).
        mcap::McapError::RecordTooLarge { opcode, len } => Err(crate::Exit::error(format!(
            "{} is damaged: a record (opcode 0x{opcode:02x}) says it is {len} bytes long, more than any recording holds, so the records after it cannot be found; the messages before it were read",
            path.display()
        ))),
        e => Err(crate::Exit::error(format!(
            "{} is damaged: {e}; messages before the damage were read",
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
