//! `cat` and `replay` reading hostile, corrupt or truncated recordings:
//! the reader's memory, measured by a counting global allocator in this
//! test binary (one test per process state, so no other test allocates
//! at the same time).

use std::sync::Mutex;

use shmbus_record::format::{self, End, TopicMeta, role};
use shmbus_testkit::{Check, CountingAlloc, Guard, unique_key, watchdog};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Every test takes this, so the allocations a test measures are its own, so their allocations are their own.
static MEASURING: Mutex<()> = Mutex::new(());

const MAGIC: &[u8] = b"\x89MCAP0\r\n";

fn record(op: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![op];
    r.extend_from_slice(&(body.len() as u64).to_le_bytes());
    r.extend_from_slice(body);
    r
}

/// The start of a recording: magic and an empty header record.
fn start() -> Vec<u8> {
    let mut f = MAGIC.to_vec();
    f.extend(record(0x01, &[0; 8]));
    f
}

/// A temp directory of its own, removed on drop, or by the testkit's
/// watchdog before it aborts.
struct TempDir(shmbus_testkit::TempDir);

impl TempDir {
    fn new(name: &str) -> TempDir {
        TempDir(shmbus_testkit::TempDir::new(&format!("hostile-{name}")))
    }
}

/// A length field that says 200 MiB in a file of a few dozen bytes (a
/// record, a chunk, a record inside a chunk): reading it allocates about
/// what the file holds, not what it claims, and ends as a file cut short.
/// Was: 200 MiB allocated (and zeroed) before the first byte of the record
/// was read, on a board a fraction of its RAM, for a 60-byte file.
#[test]
fn a_length_field_that_lies_costs_no_memory() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    const CLAIM: u64 = 200 * 1024 * 1024;
    let dir = TempDir::new("lies");
    // A schema record that says it is 200 MiB long.
    let mut lying_record = start();
    lying_record.push(0x03);
    lying_record.extend_from_slice(&CLAIM.to_le_bytes());
    lying_record.extend_from_slice(&[0; 20]);
    // A chunk that says it holds 200 MiB of records (with a CRC, so the
    // reader loads all of them to check it first).
    let chunk_header = |crc: u32| {
        let mut h = Vec::new();
        h.extend_from_slice(&0u64.to_le_bytes()); // start time
        h.extend_from_slice(&0u64.to_le_bytes()); // end time
        h.extend_from_slice(&CLAIM.to_le_bytes()); // uncompressed size
        h.extend_from_slice(&crc.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes()); // compression: none
        h.extend_from_slice(&CLAIM.to_le_bytes()); // compressed size
        h
    };
    let mut lying_chunk = start();
    lying_chunk.push(0x06);
    lying_chunk.extend_from_slice(&(CLAIM + 40).to_le_bytes());
    lying_chunk.extend(chunk_header(0x1234_5678));
    lying_chunk.extend_from_slice(&[0; 20]);
    // A chunk without a CRC, whose first record says 200 MiB.
    let mut lying_inner = start();
    lying_inner.push(0x06);
    lying_inner.extend_from_slice(&(CLAIM + 40).to_le_bytes());
    lying_inner.extend(chunk_header(0));
    lying_inner.push(0x05);
    lying_inner.extend_from_slice(&(CLAIM - 9).to_le_bytes());
    lying_inner.extend_from_slice(&[0; 20]);
    for (name, bytes) in [
        ("record", lying_record),
        ("chunk", lying_chunk),
        ("record-in-chunk", lying_inner),
    ] {
        let path = dir.0.path().join(format!("{name}.mcap"));
        std::fs::write(&path, &bytes).unwrap();
        let ((messages, end), peak) = CountingAlloc::peak_during(|| {
            let mut messages = 0;
            let mut end = End::Complete;
            for m in format::open_messages(&path).unwrap() {
                match m {
                    Ok(_) => messages += 1,
                    Err(e) => {
                        end = format::classify(&path, e).unwrap();
                        break;
                    }
                }
            }
            (messages, end)
        });
        assert_eq!(messages, 0, "{name}");
        assert_eq!(end, End::CutShort, "{name}");
        assert!(
            peak < 4 * 1024 * 1024,
            "{name}: a {}-byte file claiming {CLAIM} bytes made the reader allocate {peak} bytes",
            bytes.len()
        );
    }
}

/// A recording written with the `mcap` crate: one lossless channel of
/// [`Check`] frames for the topic at `key`, whose metadata says frames are
/// at most `capacity` bytes, holding `frames` in order.
fn recording(path: &std::path::Path, name: &str, key: i32, capacity: usize, frames: &[Vec<u8>]) {
    recording_in_chunks(path, name, key, capacity, frames, None);
}

