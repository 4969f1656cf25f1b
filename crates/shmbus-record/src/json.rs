//! Frames as JSON without the Rust type: postcard bytes decoded by walking
//! the topic's schema (`OwnedNamedType`), and a JSON Schema derived from the
//! same schema, for viewers (Foxglove's `json` / `jsonschema` encodings).
//!
//! ## Mapping
//! | postcard-schema type | JSON value | JSON Schema |
//! | --- | --- | --- |
//! | bool | `true`/`false` | `boolean` |
//! | integers | number | `integer` with `minimum`/`maximum` |
//! | f32, f64 | number; NaN and ±inf become `null` (JSON has none) | `number` |
//! | char, String | string | `string` |
//! | byte array | array of numbers 0-255 | `array` of `integer` |
//! | Option | `null` or the value | `anyOf` [value, `null`] |
//! | unit, unit struct, empty tuple | `null` | `null` |
//! | newtype struct | the inner value | the inner schema |
//! | seq (Vec, heapless::Vec) | array | `array` + `items` |
//! | `[T; N]` | array of N | `array` + `items`, `minItems` = `maxItems` = N |
//! | tuple, tuple struct | array of N | `array` + `prefixItems` (`items` if all alike) |
//! | map (string keys only) | object | `object` + `additionalProperties` |
//! | struct | object, fields in order | `object` + `properties` + `required` |
//! | enum | unit variant: its name; others: `{"Name": value}` | `oneOf` |
//!
//! Foxglove wants every message to be a JSON object: a topic whose type is
//! a struct is stored as that object; any other type is wrapped as
//! `{"value": ...}` ([`wraps`]).
//!
//! The decoder is written here rather than taken from `postcard-dyn`
//! (0.2.1), which panics (an unimplemented branch) on `char`, fails on NaN floats, and
//! builds a `serde_json::Value` tree per frame; this one writes JSON text
//! straight into a reused buffer and never panics on bad input.

use postcard_schema::schema::owned::{
    OwnedDataModelType as D, OwnedDataModelVariant as V, OwnedNamedType, OwnedNamedValue,
};
use serde_json::{Value, json};

/// Why a frame could not be decoded with its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "frame does not match its schema: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

type R<'a> = Result<&'a [u8], DecodeError>;

/// True if messages of this type are wrapped as `{"value": ...}` (the type
/// is not a struct, and Foxglove needs an object).
pub fn wraps(t: &OwnedNamedType) -> bool {
    !matches!(t.ty, D::Struct(_))
}

/// Whether the type can be shown as JSON (every type but a nested schema).
pub fn supported(t: &OwnedNamedType) -> bool {
    fn ok(t: &OwnedNamedType) -> bool {
        match &t.ty {
            D::Schema => false,
            D::Option(n) | D::NewtypeStruct(n) | D::Seq(n) => ok(n),
            D::Tuple(v) | D::TupleStruct(v) => v.iter().all(ok),
            D::Map { key, val } => key.ty == D::String && ok(val),
            D::Struct(f) => f.iter().all(|f| ok(&f.ty)),
            D::Enum(vars) => vars.iter().all(|v| match &v.ty {
                V::UnitVariant => true,
                V::NewtypeVariant(n) => ok(n),
                V::TupleVariant(v) => v.iter().all(ok),
                V::StructVariant(f) => f.iter().all(|f| ok(&f.ty)),
            }),
            _ => true,
        }
    }
    ok(t)
}

/// Append the frame `data` as one JSON object to `out` (wrapped per
/// [`wraps`]). Trailing bytes after the value are an error.
pub fn frame_to_json(
    t: &OwnedNamedType,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    to_json(t, data, out, wraps(t))
}

/// Append the frame `data` as JSON to `out`, as a bare value, or wrapped
/// as `{"value": ...}` if `wrap`.
pub fn to_json(
    t: &OwnedNamedType,
    data: &[u8],
    out: &mut Vec<u8>,
    wrap: bool,
) -> Result<(), DecodeError> {
    if wrap {
        out.extend_from_slice(b"{\"value\":");
    }
    let rest = value(&t.ty, data, out)?;
    if !rest.is_empty() {
        return Err(DecodeError("bytes left over after the value"));
    }
    if wrap {
        out.push(b'}');
    }
    Ok(())
}

