//! # shmbus-codec: frames to JSON and back, without the Rust type
//!
//! Every shmbus segment carries the schema of its frames (postcard-schema's
//! `OwnedNamedType`, `docs/LAYOUT.md` §8). This crate is the one place that
//! walks such a schema: the CLI (`echo`, `info`, `pub`), the recorder's
//! JSON channels, the fuzz targets, and the MQTT bridge, the Foxglove
//! server and the C library all go through it, so they all speak the same
//! JSON (`docs/JSON.md`).
//!
//! ```
//! use shmbus_codec::Codec;
//!
//! let codec = Codec::parse("struct Imu { t_us: u64, acc: [f32; 3], name: heapless::String<8> }")?;
//! let frame = codec.encode(&serde_json::json!({"t_us": 7, "acc": [0.0, 0.5, 9.81], "name": "imu0"}))?;
//! assert_eq!(frame, [7, 0, 0, 0, 0, 0, 0, 0, 0x3f, 0xc3, 0xf5, 0x1c, 0x41, 4, b'i', b'm', b'u', b'0']);
//! assert_eq!(codec.to_json(&frame)?, r#"{"t_us":7,"acc":[0.0,0.5,9.81],"name":"imu0"}"#);
//!
//! // The schema declares the capacity: a longer name is refused, with its path.
//! let err = codec.encode(&serde_json::json!({"t_us": 7, "acc": [0, 0, 0], "name": "imu-left-wing"})).unwrap_err();
//! assert_eq!(err.to_string(), ".name: 13 bytes exceed heapless::String<8> (at most 8 bytes)");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## The API
//! A [`Codec`] is one checked schema. Make it from the bytes a segment
//! carries ([`Codec::from_schema_bytes`]), from a decoded `OwnedNamedType`
//! ([`Codec::new`]), from a Rust type ([`Codec::of`]) or from declaration
//! text ([`Codec::parse`]). Then:
//!
//! | call | does |
//! | --- | --- |
//! | [`Codec::decode`] | frame bytes to a `serde_json::Value` tree (fields in schema order) |
//! | [`Codec::write_json`] / [`Codec::to_json`] | frame bytes straight to compact JSON text, the same bytes as `serde_json::to_vec(&decode(..))` without building the tree |
//! | [`Codec::encode`] / [`Codec::encode_within`] | JSON to frame bytes, refusing out-of-range numbers, over-capacity strings and lists and (last) frames over the topic's frame capacity, naming the field path |
//! | [`Codec::json_schema`] | JSON Schema (2020-12) of the value; every decoded value validates |
//! | [`Codec::message_schema`], [`Codec::write_message_json`], [`Codec::encode_message`] | the same as a JSON object at the top (`{"value": ...}` around anything but a struct), for viewers that need objects (Foxglove, MCAP JSON channels) |
//! | [`Codec::viewer_schema`] | the message schema in the subset Foxglove's and Lichtblick's readers understand (one `type` per property): advertise this to viewers, validate with `message_schema` |
//! | [`Codec::example`] | a value of the right shape (zeros, empty strings), a template for `shmbus pub` |
//! | [`Codec::text`] / [`text::render`], [`text::parse`] | the schema as Rust-like declaration text, and back (`parse(render(t)) == t`) |
//! | [`Codec::schema`], [`Codec::schema_bytes`], [`Codec::fingerprint`] | the schema itself, its segment bytes and fingerprint |
//!
//! ## The JSON mapping, in short
//! Structs are objects (fields in schema order), tuples and arrays are
//! arrays, enums are `"Variant"` or `{"Variant": value}`, `Option` is
//! `null` or the value, unit is `null`. Integers are numbers, with exact
//! decimal digits, over the whole 64-bit range (a `u128` beyond `u64::MAX`
//! is a decimal string); NaN and infinities are the strings `"NaN"`,
//! `"inf"`, `"-inf"`; an f32 is written with its shortest decimal (`9.81`).
//! The full table, with the cases that need care (`Option<Option<T>>`,
//! map keys, byte arrays, char), is in `docs/JSON.md`.
//! `encode(decode(f)) == f` for every frame that decodes, except that every
//! NaN is written back as the canonical quiet NaN.
//!
//! ## Capacities
//! A schema node's name can declare a capacity: the last generic argument,
//! when it is a number (`heapless::String<16>`, `heapless::Vec<T, 16>`;
//! `shmbus_core::schema::schema_bytes` writes them for every Rust type).
//! Decoding refuses a frame whose string or list exceeds it (a typed
//! subscriber would too) and encoding refuses such a value, so nothing the
//! codec publishes can fail a typed subscriber.
//!
//! ## Untrusted input
//! Frames come from shared memory and JSON from the network. Decoding
//! never panics and never allocates or loops without bound: every read is
//! bounds-checked, varints follow postcard's limits, a length is checked
//! against the bytes left before anything is allocated, and a frame may
//! produce at most [`MAX_VALUES`] JSON values (a sequence of a billion
//! zero-size elements costs no bytes, and is refused); encoding counts the
//! same way and refuses a value its frame would exceed this with, so the
//! codec publishes nothing its own readers refuse. Leftover bytes after
//! the value are an error. A schema nests at most
//! `shmbus_core::schema::MAX_SCHEMA_DEPTH` levels, so recursion is
//! bounded; encoding recurses along the schema too.
//!
//! ## Why not postcard-dyn
//! `postcard-dyn` 0.2.1 (`from_slice_dyn`) does the decoding half, but is
//! unfit for frames from shared memory: a `char` hits a `todo!()` (a panic),
//! NaN floats are refused (serde_json's `Value` has no NaN), and a hostile
//! length prefix on a sequence of zero-size elements makes it loop for as
//! long as the length says. It also has no capacity checks, no JSON Schema
//! and no streaming output.
#![warn(missing_docs)]
// Not `eprintln!`: it panics when stderr cannot be written (`shmbus_toolbox::say!`).
#![warn(clippy::print_stderr)]