/// [`recording`], its chunks cut at `chunk_size` bytes (`Some(1)`: one
/// frame per chunk).
fn recording_in_chunks(
    path: &std::path::Path,
    name: &str,
    key: i32,
    capacity: usize,
    frames: &[Vec<u8>],
    chunk_size: Option<u64>,
) {
    let schema = shmbus_core::schema::schema_bytes::<Check>().unwrap();
    let meta = TopicMeta {
        name: name.into(),
        key,
        slots: 8,
        frame_capacity: capacity,
        notify: false,
    };
    let mut metadata = meta.to_metadata(role::LOSSLESS, shmbus_core::layout::fnv1a64(&schema));
    metadata.insert(format::key::PUBLISH_TIME.into(), format::MONOTONIC.into());
    let mut options = mcap::WriteOptions::new().compression(None);
    if let Some(size) = chunk_size {
        options = options.chunk_size(Some(size));
    }
    let mut w = options
        .create(std::io::BufWriter::new(
            std::fs::File::create(path).unwrap(),
        ))
        .unwrap();
    let schema_id = w
        .add_schema("Check", format::SCHEMA_POSTCARD, &schema)
        .unwrap();
    let channel = w
        .add_channel(
            schema_id,
            &format!("{name}{}", format::LOSSLESS_SUFFIX),
            format::MESSAGE_POSTCARD,
            &metadata,
        )
        .unwrap();
    for (i, f) in frames.iter().enumerate() {
        let header = mcap::records::MessageHeader {
            channel_id: channel,
            sequence: i as u32 + 1,
            log_time: 1_000 + i as u64,
            publish_time: 1_000 + i as u64,
        };
        w.write_to_known_channel(&header, f).unwrap();
    }
    w.finish().unwrap();
}

/// Run the `shmbus-record` binary (behind `SHMBUS_TEST_RUNNER`):
/// (exit code, stderr).
/// A test's own directory, key (its segment removed when the guard
/// drops) and topic name `test/<label>-<key>`.
struct Case {
    dir: TempDir,
    key: i32,
    name: String,
    _guard: Guard,
}

fn case(label: &str) -> Case {
    let key = unique_key(label);
    Case {
        dir: TempDir::new(label),
        key,
        name: format!("test/{label}-{:08x}", key as u32),
        _guard: Guard(key),
    }
}

/// `n` frames of [`Check`], generations 1 to `n`, encoded.
fn check_frames(n: u64) -> Vec<Vec<u8>> {
    (1..=n)
        .map(|g| postcard::to_stdvec(&Check::new(g)).unwrap())
        .collect()
}

fn run(args: &[&str]) -> (i32, String) {
    let mut cmd = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus-record"));
    cmd.args(args).stdin(std::process::Stdio::null());
    shmbus_testkit::dies_with_parent(&mut cmd);
    let out = cmd.output().expect("run shmbus-record");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A frame longer than the frame capacity its own channel records (a
/// damaged or forged file): `replay` says the file is damaged and how many
/// frames it replayed before. Was: "the topic at key ... has another
/// shape, remove it with `shmbus rm` first", about the segment replay had
/// itself just created with the recorded shape.
#[test]
fn replay_of_a_frame_over_its_channels_capacity_blames_the_file() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    watchdog("frame over capacity", std::time::Duration::from_secs(120));
    let Case {
        dir,
        key,
        name,
        _guard,
    } = case("over-capacity");
    let good = postcard::to_stdvec(&Check::new(1)).unwrap();
    let mut long = postcard::to_stdvec(&Check::new(2)).unwrap();
    long.extend_from_slice(&[0; 60]);
    let path = dir.0.path().join("over.mcap");
    recording(
        &path,
        &name,
        key,
        good.len(),
        &[good.clone(), long.clone(), good],
    );
    let (code, err) = run(&["replay", "--rate", "0", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("over.mcap is damaged")
            && err.contains(&format!("is {} bytes", long.len()))
            && err.contains("1 frame before it was replayed"),
        "{err}"
    );
    assert!(
        !err.contains("shmbus rm") && !err.contains("another shape"),
        "{err}"
    );
}

/// `--topics` naming a topic the recording has no frames of (a typo)
/// beside one it has: that one is replayed and the other is named, as
/// `--key` of a missing topic is. Was: left out without a word, exit 0,
/// "replayed 3 frames of 1 topic" read as if both had been replayed.
#[test]
fn replay_names_a_topic_of_topics_the_recording_has_no_frames_of() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    watchdog("topics typo", std::time::Duration::from_secs(120));
    let Case {
        dir,
        key,
        name,
        _guard,
    } = case("topics-typo");
    let frames = check_frames(3);
    let capacity = frames.iter().map(Vec::len).max().unwrap();
    let path = dir.0.path().join("typo.mcap");
    recording(&path, &name, key, capacity, &frames);
    let path = path.to_str().unwrap();
    let topics = format!("{name},{name}x,{name}x");
    let (code, err) = run(&["replay", "--rate", "0", "--topics", &topics, path]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("replayed 3 frames of 1 topic"), "{err}");
    let warning = format!("--topics: {path} holds no frames of topic '{name}x'");
    assert_eq!(err.matches(&warning).count(), 1, "once: {err}");
    assert!(
        !err.contains(&format!("topic '{name}';")),
        "the topic it holds is not named: {err}"
    );
}

/// Replay to a key that holds the topic with another type (a recording
/// older than the board's software), or another topic: refused, and the
/// error gives the fix that leaves that segment alone, `--key`, beside
/// the one that removes it. Was: only "remove it with `shmbus rm`", which
/// takes the topic from its subscribers.
#[test]
fn replay_to_a_key_that_holds_something_else_offers_another_key() {
    #[derive(
        serde::Serialize,
        serde::Deserialize,
        postcard_schema::Schema,
        postcard::experimental::max_size::MaxSize,
    )]
    struct Other {
        a: u32,
    }
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    watchdog("occupied key", std::time::Duration::from_secs(120));
    let Case {
        dir,
        key,
        name,
        _guard,
    } = case("occupied");
    let frames = check_frames(3);
    let capacity = frames.iter().map(Vec::len).max().unwrap();
    let path = dir.0.path().join("occupied.mcap");
    recording(&path, &name, key, capacity, &frames);
    let path = path.to_str().unwrap();
    for other in [name.clone(), format!("{name}-other")] {
        let topic = shmbus_pub::Topic::new(&other).key(key).slots(8);
        drop(shmbus_pub::Publisher::<Other>::open(&topic).unwrap());
        let (code, err) = run(&["replay", "--rate", "0", path]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(&format!(
                "; or leave it as it is and replay to another key with --key {name}=KEY"
            )),
            "{err}"
        );
        let id = shmbus_core::sys::shmget(key, 0, 0).expect("the segment is left as it was");
        assert_eq!(
            shmbus_core::Segment::attach_shmid(id, key)
                .unwrap()
                .info()
                .name,
            other
        );
        shmbus_testkit::remove_key(key);
    }
}