fn take(data: &[u8], n: usize) -> Result<(&[u8], &[u8]), DecodeError> {
    if data.len() < n {
        return Err(DecodeError("frame ends early"));
    }
    Ok(data.split_at(n))
}

fn varint(data: &[u8], max_bits: u32) -> Result<(u128, &[u8]), DecodeError> {
    let mut v: u128 = 0;
    for (i, &b) in data.iter().enumerate() {
        let shift = 7 * i as u32;
        if shift >= max_bits {
            return Err(DecodeError("varint too long"));
        }
        v |= u128::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            if max_bits < 128 && v >> max_bits != 0 {
                return Err(DecodeError("varint out of range"));
            }
            return Ok((v, &data[i + 1..]));
        }
    }
    Err(DecodeError("frame ends inside a varint"))
}

fn zigzag(v: u128) -> i128 {
    ((v >> 1) as i128) ^ -((v & 1) as i128)
}

fn num(out: &mut Vec<u8>, n: impl core::fmt::Display) {
    use std::io::Write;
    let _ = write!(out, "{n}");
}

fn float(out: &mut Vec<u8>, f: f64, is_f32: bool) {
    if !f.is_finite() {
        out.extend_from_slice(b"null");
    } else if is_f32 {
        // Shortest text that reads back as the same f32 (9.81, not 9.8100004).
        let _ = serde_json::to_writer(&mut *out, &(f as f32));
    } else {
        let _ = serde_json::to_writer(&mut *out, &f);
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

fn len_prefix(data: &[u8]) -> Result<(usize, &[u8]), DecodeError> {
    let (n, rest) = varint(data, 64)?;
    usize::try_from(n)
        .map_err(|_| DecodeError("length out of range"))
        .map(|n| (n, rest))
}

/// Element counts are bounded by the bytes left (elements of zero-size
/// types aside), so a hostile length cannot make us loop for long.
fn count(data: &[u8]) -> Result<(usize, &[u8]), DecodeError> {
    let (n, rest) = len_prefix(data)?;
    if n > rest.len().max(4096) {
        return Err(DecodeError("sequence length exceeds the frame"));
    }
    Ok((n, rest))
}

fn value<'a>(ty: &D, data: &'a [u8], out: &mut Vec<u8>) -> R<'a> {
    match ty {
        D::Bool => {
            let (b, rest) = take(data, 1)?;
            match b[0] {
                0 => out.extend_from_slice(b"false"),
                1 => out.extend_from_slice(b"true"),
                _ => return Err(DecodeError("bool is neither 0 nor 1")),
            }
            Ok(rest)
        }
        D::U8 => {
            let (b, rest) = take(data, 1)?;
            num(out, b[0]);
            Ok(rest)
        }
        D::I8 => {
            let (b, rest) = take(data, 1)?;
            num(out, b[0] as i8);
            Ok(rest)
        }
        D::U16 | D::U32 | D::U64 | D::U128 | D::Usize => {
            let (v, rest) = varint(data, bits(ty))?;
            num(out, v);
            Ok(rest)
        }
        D::I16 | D::I32 | D::I64 | D::I128 | D::Isize => {
            let (v, rest) = varint(data, bits(ty))?;
            num(out, zigzag(v));
            Ok(rest)
        }
        D::F32 => {
            let (b, rest) = take(data, 4)?;
            let f = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            float(out, f64::from(f), true);
            Ok(rest)
        }
        D::F64 => {
            let (b, rest) = take(data, 8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            float(out, f64::from_le_bytes(a), false);
            Ok(rest)
        }
        D::Char | D::String => {
            let (n, rest) = len_prefix(data)?;
            let (s, rest) = take(rest, n)?;
            let s = core::str::from_utf8(s).map_err(|_| DecodeError("string is not UTF-8"))?;
            if *ty == D::Char && s.chars().count() != 1 {
                return Err(DecodeError("char is not one character"));
            }
            string(out, s);
            Ok(rest)
        }
        D::ByteArray => {
            let (n, rest) = len_prefix(data)?;
            let (bytes, rest) = take(rest, n)?;
            out.push(b'[');
            for (i, b) in bytes.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                num(out, b);
            }
            out.push(b']');
            Ok(rest)
        }
        D::Option(inner) => {
            let (tag, rest) = take(data, 1)?;
            match tag[0] {
                0 => {
                    out.extend_from_slice(b"null");
                    Ok(rest)
                }
                1 => value(&inner.ty, rest, out),
                _ => Err(DecodeError("option tag is neither 0 nor 1")),
            }
        }
        D::Unit | D::UnitStruct => {
            out.extend_from_slice(b"null");
            Ok(data)
        }
        D::NewtypeStruct(inner) => value(&inner.ty, data, out),
        D::Seq(inner) => {
            let (n, mut rest) = count(data)?;
            out.push(b'[');
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                rest = value(&inner.ty, rest, out)?;
            }
            out.push(b']');
            Ok(rest)
        }
        D::Tuple(items) | D::TupleStruct(items) => tuple(items, data, out),
        D::Map { key, val } => {
            if key.ty != D::String {
                return Err(DecodeError("map keys other than strings cannot be JSON"));
            }
            let (n, mut rest) = count(data)?;
            out.push(b'{');
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                rest = value(&D::String, rest, out)?;
                out.push(b':');
                rest = value(&val.ty, rest, out)?;
            }
            out.push(b'}');
            Ok(rest)
        }
        D::Struct(fields) => object(fields, data, out),
        D::Enum(vars) => {
            let (idx, rest) = varint(data, 32)?;
            let var = vars
                .get(idx as usize)
                .ok_or(DecodeError("enum variant index out of range"))?;
            if var.ty == V::UnitVariant {
                string(out, &var.name);
                return Ok(rest);
            }
            out.push(b'{');
            string(out, &var.name);
            out.push(b':');
            let rest = match &var.ty {
                V::NewtypeVariant(n) => value(&n.ty, rest, out)?,
                V::TupleVariant(items) => tuple(items, rest, out)?,
                V::StructVariant(fields) => object(fields, rest, out)?,
                V::UnitVariant => rest,
            };
            out.push(b'}');
            Ok(rest)
        }
        D::Schema => Err(DecodeError("nested schemas cannot be shown as JSON")),
    }
}