mod decode;
mod encode;
mod error;
mod jsonschema;
mod node;
mod strict;
pub mod text;

use postcard_schema::schema::owned::OwnedDataModelType;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use error::{DecodeError, DecodeProblem, EncodeError, EncodeProblem, SchemaError};
pub use jsonschema::DRAFT as JSON_SCHEMA_DRAFT;
pub use postcard_schema::schema::owned::OwnedNamedType;
pub use strict::{MAX_JSON_VALUES, json_refused, parse_json};
pub use text::ParseError;

/// The most JSON values (scalars, arrays, objects; each byte of a byte
/// array counts) one decoded frame may produce.
pub const MAX_VALUES: usize = 1 << 20;

/// One checked schema, ready to decode and encode frames.
///
/// Cheap to keep for the life of a topic; building it walks the schema
/// once.
#[derive(Debug, Clone)]
pub struct Codec {
    schema: OwnedNamedType,
    node: node::Node,
}

impl Codec {
    /// Check `schema` for the codec: at most `MAX_SCHEMA_DEPTH` levels, no
    /// two fields of a struct (or variants of an enum) with one name, no
    /// embedded schema (`Schema` node).
    pub fn new(schema: OwnedNamedType) -> Result<Codec, SchemaError> {
        let node = node::compile(&schema)?;
        Ok(Codec { schema, node })
    }

    /// The codec of the schema bytes a segment carries (untrusted: decoded
    /// with `shmbus_core::schema::decode_schema`'s limits).
    pub fn from_schema_bytes(bytes: &[u8]) -> Result<Codec, SchemaError> {
        let t = shmbus_core::schema::decode_schema(bytes).map_err(|_| SchemaError::Malformed)?;
        Codec::new(t)
    }

    /// The codec of Rust type `T`: the same schema (with capacities) that a
    /// `Publisher<T>` puts in its segment.
    pub fn of<T>() -> Result<Codec, SchemaError>
    where
        T: postcard_schema::Schema + DeserializeOwned,
    {
        let bytes = shmbus_core::schema::schema_bytes::<T>().map_err(|_| SchemaError::Malformed)?;
        Codec::from_schema_bytes(&bytes)
    }