/// A [`Check`] as postcard bytes, its tag 12 bytes long: more than the
/// `heapless::String<8>` its schema declares, so neither the codec nor a
/// typed subscriber decodes it.
fn over_capacity_check(seq: u64) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Wide {
        seq: u64,
        words: [u64; 7],
        tag: heapless::String<16>,
    }
    let c = Check::new(seq);
    let mut tag = heapless::String::new();
    tag.push_str("twelve-bytes").unwrap();
    postcard::to_stdvec(&Wide {
        seq,
        words: c.words,
        tag,
    })
    .unwrap()
}

/// Frames that do not decode with their channel's schema (a damaged or
/// forged file) are left out of the replay, each named (frame, topic,
/// channel) and counted at the end; the others are published, and a
/// typed subscriber reads every frame in the topic. A file of nothing
/// but such frames replays nothing, exit 2. Was: published as they were
/// ("replayed 3 frames"), and the subscriber failed on the second.
#[test]
fn replay_leaves_out_frames_that_do_not_match_their_schema() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    watchdog("schema mismatch", std::time::Duration::from_secs(120));
    let Case {
        dir,
        key,
        name,
        _guard,
    } = case("mismatch");
    let good = |g| postcard::to_stdvec(&Check::new(g)).unwrap();
    let bad = over_capacity_check(2);
    let capacity = bad.len().max(good(1).len());
    let path = dir.0.path().join("mismatch.mcap");
    recording(&path, &name, key, capacity, &[good(1), bad, good(3)]);
    let (code, err) = run(&["replay", "--rate", "0", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "frame 2 of '{name}' (channel 1, log time 1001) does not match its channel's schema"
        )) && err.contains("replayed 2 frames of 1 topic")
            && err.contains(&format!(
                "not replayed: 1 frame of '{name}' (channel 1) does not match its channel's schema"
            )),
        "{err}"
    );
    let topic = shmbus_core::Topic::new(&name).key(key);
    let mut sub = shmbus_sub::Subscriber::<Check>::attach(&topic).unwrap();
    sub.raw().seek_oldest();
    let mut seen = Vec::new();
    while let shmbus_sub::Next::Frame(s) = sub.next().unwrap() {
        seen.push(s.value.seq);
    }
    assert_eq!(seen, [1, 3]);

    let only_bad = dir.0.path().join("only-bad.mcap");
    recording(
        &only_bad,
        &name,
        key,
        capacity,
        &[over_capacity_check(1), over_capacity_check(2)],
    );
    let (code, err) = run(&["replay", "--rate", "0", only_bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "nothing replayed: 2 frames of '{name}' (channel 1) do not match its channel's schema"
        )),
        "{err}"
    );
}

/// A topic name of 5,000 bytes in a file's metadata: replay's refusal
/// quotes it cut, as every shmbus message quotes a long string (its
/// first 40 characters and its length), once. Was: echoed whole, twice
/// (5,153 bytes of stderr).
#[test]
fn replay_quotes_a_long_topic_name_cut_and_once() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    watchdog("long name", std::time::Duration::from_secs(120));
    let dir = TempDir::new("long-name");
    let key = unique_key("long-name");
    let _guard = Guard(key);
    let name = "n".repeat(5000);
    let frame = postcard::to_stdvec(&Check::new(1)).unwrap();
    let path = dir.0.path().join("long.mcap");
    recording(&path, &name, key, frame.len(), &[frame]);
    let (code, err) = run(&["replay", "--rate", "0", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.len() < 1000, "{} bytes of stderr: {err}", err.len());
    assert!(err.matches("(5000 bytes)").count() >= 1, "{err}");
    assert!(!err.contains(&"n".repeat(100)), "{err}");
}