fn tuple<'a>(items: &[OwnedNamedType], data: &'a [u8], out: &mut Vec<u8>) -> R<'a> {
    if items.is_empty() {
        out.extend_from_slice(b"null");
        return Ok(data);
    }
    out.push(b'[');
    let mut rest = data;
    for (i, t) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        rest = value(&t.ty, rest, out)?;
    }
    out.push(b']');
    Ok(rest)
}

fn object<'a>(fields: &[OwnedNamedValue], data: &'a [u8], out: &mut Vec<u8>) -> R<'a> {
    out.push(b'{');
    let mut rest = data;
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, &f.name);
        out.push(b':');
        rest = value(&f.ty.ty, rest, out)?;
    }
    out.push(b'}');
    Ok(rest)
}

fn bits(ty: &D) -> u32 {
    match ty {
        D::U16 | D::I16 => 16,
        D::U32 | D::I32 => 32,
        D::U128 | D::I128 => 128,
        _ => 64,
    }
}

/// The JSON Schema (draft 2020-12) of the JSON messages [`frame_to_json`]
/// writes for type `t`: always `"type": "object"` at the top.
pub fn json_schema(t: &OwnedNamedType) -> Value {
    let mut s = if wraps(t) {
        json!({
            "type": "object",
            "properties": { "value": schema_of(t) },
            "required": ["value"],
        })
    } else {
        schema_of(t)
    };
    if let Value::Object(m) = &mut s {
        m.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        m.insert("title".into(), json!(t.name));
    }
    s
}

fn int(min: impl Into<Value>, max: impl Into<Value>) -> Value {
    json!({ "type": "integer", "minimum": min.into(), "maximum": max.into() })
}

fn array_of(items: &[OwnedNamedType]) -> Value {
    if items.is_empty() {
        return json!({ "type": "null" });
    }
    let prefix: Vec<Value> = items.iter().map(schema_of).collect();
    if prefix.iter().all(|p| *p == prefix[0]) {
        // `[T; N]`: the plain form every viewer understands.
        return json!({
            "type": "array",
            "items": prefix[0],
            "minItems": items.len(),
            "maxItems": items.len(),
        });
    }
    json!({
        "type": "array",
        "prefixItems": prefix,
        "minItems": items.len(),
        "maxItems": items.len(),
    })
}