    /// The codec of a schema written as declaration text ([`text`]).
    pub fn parse(text: &str) -> Result<Codec, ParseError> {
        let t = text::parse(text)?;
        Codec::new(t).map_err(|e| ParseError {
            line: 1,
            col: 1,
            message: e.to_string(),
        })
    }

    /// The most bytes a frame of this schema can take, as postcard's
    /// `MaxSize` computes it for the equivalent Rust type: the frame
    /// capacity to create a topic of a declared type with (the one a Rust
    /// `Publisher` of that type would give it). `None` if a string, list or
    /// map declares no capacity (`String`, `Vec<T>`); `usize::MAX` when the
    /// declared capacities add up beyond this machine's `usize` (no topic can
    /// hold such a frame: refuse it as too large).
    pub fn max_size(&self) -> Option<usize> {
        self.node.max_size()
    }

    /// The frame capacity of a topic of this type ([`Self::max_size`], at
    /// least 1), or why no topic can hold its frames: no largest size, or
    /// one over the layout's `MAX_FRAME_CAPACITY`. The one verdict for every
    /// place that creates a topic from declared text (the bridge's
    /// `[[bridge.in]]`) and for the checks that look at such text first
    /// (`shmbus doctor`).
    pub fn frame_capacity(&self) -> Result<usize, String> {
        use shmbus_core::layout::MAX_FRAME_CAPACITY;
        match self.max_size() {
            Some(n) if n > MAX_FRAME_CAPACITY => Err(format!(
                "a frame of this type can be {} bytes, more than a topic's frames hold ({MAX_FRAME_CAPACITY}): declare smaller capacities (heapless::String<N>, heapless::Vec<T, N>)",
                if n == usize::MAX {
                    format!("more than {n}")
                } else {
                    n.to_string()
                }
            )),
            Some(n) => Ok(n.max(1)),
            None => Err("a frame of this type has no largest size (an unbounded String or Vec): use heapless::String<N> / heapless::Vec<T, N>".into()),
        }
    }

    /// The schema.
    pub fn schema(&self) -> &OwnedNamedType {
        &self.schema
    }