/// `bytes` (a recording) with every chunk marked as compressed with
/// `how`, as `mcap compress` (zstd) or another writer (lz4) leaves it:
/// the chunk's compression string set, its records left as they are (a
/// reader without that decompressor stops at the string).
fn marked_compressed(bytes: &[u8], how: &str) -> Vec<u8> {
    let mut out = bytes[..MAGIC.len()].to_vec();
    let mut at = MAGIC.len();
    while at + 9 <= bytes.len() {
        let op = bytes[at];
        let len = u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap()) as usize;
        let body = &bytes[at + 9..at + 9 + len];
        if op == 0x06 {
            // start, end, uncompressed size, CRC (28 bytes), then the
            // compression string (u32 length + bytes): empty here.
            assert_eq!(&body[28..32], &[0; 4], "an uncompressed chunk");
            let mut b = body[..28].to_vec();
            b.extend_from_slice(&(how.len() as u32).to_le_bytes());
            b.extend_from_slice(how.as_bytes());
            b.extend_from_slice(&body[32..]);
            out.extend(record(0x06, &b));
        } else {
            out.extend_from_slice(&bytes[at..at + 9 + len]);
        }
        at += 9 + len;
    }
    out.extend_from_slice(&bytes[at..]);
    out
}

/// A recording whose chunks another tool compressed (`mcap compress`,
/// which docs/RECORDING.md suggests for shrinking a file on a laptop,
/// writes zstd; other writers lz4). shmbus reads uncompressed chunks
/// only: `cat`, `cat --json` and `replay` say so, with `mcap decompress`
/// as the fix. Was: `FILE is damaged: Unsupported compression format
/// `zstd`; ... (recover the rest with `mcap recover`)`, which blames an
/// intact file and names a fix that does not help.
#[test]
fn a_recording_with_compressed_chunks_is_named_as_such_not_damaged() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    watchdog("compressed chunks", std::time::Duration::from_secs(120));
    let Case {
        dir,
        key,
        name,
        _guard,
    } = case("compressed");
    let frames = check_frames(3);
    let plain = dir.0.path().join("plain.mcap");
    recording(&plain, &name, key, frames[0].len(), &frames);
    let bytes = std::fs::read(&plain).unwrap();
    for how in ["zstd", "lz4"] {
        let path = dir.0.path().join(format!("{how}.mcap"));
        std::fs::write(&path, marked_compressed(&bytes, how)).unwrap();
        let p = path.to_str().unwrap();
        for args in [
            vec!["cat", p],
            vec!["cat", "--json", p],
            vec!["replay", "--rate", "0", p],
        ] {
            let (code, err) = run(&args);
            assert_eq!(code, 2, "{args:?}: {err}");
            assert!(
                err.contains(&format!("{p} holds chunks compressed with '{how}'"))
                    && err.contains(&format!("mcap decompress {p}")),
                "{args:?}: {err}"
            );
            assert!(
                !err.contains("damaged") && !err.contains("mcap recover"),
                "{args:?}: {err}"
            );
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        }
    }
    // Nothing was published from the compressed files; the plain file
    // still replays all three frames (the test reads what it made).
    let (code, err) = run(&["replay", "--rate", "0", plain.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("replayed 3 frames of 1 topic"), "{err}");
}

