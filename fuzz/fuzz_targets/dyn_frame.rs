//! Typeless decoding, as every tool does it: schema bytes from a segment
//! (`Codec::from_schema_bytes`), then a frame decoded to a value tree and
//! to JSON text (`shmbus echo`, the recorder's JSON channels, the bridges).
//! Input: 2-byte little-endian schema length, schema bytes, frame bytes.
//!
//! Checked: the tree and the text agree (same JSON, or the same error);
//! whatever decodes encodes again, and that frame decodes to the same value
//! and re-encodes to the same bytes; the JSON Schema and the text of the
//! schema can always be made.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shmbus_codec::Codec;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let rest = &data[2..];
    let (schema, frame) = rest.split_at(n.min(rest.len()));
    let Ok(c) = Codec::from_schema_bytes(schema) else {
        return;
    };
    let tree = c.decode(frame);
    let text = c.to_json(frame);
    match (&tree, &text) {
        (Ok(v), Ok(t)) => assert_eq!(&serde_json::to_string(v).unwrap(), t),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("tree {tree:?} and text {text:?} disagree"),
    }
    if let Ok(v) = &tree {
        let bytes = c.encode(v).expect("a decoded value encodes");
        let again = c.decode(&bytes).expect("a re-encoded frame decodes");
        assert_eq!(&again, v);
        assert_eq!(c.encode(&again).unwrap(), bytes);
    }
    let _ = c.json_schema();
    let _ = c.text();
});