    /// The schema as a segment stores it (postcard bytes of the
    /// `OwnedNamedType`).
    pub fn schema_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(&self.schema).unwrap_or_default()
    }

    /// The fingerprint a segment's header holds for this schema.
    pub fn fingerprint(&self) -> u64 {
        shmbus_core::layout::fnv1a64(&self.schema_bytes())
    }

    /// The schema as declaration text ([`text::render`]).
    pub fn text(&self) -> String {
        text::render(&self.schema)
    }

    /// Decode one frame (exactly: leftover bytes are an error) into a value
    /// tree, by the mapping of `docs/JSON.md`.
    pub fn decode(&self, frame: &[u8]) -> Result<Value, DecodeError> {
        let mut sink = decode::ValueSink::default();
        decode::Decoder::new(frame).frame(&self.node, &mut sink)?;
        Ok(sink.finish())
    }

    /// Append one frame as compact JSON text to `out` (the same bytes
    /// `serde_json::to_writer` writes for [`Codec::decode`]'s value). On
    /// error `out` is left as it was.
    pub fn write_json(&self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let start = out.len();
        let r = decode::Decoder::new(frame).frame(&self.node, &mut decode::JsonSink::new(out));
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    /// One frame as compact JSON text.
    pub fn to_json(&self, frame: &[u8]) -> Result<String, DecodeError> {
        let mut out = Vec::new();
        self.write_json(frame, &mut out)?;
        // The sink writes only valid UTF-8 (JSON text from valid strings).
        Ok(String::from_utf8(out).unwrap_or_default())
    }

    /// Encode a JSON value as a frame, checking every integer's range,
    /// every f32's range, fixed array lengths and declared capacities.
    pub fn encode(&self, value: &Value) -> Result<Vec<u8>, EncodeError> {
        let mut e = encode::Encoder::new();
        e.value(&self.node, value)?;
        Ok(e.out)
    }

    /// [`Codec::encode`], then refuse a frame longer than `frame_capacity`
    /// (the topic's). The value checks come first, so the error names the
    /// field when one is wrong.
    pub fn encode_within(
        &self,
        value: &Value,
        frame_capacity: usize,
    ) -> Result<Vec<u8>, EncodeError> {
        let frame = self.encode(value)?;
        if frame.len() > frame_capacity {
            return Err(EncodeError {
                path: String::new(),
                problem: EncodeProblem::FrameTooLarge {
                    len: frame.len(),
                    capacity: frame_capacity,
                },
            });
        }
        Ok(frame)
    }

    /// A value of the right shape: zeros, `false`, empty strings and lists,
    /// `null` options, `" "` chars, the first variant of each enum.
    pub fn example(&self) -> Value {
        encode::example(&self.node)
    }

    /// The JSON Schema (draft 2020-12, with `$schema` and `title`) of the
    /// values [`Codec::decode`] returns.
    pub fn json_schema(&self) -> Value {
        jsonschema::top(jsonschema::schema(&self.node), &self.schema.name)
    }

    /// True if messages wrap the value as `{"value": ...}`: the type is not
    /// a struct with named fields, and viewers need an object at the top.
    pub fn wraps(&self) -> bool {
        !matches!(self.schema.ty, OwnedDataModelType::Struct(_))
    }

    /// The JSON Schema of messages: `"type": "object"` at the top always
    /// (the value's schema, or an object with one required `value`).
    pub fn message_schema(&self) -> Value {
        let s = jsonschema::schema(&self.node);
        let s = if self.wraps() {
            serde_json::json!({
                "type": "object",
                "properties": { "value": s },
                "required": ["value"],
                "additionalProperties": false,
            })
        } else {
            s
        };
        jsonschema::top(s, &self.schema.name)
    }

    /// The message schema for viewers: what the recorder's JSON channels
    /// carry and what Foxglove and Lichtblick can turn into message
    /// definitions (their readers need exactly one `type` on every property
    /// and array item, and refuse `anyOf`, `oneOf` and `null`).
    ///
    /// It describes the same messages as [`Codec::message_schema`], more
    /// loosely: floats are `"type": "number"` (a NaN or infinity, written
    /// as a string, does not validate), an `Option<T>` is `T`'s type (`null`
    /// does not validate), a 128-bit integer is an integer, an enum with
    /// data is an object with one optional property per data variant, and
    /// what cannot be said this way is left out of `properties` (`()`,
    /// tuples of different types, arrays of arrays). Validate with
    /// [`Codec::message_schema`].
    pub fn viewer_schema(&self) -> Value {
        let s = if self.wraps() {
            let mut props = serde_json::Map::new();
            if let Some(v) = jsonschema::viewer(&self.node) {
                props.insert("value".into(), v);
            }
            serde_json::json!({ "type": "object", "properties": props })
        } else {
            jsonschema::viewer(&self.node)
                .unwrap_or_else(|| serde_json::json!({ "type": "object", "properties": {} }))
        };
        jsonschema::top(s, &self.schema.name)
    }

    /// Append one frame as a JSON message (see [`Codec::wraps`]) to `out`.
    /// On error `out` is left as it was.
    pub fn write_message_json(&self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        if !self.wraps() {
            return self.write_json(frame, out);
        }
        let start = out.len();
        out.extend_from_slice(b"{\"value\":");
        match self.write_json(frame, out) {
            Ok(()) => {
                out.push(b'}');
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Encode a JSON message (see [`Codec::wraps`]) as a frame.
    pub fn encode_message(&self, message: &Value) -> Result<Vec<u8>, EncodeError> {
        if !self.wraps() {
            return self.encode(message);
        }
        let expected = |found| EncodeError {
            path: String::new(),
            problem: EncodeProblem::Expected {
                expected: "an object {\"value\": ...}".into(),
                found,
            },
        };
        match message {
            Value::Object(m) if m.len() == 1 => match m.get("value") {
                Some(v) => self.encode(v).map_err(|mut e| {
                    e.path.insert_str(0, ".value");
                    e
                }),
                None => Err(expected("an object without \"value\"")),
            },
            Value::Object(_) => Err(expected("an object with other keys than \"value\"")),
            _ => Err(expected("something else")),
        }
    }
}

impl core::fmt::Display for Codec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.text())
    }
}