/// `cat` and `cat --json` whose standard output cannot be written (a full
/// disk under `> frames.jsonl`; here `/dev/full`) fail, exit 2, with one
/// line saying so, as every other shmbus command does; a reader that went
/// away (`| head`) is still no error. Was: exit 0 and not a word, an empty
/// or partial output passed on as whole.
#[test]
fn cat_says_when_its_output_cannot_be_written() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    watchdog("cat output", std::time::Duration::from_secs(120));
    let dir = TempDir::new("cat-output");
    let frames = check_frames(3);
    let path = dir.0.path().join("three.mcap");
    recording(
        &path,
        "test/cat-output",
        0x7e00_0c01,
        frames[0].len(),
        &frames,
    );
    let p = path.to_str().unwrap();
    let cat = |args: &[&str], stdout: std::process::Stdio| {
        let mut cmd = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus-record"));
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(std::process::Stdio::piped());
        shmbus_testkit::dies_with_parent(&mut cmd);
        cmd.spawn().expect("run shmbus-record")
    };
    for args in [vec!["cat", p], vec!["cat", "--json", p]] {
        let full = std::fs::File::create("/dev/full").unwrap();
        let out = cat(&args, full.into()).wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("cannot write the output: No space left on device")
                && err.contains("the output is incomplete"),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        // A reader that closed the pipe before reading: quiet, exit 0.
        let mut child = cat(&args, std::process::Stdio::piped());
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

/// A recording damaged part way (a bit flipped in the chunk of its third
/// frame, whose CRC then fails): `cat` still shows what it read before the damage
/// (channels, counts, time range, marked DAMAGED), then names the damage;
/// `replay` says how many frames it replayed before it. Was: `cat` printed
/// only the error (`... messages before the damage were read`) and none of
/// them, and `replay` did not say how far it got.
#[test]
fn a_file_damaged_part_way_shows_and_replays_what_comes_before_the_damage() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    watchdog("damaged part way", std::time::Duration::from_secs(120));
    let Case {
        dir,
        key,
        name,
        _guard,
    } = case("damaged-part-way");
    let frames = check_frames(5);
    let path = dir.0.path().join("flipped.mcap");
    recording_in_chunks(&path, &name, key, frames[0].len(), &frames, Some(1));
    let mut bytes = std::fs::read(&path).unwrap();
    // The chunk that holds frame 3: flip a bit in its last byte (the
    // frame's data), so its CRC fails. Frames 1 and 2 are before it.
    let mut at = MAGIC.len();
    let mut messages = 0;
    loop {
        let op = bytes[at];
        let len = u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap()) as usize;
        if op == 0x06 {
            let body = &bytes[at + 9..at + 9 + len];
            let compression = u32::from_le_bytes(body[28..32].try_into().unwrap()) as usize;
            let mut inner = 32 + compression + 8;
            while inner < body.len() {
                let inner_len =
                    u64::from_le_bytes(body[inner + 1..inner + 9].try_into().unwrap()) as usize;
                messages += usize::from(body[inner] == 0x05);
                inner += 9 + inner_len;
            }
            if messages >= 3 {
                assert_eq!(messages, 3, "one frame per chunk");
                bytes[at + 9 + len - 1] ^= 0x10;
                break;
            }
        }
        at += 9 + len;
    }
    std::fs::write(&path, &bytes).unwrap();
    let p = path.to_str().unwrap();

    // Since the twelfth pass the damaged chunk is skipped, named, and
    // the frames after it are read too (was: the read ended there).
    let out = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus-record"))
        .args(["cat", p])
        .output()
        .unwrap();
    let (stdout, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{p} is damaged: skipped the chunk at byte"))
            && err.contains("its CRC fails"),
        "{err}"
    );
    assert!(
        stdout.contains("DAMAGED: 1 damaged record skipped") && stdout.contains("messages: 4"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{name}: key 0x{:08x}", key as u32)),
        "{stdout}"
    );

    let out = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus-record"))
        .args(["cat", "--json", p])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);

    let (code, err) = run(&["replay", "--rate", "0", p]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is damaged: 1 damaged record skipped")
            && err.contains("; 4 frames were replayed"),
        "{err}"
    );
    let topic = shmbus_core::Topic::new(&name).key(key);
    let mut sub = shmbus_sub::Subscriber::<Check>::attach(&topic).unwrap();
    assert_eq!(sub.raw().generation(), 4);
}

/// A recording of two topics, each a lossless channel of [`Check`] frames
/// with the shape given (name, key, frame capacity, notify; 8 slots):
/// `frames` are (topic 0 or 1, generation), in file order, 1 ms apart.
fn two_topic_recording(
    path: &std::path::Path,
    topics: [(&str, i32, usize, bool); 2],
    frames: &[(usize, u64)],
) {
    let schema = shmbus_core::schema::schema_bytes::<Check>().unwrap();
    let mut w = mcap::WriteOptions::new()
        .compression(None)
        .create(std::io::BufWriter::new(
            std::fs::File::create(path).unwrap(),
        ))
        .unwrap();
    let schema_id = w
        .add_schema("Check", format::SCHEMA_POSTCARD, &schema)
        .unwrap();
    let channels: Vec<u16> = topics
        .iter()
        .map(|&(name, key, capacity, notify)| {
            let meta = TopicMeta {
                name: name.into(),
                key,
                slots: 8,
                frame_capacity: capacity,
                notify,
            };
            let mut metadata =
                meta.to_metadata(role::LOSSLESS, shmbus_core::layout::fnv1a64(&schema));
            metadata.insert(format::key::PUBLISH_TIME.into(), format::MONOTONIC.into());
            w.add_channel(
                schema_id,
                &format!("{name}{}", format::LOSSLESS_SUFFIX),
                format::MESSAGE_POSTCARD,
                &metadata,
            )
            .unwrap()
        })
        .collect();
    for (i, &(t, g)) in frames.iter().enumerate() {
        let header = mcap::records::MessageHeader {
            channel_id: channels[t],
            sequence: g as u32,
            log_time: 1_000_000 * (i as u64 + 1),
            publish_time: 1_000_000 * (i as u64 + 1),
        };
        w.write_to_known_channel(&header, &postcard::to_stdvec(&Check::new(g)).unwrap())
            .unwrap();
    }
    w.finish().unwrap();
}

