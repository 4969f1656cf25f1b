//! Typeless decoding, as the tools do it: schema bytes from a segment
//! (`decode_schema`), then a frame decoded against that schema by the CLI's
//! decoder (`shmbus echo`) and by the recorder's JSON writer
//! (`shmbus-record`). Input: 2-byte little-endian schema length, schema
//! bytes, frame bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shmbus_fuzz::cli_dynamic;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let rest = &data[2..];
    let (schema, frame) = rest.split_at(n.min(rest.len()));
    let Ok(t) = shmbus_core::schema::decode_schema(schema) else {
        return;
    };
    let cli = cli_dynamic::decode(&t, frame);
    let mut out = Vec::new();
    let rec = shmbus_record::json::frame_to_json(&t, frame, &mut out);
    if let Ok(v) = &cli {
        // What decodes re-encodes to the same frame.
        if let Ok(bytes) = cli_dynamic::encode(&t, v) {
            assert_eq!(cli_dynamic::decode(&t, &bytes).as_ref().ok(), Some(v));
        }
    }
    if rec.is_ok() {
        let _: serde_json::Value =
            serde_json::from_slice(&out).expect("recorder wrote invalid JSON");
    }
});