fn object_of(fields: &[OwnedNamedValue]) -> Value {
    let mut props = serde_json::Map::new();
    for f in fields {
        props.insert(f.name.clone(), schema_of(&f.ty));
    }
    let required: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    json!({ "type": "object", "properties": props, "required": required })
}

fn schema_of(t: &OwnedNamedType) -> Value {
    match &t.ty {
        D::Bool => json!({ "type": "boolean" }),
        D::U8 => int(0, u8::MAX),
        D::U16 => int(0, u16::MAX),
        D::U32 => int(0, u32::MAX),
        D::U64 | D::Usize => int(0, u64::MAX),
        D::U128 => json!({ "type": "integer", "minimum": 0 }),
        D::I8 => int(i8::MIN, i8::MAX),
        D::I16 => int(i16::MIN, i16::MAX),
        D::I32 => int(i32::MIN, i32::MAX),
        D::I64 | D::Isize => int(i64::MIN, i64::MAX),
        D::I128 => json!({ "type": "integer" }),
        D::F32 | D::F64 => json!({ "type": "number" }),
        D::Char => json!({ "type": "string", "minLength": 1, "maxLength": 1 }),
        D::String => json!({ "type": "string" }),
        D::ByteArray => json!({ "type": "array", "items": int(0, u8::MAX) }),
        D::Option(n) => json!({ "anyOf": [schema_of(n), { "type": "null" }] }),
        D::Unit | D::UnitStruct => json!({ "type": "null" }),
        D::NewtypeStruct(n) => schema_of(n),
        D::Seq(n) => json!({ "type": "array", "items": schema_of(n) }),
        D::Tuple(v) | D::TupleStruct(v) => array_of(v),
        D::Map { val, .. } => json!({ "type": "object", "additionalProperties": schema_of(val) }),
        D::Struct(fields) => object_of(fields),
        D::Enum(vars) => {
            let units: Vec<&str> = vars
                .iter()
                .filter(|v| v.ty == V::UnitVariant)
                .map(|v| v.name.as_str())
                .collect();
            if units.len() == vars.len() {
                return json!({ "type": "string", "enum": units });
            }
            let one_of: Vec<Value> = vars
                .iter()
                .map(|v| {
                    let inner = match &v.ty {
                        V::UnitVariant => return json!({ "const": v.name }),
                        V::NewtypeVariant(n) => schema_of(n),
                        V::TupleVariant(items) => array_of(items),
                        V::StructVariant(f) => object_of(f),
                    };
                    json!({
                        "type": "object",
                        "properties": { v.name.clone(): inner },
                        "required": [v.name],
                        "additionalProperties": false,
                    })
                })
                .collect();
            json!({ "oneOf": one_of })
        }
        D::Schema => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postcard_schema::Schema;
    use serde::Serialize;

    #[derive(Serialize, Schema)]
    enum Mode {
        Idle,
        Run(u16),
        Move { dx: i32, dy: i32 },
        Pair(u8, bool),
    }

    #[derive(Serialize, Schema)]
    struct Inner {
        id: u8,
        name: heapless::String<8>,
    }

    #[derive(Serialize, Schema)]
    struct Everything {
        b: bool,
        i8_: i8,
        i16_: i16,
        i32_: i32,
        i64_: i64,
        u16_: u16,
        u32_: u32,
        u64_: u64,
        f32_: f32,
        f64_: f64,
        arr: [f32; 3],
        list: heapless::Vec<i16, 4>,
        opt: Option<u32>,
        none: Option<u32>,
        inner: Inner,
        modes: [Mode; 4],
        unit: (),
    }

    fn owned<T: Schema>() -> OwnedNamedType {
        OwnedNamedType::from(T::SCHEMA)
    }

    fn everything() -> Everything {
        Everything {
            b: true,
            i8_: -8,
            i16_: -300,
            i32_: i32::MIN,
            i64_: i64::MIN,
            u16_: 65535,
            u32_: u32::MAX,
            u64_: u64::MAX,
            f32_: 9.81,
            f64_: -1234.5678e-9,
            arr: [1.0, -2.5, 0.1],
            list: heapless::Vec::from_slice(&[1, -2, 3]).unwrap(),
            opt: Some(7),
            none: None,
            inner: Inner {
                id: 3,
                name: "imu0".into(),
            },
            modes: [
                Mode::Idle,
                Mode::Run(9),
                Mode::Move { dx: -1, dy: 2 },
                Mode::Pair(5, false),
            ],
            unit: (),
        }
    }

    fn decode(t: &OwnedNamedType, bytes: &[u8]) -> Value {
        let mut out = Vec::new();
        frame_to_json(t, bytes, &mut out).unwrap();
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn decodes_like_serde_json_would_encode_the_value() {
        let v = everything();
        let bytes = postcard::to_allocvec(&v).unwrap();
        let got = decode(&owned::<Everything>(), &bytes);
        // serde_json's own encoding of the value (f32 through f64 aside).
        let mut want = serde_json::to_value(&v).unwrap();
        want["f32_"] = json!(9.81);
        want["arr"] = json!([1.0, -2.5, 0.1]);
        assert_eq!(got, want);
    }

    #[test]
    fn agrees_with_postcard_dyn_where_postcard_dyn_works() {
        let v = Inner {
            id: 200,
            name: "gnss".into(),
        };
        let bytes = postcard::to_allocvec(&v).unwrap();
        let t = owned::<Inner>();
        assert_eq!(
            decode(&t, &bytes),
            postcard_dyn::from_slice_dyn(&t, &bytes).unwrap()
        );
    }

    #[test]
    fn nan_and_infinity_become_null() {
        let bytes = postcard::to_allocvec(&[f32::NAN, f32::INFINITY, 1.0]).unwrap();
        let t = owned::<[f32; 3]>();
        assert!(wraps(&t));
        assert_eq!(decode(&t, &bytes), json!({ "value": [null, null, 1.0] }));
    }

    #[test]
    fn char_and_non_struct_types_are_wrapped_objects() {
        let t = owned::<char>();
        let bytes = postcard::to_allocvec(&'é').unwrap();
        assert_eq!(decode(&t, &bytes), json!({ "value": "é" }));
        let s = json_schema(&t);
        assert_eq!(s["type"], "object");
        assert_eq!(s["required"], json!(["value"]));
    }

    #[test]
    fn schema_describes_the_object() {
        let s = json_schema(&owned::<Everything>());
        assert_eq!(s["type"], "object");
        assert_eq!(s["title"], "Everything");
        let p = &s["properties"];
        assert_eq!(p["b"]["type"], "boolean");
        assert_eq!(p["u64_"]["maximum"], json!(u64::MAX));
        assert_eq!(p["i8_"]["minimum"], json!(-128));
        assert_eq!(p["f32_"]["type"], "number");
        assert_eq!(p["list"]["items"]["type"], "integer");
        assert_eq!(p["arr"]["items"]["type"], "number");
        assert_eq!(
            (p["arr"]["minItems"].as_u64(), p["arr"]["maxItems"].as_u64()),
            (Some(3), Some(3))
        );
        assert_eq!(p["inner"]["properties"]["name"]["type"], "string");
        assert_eq!(p["opt"]["anyOf"][1]["type"], "null");
        let modes = &p["modes"]["items"]["oneOf"];
        assert_eq!(modes[0]["const"], "Idle");
        assert_eq!(modes[2]["required"], json!(["Move"]));
        assert_eq!(s["required"].as_array().unwrap().len(), 17);
    }

    #[test]
    fn bad_frames_are_errors_never_panics() {
        let t = owned::<Everything>();
        let good = postcard::to_allocvec(&everything()).unwrap();
        let mut out = Vec::new();
        // Every truncation fails cleanly.
        for n in 0..good.len() {
            out.clear();
            assert!(
                frame_to_json(&t, &good[..n], &mut out).is_err(),
                "prefix of {n} bytes"
            );
        }
        // Trailing garbage is refused.
        let mut long = good.clone();
        long.push(0);
        assert!(frame_to_json(&t, &long, &mut out).is_err());
        // Every single-byte corruption either decodes or fails; none panics.
        for i in 0..good.len() {
            for x in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] = x;
                out.clear();
                let _ = frame_to_json(&t, &bad, &mut out);
            }
        }
        // A huge sequence length does not loop or allocate.
        let seq = owned::<heapless::Vec<(), 4>>();
        assert!(frame_to_json(&seq, &[0xff, 0xff, 0xff, 0xff, 0x0f], &mut out).is_err());
    }
}