/// A topic whose first frame comes late in the file (it appeared while
/// recording) and whose publisher is alive now: replay refuses before it
/// publishes anything. Was: the other topic was replayed up to that
/// frame (here 3 frames; in a real file, minutes of it), then replay
/// stopped with "has a live publisher", a partial replay left behind.
#[test]
fn replay_refuses_a_live_publisher_before_publishing_anything() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    watchdog("live publisher late", std::time::Duration::from_secs(120));
    let dir = TempDir::new("live-late");
    let (ka, kb) = (unique_key("live-late-a"), unique_key("live-late-b"));
    let (_ga, _gb) = (Guard(ka), Guard(kb));
    let (a, b) = (
        format!("test/live-a-{:08x}", ka as u32),
        format!("test/live-b-{:08x}", kb as u32),
    );
    // B's live publisher, with the shape B was recorded with.
    let live = shmbus_pub::Publisher::<Check>::open(&shmbus_core::Topic::new(&b).key(kb).slots(8))
        .unwrap();
    let (capacity, notify) = (
        live.raw().frame_capacity(),
        shmbus_core::Topic::new(&b).notify,
    );
    let path = dir.0.path().join("late.mcap");
    two_topic_recording(
        &path,
        [(&a, ka, capacity, notify), (&b, kb, capacity, notify)],
        &[(0, 1), (0, 2), (0, 3), (1, 1), (0, 4)],
    );
    let (code, err) = run(&["replay", "--rate", "0", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "topic '{b}' (key 0x{:08x}) has a live publisher",
            kb as u32
        )) && err.contains("nothing was replayed"),
        "{err}"
    );
    // Not a frame of A was published.
    let published = shmbus_sub::Subscriber::<Check>::attach(&shmbus_core::Topic::new(&a).key(ka))
        .map(|mut s| s.raw().generation())
        .unwrap_or(0);
    assert_eq!(published, 0, "{err}");
    drop(live);
}

/// Ctrl-C while replay reads the file through once (its first pass, which
/// checks the topics' shapes before anything is published: on a board's
/// SD card, seconds to minutes for a large recording) ends it there, and
/// says so. Was: ignored until the pass ended, then `FILE holds no shmbus
/// frames to replay` (exit 1). The replay is held in that pass (traced,
/// at the first system call after it has read past the file's magic; no
/// topic created yet), then given SIGINT.
#[test]
fn ctrl_c_during_replays_first_pass_stops_it_and_says_so() {
    use nix::sys::signal::Signal;
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    watchdog("ctrl-c first pass", std::time::Duration::from_secs(300));
    let Case {
        dir,
        key,
        name,
        _guard,
    } = case("first-pass");
    let frames = check_frames(200_000);
    let path = dir.0.path().join("big.mcap");
    recording(&path, &name, key, frames[0].len(), &frames);
    drop(frames);
    let mut cmd = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus-record"));
    cmd.args(["replay", "--rate", "0", path.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    shmbus_testkit::dies_with_parent(&mut cmd);
    let mut child = shmbus_testkit::KillOnDrop(cmd.spawn().unwrap());
    let pid = child.0.id();
    // How far the process has read the recording, on any descriptor.
    let read_so_far = || -> u64 {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return 0;
        };
        fds.flatten()
            .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == path))
            .filter_map(|fd| {
                std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_str()?))
                    .ok()?
                    .lines()
                    .find_map(|l| l.strip_prefix("pos:"))?
                    .trim()
                    .parse()
                    .ok()
            })
            .max()
            .unwrap_or(0)
    };
    // Held at the first system call after which it has read more of the
    // file than its magic (8 bytes, read before the pass, which then reads
    // 256 KiB at a time): it is in its pass, however short the pass is and
    // however late this thread gets a CPU. (Was: SIGSTOP every millisecond until
    // one landed in the pass; on a loaded machine the pass could end
    // between two samples, and the test failed with the topic created.)
    let held = shmbus_testkit::Caught::at_syscall(pid, || read_so_far() > 8)
        .expect("replay never read the file");
    let no_topic = shmbus_core::sys::shmget(key, 0, 0).is_err();
    assert!(
        no_topic,
        "replay created the topic before the test caught its first pass ({})",
        held.how()
    );
    println!(
        "replay held in its first pass {}, {} bytes read",
        held.how(),
        read_so_far()
    );
    held.signal_and_go(Signal::SIGINT).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replay went on after Ctrl-C"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("stopped (Ctrl-C, SIGTERM or SIGHUP) before a frame of")
            && err.contains("nothing was replayed"),
        "{err}"
    );
    assert!(!err.contains("holds no shmbus frames"), "{err}");
}

/// A recording of a topic whose name an older shmbus took and no topic
/// can be created with now (an empty level: `a//b`). `replay` refuses it
/// before anything is published, says why in the replay's terms and what
/// still works (`cat`, `--topics`), and creates no segment. Was: the
/// publisher's own advice, "write 'a/b'", which a replay cannot do.
#[test]
fn replay_of_a_topic_named_before_the_level_rule_says_what_still_works() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    watchdog("old name", std::time::Duration::from_secs(120));
    for (i, name) in ["a//b", "/imu", "imu/..", "x/"].into_iter().enumerate() {
        let dir = TempDir::new(&format!("old-name-{i}"));
        let key = unique_key(&format!("old-name-{i}"));
        let _guard = Guard(key);
        let frame = postcard::to_stdvec(&Check::new(1)).unwrap();
        let path = dir.0.path().join("old.mcap");
        recording(&path, name, key, frame.len(), &[frame]);
        let (code, err) = run(&["replay", "--rate", "0", path.to_str().unwrap()]);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains(&format!("'{name}'")), "{name}: {err}");
        assert!(
            err.contains("shmbus cat") && err.contains("--topics"),
            "{name}: {err}"
        );
        assert!(err.contains("nothing was replayed"), "{name}: {err}");
        assert!(
            !err.contains("write '"),
            "{name}: advice a replay cannot follow: {err}"
        );
        assert!(
            shmbus_core::sysvipc::segment_by_key(key).is_none(),
            "{name}: replay created the topic's segment"
        );
    }
}

