//! The test vectors of docs/LAYOUT.md §8 (`docs/layout-vectors.json`):
//! schema bytes with the tree they decode to, and one frame per type with
//! its JSON. The file is the spec; this test checks it two ways:
//! - every entry is re-derived from Rust (postcard's own encoding of the
//!   value, `schema_bytes::<T>()`), and the file must equal the result;
//! - every entry of the file is read back on its own terms (schema bytes ->
//!   tree and declaration, frame -> JSON -> frame).
//!
//! After a deliberate change, rewrite the file with
//! `SHMBUS_BLESS_VECTORS=1 cargo test -p shmbus-codec --test codec vectors`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use postcard_schema::Schema;
use postcard_schema::schema::owned::OwnedNamedType;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shmbus_codec::{Codec, text};

#[derive(Serialize, Deserialize, Schema)]
struct Unit;

#[derive(Serialize, Deserialize, Schema)]
struct Meters(f32);

#[derive(Serialize, Deserialize, Schema)]
struct Imu {
    t_us: u64,
    acc: [f32; 3],
    name: heapless::String<8>,
    ok: bool,
}

#[derive(Serialize, Deserialize, Schema)]
enum Mode {
    Idle,
    Fix(u8),
    Pair(i16, bool),
    Pos { lat: f32, lon: f32 },
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn frame<T: Schema + Serialize + DeserializeOwned>(what: &str, v: T) -> Value {
    let codec = Codec::of::<T>().unwrap();
    let schema = shmbus_core::schema::schema_bytes::<T>().unwrap();
    assert_eq!(codec.schema_bytes(), schema);
    let f = postcard::to_allocvec(&v).unwrap();
    let value: Value = serde_json::from_str(&codec.to_json(&f).unwrap()).unwrap();
    json!({
        "what": what,
        "declaration": codec.text(),
        "schema_hex": hex(&schema),
        "frame_hex": hex(&f),
        "json": value,
    })
}

fn schema<T: Schema + DeserializeOwned>() -> Value {
    let bytes = shmbus_core::schema::schema_bytes::<T>().unwrap();
    let t = shmbus_core::schema::decode_schema(&bytes).unwrap();
    json!({
        "declaration": text::render(&t),
        "schema_hex": hex(&bytes),
        "fingerprint": format!("{:016x}", shmbus_core::schema::fingerprint_of::<T>().unwrap()),
        "tree": serde_json::to_value(&t).unwrap(),
    })
}

fn vectors() -> Value {
    let frames = vec![
        frame("bool", true),
        frame("u8", 200u8),
        frame("i8 (two's complement)", -2i8),
        frame("u16 (varint)", 300u16),
        frame("i16 (zigzag varint)", -300i16),
        frame("u32", 70_000u32),
        frame("i32", -70_000i32),
        frame("u64 (10-byte varint)", u64::MAX),
        frame("i64", i64::MIN),
        frame("u128 beyond 64 bits (JSON string)", 1u128 << 100),
        frame("i128", -1i128),
        frame("f32 (little-endian IEEE 754)", 9.81f32),
        frame("f32 NaN", f32::NAN),
        frame("f64", -0.5f64),
        frame("f64 -inf", f64::NEG_INFINITY),
        frame("char (length + UTF-8)", 'é'),
        frame("String", String::from("hi")),
        frame(
            "heapless::String with capacity",
            heapless::String::<4>::from("abcd"),
        ),
        frame("Option None", None::<u8>),
        frame("Option Some", Some(5u8)),
        frame("Option<Option> Some(None)", Some(None::<u8>)),
        frame("unit (no bytes)", ()),
        frame("unit struct (no bytes)", Unit),
        frame("newtype struct", Meters(2.5)),
        frame("Vec (count + elements)", vec![1u16, 300]),
        frame(
            "heapless::Vec with capacity",
            heapless::Vec::<u8, 3>::from_slice(&[7]).unwrap(),
        ),
        frame("[T; N] (no count)", [-1i8, 1]),
        frame("tuple", (1u8, true)),
        frame(
            "map (count + key, value pairs)",
            BTreeMap::from([(1u8, String::from("a")), (2, String::from("b"))]),
        ),
        frame(
            "struct (fields in order, no names)",
            Imu {
                t_us: 1_000_000,
                acc: [0.0, 0.5, 9.81],
                name: "imu0".into(),
                ok: true,
            },
        ),
        frame("enum unit variant (varint index)", Mode::Idle),
        frame("enum newtype variant", Mode::Fix(3)),
        frame("enum tuple variant", Mode::Pair(-1, true)),
        frame(
            "enum struct variant",
            Mode::Pos {
                lat: 52.5,
                lon: 13.25,
            },
        ),
    ];
    json!({
        "about": "Test vectors of docs/LAYOUT.md section 8: schema bytes (postcard of postcard-schema 0.2's OwnedNamedType) with the tree they decode to (serde's JSON of OwnedNamedType) and the declaration text (docs/JSON.md section 4); frames (postcard 1.x) with their JSON (docs/JSON.md). Hex is lowercase, no separators. Checked by crates/shmbus-codec/tests/codec/vectors.rs.",
        "schemas": [schema::<Imu>(), schema::<Mode>(), schema::<Option<[u8; 2]>>()],
        "frames": frames,
    })
}

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/layout-vectors.json")
}

