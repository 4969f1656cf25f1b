//! Schema bytes from a segment (`decode_schema`) and schema declaration
//! text (`shmbus_codec::text::parse`), both untrusted. A schema that
//! decodes prints as text that parses back to the same schema; text that
//! parses prints and parses back to the same schema.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shmbus_codec::text::{parse, render};

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = shmbus_core::schema::decode_schema(data) {
        assert_eq!(parse(&render(&t)).as_ref(), Ok(&t));
    }
    if let Ok(s) = core::str::from_utf8(data) {
        if let Ok(t) = parse(s) {
            assert_eq!(parse(&render(&t)).as_ref(), Ok(&t));
        }
    }
});