/// In a recording written one frame per chunk, flip a bit in the last
/// byte (frame data) of the chunk holding message `nth` (1-based), so
/// that its CRC fails. Returns the chunk's byte offset.
fn break_chunk_of(bytes: &mut [u8], nth: usize) -> usize {
    let mut at = MAGIC.len();
    let mut messages = 0;
    loop {
        let op = bytes[at];
        let len = u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap()) as usize;
        if op == 0x06 {
            let body = &bytes[at + 9..at + 9 + len];
            let compression = u32::from_le_bytes(body[28..32].try_into().unwrap()) as usize;
            let mut inner = 32 + compression + 8;
            while inner < body.len() {
                let inner_len =
                    u64::from_le_bytes(body[inner + 1..inner + 9].try_into().unwrap()) as usize;
                messages += usize::from(body[inner] == 0x05);
                inner += 9 + inner_len;
            }
            if messages >= nth {
                assert_eq!(messages, nth, "one frame per chunk");
                bytes[at + 9 + len - 1] ^= 0x10;
                return at;
            }
        }
        at += 9 + len;
    }
}

/// `shmbus-record ARGS` with `stdin` fed through a pipe (when given):
/// (exit code, stdout, stderr).
fn run_with_stdin(args: &[&str], stdin: Option<Vec<u8>>) -> (i32, String, String) {
    use std::io::Write;
    let mut cmd = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus-record"));
    cmd.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        });
    shmbus_testkit::dies_with_parent(&mut cmd);
    let mut child = cmd.spawn().expect("run shmbus-record");
    let feeder = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            // A reader that stops early closes the pipe: not an error here.
            let _ = pipe.write_all(&bytes);
        })
    });
    let out = child.wait_with_output().unwrap();
    if let Some(f) = feeder {
        f.join().unwrap();
    }
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The generations of the `--json` lines of `cat`, in order.
fn json_generations(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["generation"].as_u64().unwrap()
        })
        .collect()
}

/// Two chunks whose CRCs fail (frames 2 and 4 of 6): `cat`, `cat --json`
/// and `replay` name each once (offset, size, the message it claimed),
/// read every other frame, and exit 2 with what was skipped. Was: the
/// read ended at the first, so frames 3, 5 and 6 were lost.
#[test]
fn two_damaged_chunks_are_skipped_and_everything_else_is_read() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    watchdog("two damaged chunks", std::time::Duration::from_secs(120));
    let Case {
        dir,
        key,
        name,
        _guard,
    } = case("two-damaged");
    let frames = check_frames(6);
    let path = dir.0.path().join("two.mcap");
    recording_in_chunks(&path, &name, key, frames[0].len(), &frames, Some(1));
    let mut bytes = std::fs::read(&path).unwrap();
    let first = break_chunk_of(&mut bytes, 2);
    let second = break_chunk_of(&mut bytes, 4);
    std::fs::write(&path, &bytes).unwrap();
    let p = path.to_str().unwrap();

    let (code, stdout, err) = run_with_stdin(&["cat", "--json", p], None);
    assert_eq!(code, 2, "{err}");
    assert_eq!(json_generations(&stdout), [1, 3, 5, 6], "{stdout}\n{err}");
    for at in [first, second] {
        let said = format!("skipped the chunk at byte {at} (");
        assert_eq!(err.matches(&said).count(), 1, "{at}: {err}");
    }
    assert!(err.contains("1 message)"), "{err}");
    assert!(
        err.contains(&format!("{p} is damaged: 2 damaged records skipped ("))
            && err.contains("holding 2 messages)"),
        "{err}"
    );

    let (code, stdout, err) = run_with_stdin(&["cat", p], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        stdout.contains("messages: 4") && stdout.contains("DAMAGED: 2 damaged records skipped"),
        "{stdout}"
    );

    let (code, _, err) = run_with_stdin(&["replay", "--rate", "0", p], None);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.matches("skipped the chunk at byte").count(), 2, "{err}");
    assert!(err.contains("; 4 frames were replayed"), "{err}");
    let topic = shmbus_core::Topic::new(&name).key(key);
    let mut sub = shmbus_sub::Subscriber::<Check>::attach(&topic).unwrap();
    assert_eq!(sub.raw().generation(), 4);
}