#[test]
fn the_vectors_file_is_what_the_code_does() {
    let want = vectors();
    let text = serde_json::to_string_pretty(&want).unwrap() + "\n";
    if std::env::var_os("SHMBUS_BLESS_VECTORS").is_some() {
        std::fs::write(path(), &text).unwrap();
    }
    let file = std::fs::read_to_string(path()).expect("docs/layout-vectors.json");
    assert!(
        file == text,
        "docs/layout-vectors.json differs from what the code does; if the change is deliberate, \
         rewrite it: SHMBUS_BLESS_VECTORS=1 cargo test -p shmbus-codec --test codec vectors"
    );
}

#[test]
fn the_vectors_file_reads_back_on_its_own_terms() {
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    for s in file["schemas"].as_array().unwrap() {
        let bytes = unhex(s["schema_hex"].as_str().unwrap());
        let t = shmbus_core::schema::decode_schema(&bytes).unwrap();
        let tree: OwnedNamedType = serde_json::from_value(s["tree"].clone()).unwrap();
        assert_eq!(t, tree);
        assert_eq!(text::parse(s["declaration"].as_str().unwrap()).unwrap(), t);
        assert_eq!(
            format!("{:016x}", shmbus_core::layout::fnv1a64(&bytes)),
            s["fingerprint"].as_str().unwrap()
        );
    }
    let frames = file["frames"].as_array().unwrap();
    assert!(frames.len() >= 30);
    for f in frames {
        let codec = Codec::from_schema_bytes(&unhex(f["schema_hex"].as_str().unwrap())).unwrap();
        assert_eq!(
            Codec::parse(f["declaration"].as_str().unwrap())
                .unwrap()
                .schema(),
            codec.schema()
        );
        let bytes = unhex(f["frame_hex"].as_str().unwrap());
        assert_eq!(codec.decode(&bytes).unwrap(), f["json"], "{}", f["what"]);
        assert_eq!(codec.encode(&f["json"]).unwrap(), bytes, "{}", f["what"]);
    }
}

/// The bytes of a worked example of docs/LAYOUT.md §8: the ```text block
/// after `marker`, each line's leading two-digit hex bytes and quoted
/// strings (a string is its length byte's content, written out), up to the
/// line's first other word (the comment). Also the length the prose before
/// the block claims (`is N bytes`), and that prose.
fn layout_example(marker: &str) -> (Vec<u8>, usize, String) {
    let doc_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/LAYOUT.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/LAYOUT.md");
    let at = doc
        .find(marker)
        .unwrap_or_else(|| panic!("docs/LAYOUT.md no longer has {marker:?}"));
    let rest = &doc[at..];
    let open = rest
        .find("```text\n")
        .expect("a ```text block after the example");
    let prose = rest[..open]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let claimed = prose
        .split(" bytes")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the prose of {marker:?} says no `is N bytes`: {prose}"));
    let block = &rest[open + 8..];
    let block = &block[..block.find("```").unwrap()];
    let mut bytes = Vec::new();
    for line in block.lines() {
        let mut s = line.trim_start();
        while !s.is_empty() {
            if let Some(q) = s.strip_prefix('"') {
                let end = q.find('"').expect("a closed string");
                bytes.extend_from_slice(&q.as_bytes()[..end]);
                s = q[end + 1..].trim_start();
                continue;
            }
            let word = s.split_whitespace().next().unwrap();
            match (word.len(), u8::from_str_radix(word, 16)) {
                (2, Ok(b)) => bytes.push(b),
                _ => break,
            }
            s = s[word.len()..].trim_start();
        }
    }
    (bytes, claimed, prose)
}

/// docs/LAYOUT.md's worked examples of §8 (the `Imu` frame and the `Imu`
/// schema) are the vectors of the file, byte for byte, and the length
/// their prose gives is the length of those bytes. (The frame's prose said
/// 20 bytes for its 21.)
#[test]
fn layout_md_worked_examples_are_the_vectors_and_as_long_as_they_say() {
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    let imu = &file["schemas"][0];
    assert!(
        imu["declaration"]
            .as_str()
            .unwrap()
            .starts_with("struct Imu")
    );
    let frame = file["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["schema_hex"] == imu["schema_hex"])
        .expect("a frame vector of the Imu schema");

    let (bytes, claimed, prose) = layout_example("Example (vector \"struct\" of the file)");
    assert_eq!(hex(&bytes), frame["frame_hex"].as_str().unwrap());
    assert_eq!(
        claimed,
        bytes.len(),
        "docs/LAYOUT.md's frame example says {claimed} bytes for {}: {prose}",
        bytes.len()
    );
    let shown = prose
        .split("holding `")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .expect("the frame example's value");
    assert_eq!(serde_json::from_str::<Value>(shown).unwrap(), frame["json"]);

    let (bytes, claimed, prose) = layout_example("Example (first schema vector)");
    assert_eq!(hex(&bytes), imu["schema_hex"].as_str().unwrap());
    assert_eq!(
        claimed,
        bytes.len(),
        "docs/LAYOUT.md's schema example says {claimed} bytes for {}: {prose}",
        bytes.len()
    );
}