/// A damaged middle chunk in a recording read from a pipe (`cat
/// /dev/stdin < rec.mcap | ...`, or a FIFO): read once, no seeking, the
/// frames after it all there, exit 2. Was: the read ended at it.
#[test]
fn a_damaged_chunk_read_from_a_pipe_is_skipped() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    watchdog(
        "damaged chunk in a pipe",
        std::time::Duration::from_secs(120),
    );
    let dir = TempDir::new("damaged-pipe");
    let frames = check_frames(5);
    let path = dir.0.path().join("piped.mcap");
    recording_in_chunks(
        &path,
        "test/piped",
        0x7e00_0001,
        frames[0].len(),
        &frames,
        Some(1),
    );
    let mut bytes = std::fs::read(&path).unwrap();
    let at = break_chunk_of(&mut bytes, 3);
    let (code, stdout, err) = run_with_stdin(&["cat", "--json", "/dev/stdin"], Some(bytes));
    assert_eq!(code, 2, "{err}");
    assert_eq!(json_generations(&stdout), [1, 2, 4, 5], "{stdout}\n{err}");
    assert_eq!(
        err.matches(&format!("skipped the chunk at byte {at} ("))
            .count(),
        1,
        "{err}"
    );
    // The pipe was read to its end: a finished file, not "cut short".
    assert!(!err.contains("cut short"), "{err}");
}

/// The damaged chunk is the one that defined the channel (and its
/// schema): in a finished file, whose summary repeats every channel, the
/// frames after it are still decoded and replayed; read from a pipe (no
/// second read), they are left out and counted by channel id, once. Was:
/// the read ended at the damaged chunk, everything after it lost.
#[test]
fn a_damaged_chunk_that_defined_the_channel_is_skipped() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    watchdog("damaged channel chunk", std::time::Duration::from_secs(120));
    let Case {
        dir,
        key,
        name,
        _guard,
    } = case("damaged-def");
    let frames = check_frames(5);
    let path = dir.0.path().join("def.mcap");
    recording_in_chunks(&path, &name, key, frames[0].len(), &frames, Some(1));
    let mut bytes = std::fs::read(&path).unwrap();
    // The writer puts the schema and channel records in a chunk of their
    // own, the first: flip the last byte of its channel record.
    let header_len =
        u64::from_le_bytes(bytes[MAGIC.len() + 1..MAGIC.len() + 9].try_into().unwrap());
    let at = MAGIC.len() + 9 + header_len as usize;
    assert_eq!(bytes[at], 0x06, "a chunk after the header");
    let len = u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap()) as usize;
    let channel_record = bytes
        .windows(b"#postcard".len())
        .position(|w| w == b"#postcard")
        .unwrap();
    assert!(
        channel_record > at && channel_record < at + 9 + len,
        "the channel is defined in the first chunk"
    );
    bytes[at + 9 + len - 1] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let p = path.to_str().unwrap();

    let (code, stdout, err) = run_with_stdin(&["cat", "--json", p], None);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        json_generations(&stdout),
        [1, 2, 3, 4, 5],
        "{stdout}\n{err}"
    );
    assert!(!err.contains("left out"), "{err}");
    assert_eq!(
        err.matches(&format!("skipped the chunk at byte {at} ("))
            .count(),
        1,
        "{err}"
    );

    let (code, _, err) = run_with_stdin(&["replay", "--rate", "0", p], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("; 5 frames were replayed"), "{err}");
    let topic = shmbus_core::Topic::new(&name).key(key);
    let mut sub = shmbus_sub::Subscriber::<Check>::attach(&topic).unwrap();
    assert_eq!(sub.raw().generation(), 5);

    let (code, stdout, err) = run_with_stdin(&["cat", "/dev/stdin"], Some(bytes));
    assert_eq!(code, 2, "{err}");
    assert!(stdout.contains("messages: 0"), "{stdout}");
    assert_eq!(
        err.matches("5 messages of channel 1 left out").count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("and 5 messages of channels they defined"),
        "{err}"
    );
}

/// A chunk whose length field is garbage (over the 256 MiB any record
/// may be): the next record cannot be found, so the read ends there,
/// the frames before it kept, named for what it is (exit 2). Was:
/// `record with opcode 06 length exceeds limit: ...; messages before the
/// damage were read (recover the rest with `mcap recover`)`.
#[test]
fn a_length_field_that_is_garbage_ends_the_read_named_as_such() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    watchdog("garbage length", std::time::Duration::from_secs(120));
    let dir = TempDir::new("garbage-length");
    let frames = check_frames(5);
    let path = dir.0.path().join("garbage.mcap");
    recording_in_chunks(
        &path,
        "test/garbage",
        0x7e00_0002,
        frames[0].len(),
        &frames,
        Some(1),
    );
    let mut bytes = std::fs::read(&path).unwrap();
    // Un-flip: only the length of the chunk of frame 3 is damaged.
    let at = break_chunk_of(&mut bytes, 3);
    let len = u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap()) as usize;
    bytes[at + 9 + len - 1] ^= 0x10;
    bytes[at + 8] = 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let p = path.to_str().unwrap();
    let (code, stdout, err) = run_with_stdin(&["cat", "--json", p], None);
    assert_eq!(code, 2, "{err}");
    assert_eq!(json_generations(&stdout), [1, 2], "{stdout}\n{err}");
    assert!(
        err.contains(&format!(
            "{p} is damaged: a record (opcode 0x06) says it is "
        )) && err.contains("so the records after it cannot be found")
            && !err.contains("mcap recover"),
        "{err}"
    );
}
