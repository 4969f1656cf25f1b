//! Typeless postcard: decode frames to JSON and encode JSON to frames, using
//! only the `postcard_schema` `OwnedNamedType` that a segment carries.
//!
//! This module knows nothing of the command line; recording and replay tools
//! can use it as it is.
//!
//! ## Mapping
//! | schema | JSON |
//! | --- | --- |
//! | bool, integers | bool, number (128-bit values beyond 64 bits: decimal string) |
//! | f32, f64 | number; NaN and infinities as the strings `"NaN"`, `"inf"`, `"-inf"` |
//! | String, char | string |
//! | byte array | array of numbers |
//! | Option | `null` or the value |
//! | unit, unit struct | `null` |
//! | newtype struct | the inner value |
//! | Seq, tuple, tuple struct, `[T; N]` | array |
//! | struct | object, fields in schema order |
//! | map | object (non-string keys as their JSON text) |
//! | enum | `"Variant"` for a unit variant, else `{"Variant": value}` |
//!
//! An f32 is printed with the shortest decimal that reads back as the same
//! f32 (`9.81`, not `9.8100004196167`).
//!
//! ## Untrusted input
//! Frames come from shared memory. Decoding never panics and never
//! allocates without bound: every read is bounds-checked, varints are
//! checked like postcard does, a frame may produce at most
//! [`MAX_VALUES`] JSON values, and leftover bytes after the value are an
//! error (the frame length in the slot is exact). The schema's depth is
//! already bounded by `shmbus_core::schema::decode_schema`; recursion here
//! follows the schema, so it is bounded too.
//!
//! ## Limits of the schema
//! The schema says `String` or `Seq` but not the capacity `N` of a
//! `heapless::String<N>`/`Vec<T, N>`: [`encode`] cannot refuse a string that
//! is too long for the publisher's type; the subscriber's decode will.

use core::fmt;

use postcard_schema::schema::owned::{
    OwnedDataModelType as Ty, OwnedDataModelVariant as Variant, OwnedNamedType, OwnedNamedValue,
};
use serde_json::{Map, Number, Value};

/// The most JSON values one decoded frame may produce.
pub const MAX_VALUES: usize = 1 << 20;

/// Why a frame did not decode, and where (a path such as `.acc[2]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Where in the value: `.field`, `[index]`, `::Variant`; empty at the top.
    pub path: String,
    /// What went wrong.
    pub what: DecodeProblem,
}

/// The kind of [`DecodeError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeProblem {
    /// The frame ended in the middle of a value.
    UnexpectedEnd,
    /// A varint is longer or larger than its type allows.
    BadVarint,
    /// A bool byte other than 0 or 1.
    BadBool(u8),
    /// An Option tag other than 0 or 1.
    BadOption(u8),
    /// A string or char that is not UTF-8 (or a char not one character).
    BadUtf8,
    /// An enum discriminant past the last variant.
    BadVariant(u64),
    /// The value ended before the frame did.
    TrailingBytes(usize),
    /// The frame would produce more than [`MAX_VALUES`] values.
    TooLarge,
    /// A schema element that frames cannot contain (`Schema`).
    Unsupported(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.path.is_empty() {
            "<frame>"
        } else {
            &self.path
        };
        match &self.what {
            DecodeProblem::UnexpectedEnd => write!(f, "frame ends early at {at}"),
            DecodeProblem::BadVarint => write!(f, "invalid varint at {at}"),
            DecodeProblem::BadBool(b) => write!(f, "invalid bool byte {b} at {at}"),
            DecodeProblem::BadOption(b) => write!(f, "invalid option tag {b} at {at}"),
            DecodeProblem::BadUtf8 => write!(f, "invalid UTF-8 at {at}"),
            DecodeProblem::BadVariant(v) => write!(f, "no enum variant {v} at {at}"),
            DecodeProblem::TrailingBytes(n) => {
                write!(f, "{n} bytes left over after the value")
            }
            DecodeProblem::TooLarge => {
                write!(f, "frame holds more than {MAX_VALUES} values at {at}")
            }
            DecodeProblem::Unsupported(what) => write!(f, "cannot decode {what} at {at}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a JSON value could not be encoded with the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError {
    /// Where in the value, as in [`DecodeError::path`].
    pub path: String,
    /// What was expected and found.
    pub what: String,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.what)
        } else {
            write!(f, "at {}: {}", self.path, self.what)
        }
    }
}

impl std::error::Error for EncodeError {}

/// Decode one postcard frame into JSON with `schema`.
pub fn decode(schema: &OwnedNamedType, frame: &[u8]) -> Result<Value, DecodeError> {
    let mut d = Decoder {
        data: frame,
        budget: MAX_VALUES,
        path: Vec::new(),
    };
    let v = d.value(&schema.ty)?;
    if !d.data.is_empty() {
        return Err(d.err(DecodeProblem::TrailingBytes(d.data.len())));
    }
    Ok(v)
}

/// Encode a JSON value as a postcard frame with `schema`.
pub fn encode(schema: &OwnedNamedType, value: &Value) -> Result<Vec<u8>, EncodeError> {
    let mut e = Encoder {
        out: Vec::new(),
        path: Vec::new(),
    };
    e.value(&schema.ty, value)?;
    Ok(e.out)
}

/// A JSON value of the right shape for `schema` (zeros, empty strings, the
/// first enum variant, `null` options): a template to edit for `shmbus pub`.
pub fn example(schema: &OwnedNamedType) -> Value {
    example_of(&schema.ty)
}

fn example_of(ty: &Ty) -> Value {
    match ty {
        Ty::Bool => Value::Bool(false),
        Ty::F32 | Ty::F64 => Value::from(0.0),
        Ty::I8 | Ty::I16 | Ty::I32 | Ty::I64 | Ty::I128 | Ty::Isize => Value::from(0),
        Ty::U8 | Ty::U16 | Ty::U32 | Ty::U64 | Ty::U128 | Ty::Usize => Value::from(0),
        Ty::Char => Value::from("a"),
        Ty::String => Value::from(""),
        Ty::ByteArray | Ty::Seq(_) => Value::Array(Vec::new()),
        Ty::Option(_) | Ty::Unit | Ty::UnitStruct | Ty::Schema => Value::Null,
        Ty::NewtypeStruct(t) => example_of(&t.ty),
        Ty::Tuple(v) | Ty::TupleStruct(v) => {
            Value::Array(v.iter().map(|t| example_of(&t.ty)).collect())
        }
        Ty::Map { .. } => Value::Object(Map::new()),
        Ty::Struct(fields) => Value::Object(
            fields
                .iter()
                .map(|f| (f.name.clone(), example_of(&f.ty.ty)))
                .collect(),
        ),
        Ty::Enum(vars) => match vars.first() {
            None => Value::Null,
            Some(v) => match &v.ty {
                Variant::UnitVariant => Value::from(v.name.clone()),
                Variant::NewtypeVariant(t) => single(&v.name, example_of(&t.ty)),
                Variant::TupleVariant(ts) => single(
                    &v.name,
                    Value::Array(ts.iter().map(|t| example_of(&t.ty)).collect()),
                ),
                Variant::StructVariant(fs) => single(
                    &v.name,
                    Value::Object(
                        fs.iter()
                            .map(|f| (f.name.clone(), example_of(&f.ty.ty)))
                            .collect(),
                    ),
                ),
            },
        },
    }
}

fn single(k: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert(k.to_string(), v);
    Value::Object(m)
}

enum Seg {
    Field(String),
    Index(usize),
    Variant(String),
}

fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for p in path {
        match p {
            Seg::Field(n) => {
                s.push('.');
                s.push_str(n);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
            Seg::Variant(n) => {
                s.push_str("::");
                s.push_str(n);
            }
        }
    }
    s
}

struct Decoder<'a> {
    data: &'a [u8],
    budget: usize,
    path: Vec<Seg>,
}

impl<'a> Decoder<'a> {
    fn err(&self, what: DecodeProblem) -> DecodeError {
        DecodeError {
            path: path_string(&self.path),
            what,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.data.len() {
            return Err(self.err(DecodeProblem::UnexpectedEnd));
        }
        let (a, b) = self.data.split_at(n);
        self.data = b;
        Ok(a)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// A postcard varint of a `bits`-wide unsigned integer.
    fn varint(&mut self, bits: u32) -> Result<u128, DecodeError> {
        let max_bytes = bits.div_ceil(7);
        let last_max: u8 = ((1u16 << (bits % 7)) - 1) as u8;
        let mut out: u128 = 0;
        for i in 0..max_bytes {
            let b = self.byte()?;
            out |= u128::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == max_bytes - 1 && bits % 7 != 0 && b > last_max {
                    return Err(self.err(DecodeProblem::BadVarint));
                }
                return Ok(out);
            }
        }
        Err(self.err(DecodeProblem::BadVarint))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint(64)?;
        usize::try_from(n).map_err(|_| self.err(DecodeProblem::TooLarge))
    }

    fn spend(&mut self) -> Result<(), DecodeError> {
        if self.budget == 0 {
            return Err(self.err(DecodeProblem::TooLarge));
        }
        self.budget -= 1;
        Ok(())
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        core::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| self.err(DecodeProblem::BadUtf8))
    }

    fn unsigned(&mut self, bits: u32) -> Result<Value, DecodeError> {
        let v = self.varint(bits)?;
        Ok(match u64::try_from(v) {
            Ok(v) => Value::from(v),
            Err(_) => Value::String(v.to_string()),
        })
    }

    fn signed(&mut self, bits: u32) -> Result<Value, DecodeError> {
        let z = self.varint(bits)?;
        let v = ((z >> 1) as i128) ^ -((z & 1) as i128);
        Ok(match i64::try_from(v) {
            Ok(v) => Value::from(v),
            Err(_) => Value::String(v.to_string()),
        })
    }

    fn value(&mut self, ty: &Ty) -> Result<Value, DecodeError> {
        self.spend()?;
        Ok(match ty {
            Ty::Bool => match self.byte()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(DecodeProblem::BadBool(b))),
            },
            Ty::U8 => Value::from(self.byte()?),
            Ty::I8 => Value::from(self.byte()? as i8),
            Ty::U16 => self.unsigned(16)?,
            Ty::U32 => self.unsigned(32)?,
            Ty::U64 | Ty::Usize => self.unsigned(64)?,
            Ty::U128 => self.unsigned(128)?,
            Ty::I16 => self.signed(16)?,
            Ty::I32 => self.signed(32)?,
            Ty::I64 | Ty::Isize => self.signed(64)?,
            Ty::I128 => self.signed(128)?,
            Ty::F32 => {
                let b = self.take(4)?;
                float_value(f32::from_le_bytes([b[0], b[1], b[2], b[3]]).into(), true)
            }
            Ty::F64 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                float_value(f64::from_le_bytes(a), false)
            }
            Ty::String => Value::String(self.string()?),
            Ty::Char => {
                let s = self.string()?;
                if s.chars().count() != 1 {
                    return Err(self.err(DecodeProblem::BadUtf8));
                }
                Value::String(s)
            }
            Ty::ByteArray => {
                let n = self.len()?;
                let bytes = self.take(n)?;
                if bytes.len() > self.budget {
                    return Err(self.err(DecodeProblem::TooLarge));
                }
                self.budget -= bytes.len();
                Value::Array(bytes.iter().map(|b| Value::from(*b)).collect())
            }
            Ty::Option(t) => match self.byte()? {
                0 => Value::Null,
                1 => self.value(&t.ty)?,
                b => return Err(self.err(DecodeProblem::BadOption(b))),
            },
            Ty::Unit | Ty::UnitStruct => Value::Null,
            Ty::NewtypeStruct(t) => self.value(&t.ty)?,
            Ty::Seq(t) => {
                let n = self.len()?;
                let mut v = Vec::new();
                for i in 0..n {
                    self.path.push(Seg::Index(i));
                    let x = self.value(&t.ty)?;
                    self.path.pop();
                    v.push(x);
                }
                Value::Array(v)
            }
            Ty::Tuple(ts) | Ty::TupleStruct(ts) => {
                let mut v = Vec::with_capacity(ts.len().min(self.budget));
                for (i, t) in ts.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    let x = self.value(&t.ty)?;
                    self.path.pop();
                    v.push(x);
                }
                Value::Array(v)
            }
            Ty::Map { key, val } => {
                let n = self.len()?;
                let mut m = Map::new();
                for i in 0..n {
                    self.path.push(Seg::Index(i));
                    let k = self.value(&key.ty)?;
                    let v = self.value(&val.ty)?;
                    self.path.pop();
                    let k = match k {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    m.insert(k, v);
                }
                Value::Object(m)
            }
            Ty::Struct(fields) => Value::Object(self.fields(fields)?),
            Ty::Enum(vars) => {
                let d = self.varint(32)?;
                let Some(var) = usize::try_from(d).ok().and_then(|i| vars.get(i)) else {
                    return Err(self.err(DecodeProblem::BadVariant(d as u64)));
                };
                self.path.push(Seg::Variant(var.name.clone()));
                let inner = match &var.ty {
                    Variant::UnitVariant => None,
                    Variant::NewtypeVariant(t) => Some(self.value(&t.ty)?),
                    Variant::TupleVariant(ts) => Some(self.value(&Ty::Tuple(ts.clone()))?),
                    Variant::StructVariant(fs) => Some(Value::Object(self.fields(fs)?)),
                };
                self.path.pop();
                match inner {
                    None => Value::String(var.name.clone()),
                    Some(v) => single(&var.name, v),
                }
            }
            Ty::Schema => return Err(self.err(DecodeProblem::Unsupported("an embedded schema"))),
        })
    }

    fn fields(&mut self, fields: &[OwnedNamedValue]) -> Result<Map<String, Value>, DecodeError> {
        let mut m = Map::new();
        for f in fields {
            self.path.push(Seg::Field(f.name.clone()));
            let v = self.value(&f.ty.ty)?;
            self.path.pop();
            m.insert(f.name.clone(), v);
        }
        Ok(m)
    }
}

/// A float as JSON: finite values as numbers (an f32 with its shortest
/// decimal form), others as strings.
fn float_value(x: f64, is_f32: bool) -> Value {
    if x.is_nan() {
        return Value::from("NaN");
    }
    if x.is_infinite() {
        return Value::from(if x > 0.0 { "inf" } else { "-inf" });
    }
    let x = if is_f32 {
        // `f32`'s Display is the shortest decimal that round-trips.
        (x as f32).to_string().parse::<f64>().unwrap_or(x)
    } else {
        x
    };
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

struct Encoder {
    out: Vec<u8>,
    path: Vec<Seg>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Encoder {
    fn err(&self, what: String) -> EncodeError {
        EncodeError {
            path: path_string(&self.path),
            what,
        }
    }

    fn expected(&self, what: &str, v: &Value) -> EncodeError {
        self.err(format!("expected {what}, found {}", kind(v)))
    }

    fn varint(&mut self, mut n: u128) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.out.push(b);
                return;
            }
            self.out.push(b | 0x80);
        }
    }

    /// An integer as sign and magnitude (128-bit values may be strings).
    fn integer(&self, v: &Value) -> Result<(bool, u128), EncodeError> {
        match v {
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Ok((false, u128::from(u)))
                } else if let Some(i) = n.as_i64() {
                    Ok((i < 0, u128::from(i.unsigned_abs())))
                } else {
                    Err(self.err(format!("expected an integer, found {n}")))
                }
            }
            Value::String(s) => {
                let t = s.trim();
                let (neg, digits) = match t.strip_prefix('-') {
                    Some(d) => (true, d),
                    None => (false, t),
                };
                digits
                    .parse::<u128>()
                    .map(|m| (neg && m != 0, m))
                    .map_err(|_| self.err(format!("expected an integer, found \"{s}\"")))
            }
            other => Err(self.expected("an integer", other)),
        }
    }

    fn unsigned_value(&self, v: &Value, bits: u32, name: &str) -> Result<u128, EncodeError> {
        let (neg, m) = self.integer(v)?;
        let max = if bits >= 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        if neg || m > max {
            let sign = if neg { "-" } else { "" };
            return Err(self.err(format!("{sign}{m} does not fit in {name}")));
        }
        Ok(m)
    }

    fn signed_value(&self, v: &Value, bits: u32, name: &str) -> Result<i128, EncodeError> {
        let (neg, m) = self.integer(v)?;
        let limit = 1u128 << (bits - 1);
        if (neg && m > limit) || (!neg && m >= limit) {
            let sign = if neg { "-" } else { "" };
            return Err(self.err(format!("{sign}{m} does not fit in {name}")));
        }
        Ok(if neg {
            (m as i128).wrapping_neg()
        } else {
            m as i128
        })
    }

    fn unsigned(&mut self, v: &Value, bits: u32, name: &str) -> Result<(), EncodeError> {
        let m = self.unsigned_value(v, bits, name)?;
        self.varint(m);
        Ok(())
    }

    fn signed(&mut self, v: &Value, bits: u32, name: &str) -> Result<(), EncodeError> {
        let x = self.signed_value(v, bits, name)?;
        self.varint(((x << 1) ^ (x >> 127)) as u128);
        Ok(())
    }

    fn float(&self, v: &Value) -> Result<f64, EncodeError> {
        match v {
            Value::Number(n) => n
                .as_f64()
                .ok_or_else(|| self.err(format!("{n} is not a float"))),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "nan" => Ok(f64::NAN),
                "inf" | "+inf" | "infinity" => Ok(f64::INFINITY),
                "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
                t => t
                    .parse::<f64>()
                    .map_err(|_| self.err(format!("expected a number, found \"{s}\""))),
            },
            other => Err(self.expected("a number", other)),
        }
    }

    fn str_bytes(&mut self, s: &str) {
        self.varint(s.len() as u128);
        self.out.extend_from_slice(s.as_bytes());
    }

    fn array<'v>(&self, v: &'v Value, n: Option<usize>) -> Result<&'v Vec<Value>, EncodeError> {
        let a = v.as_array().ok_or_else(|| self.expected("an array", v))?;
        if let Some(n) = n {
            if a.len() != n {
                return Err(self.err(format!("expected {n} elements, found {}", a.len())));
            }
        }
        Ok(a)
    }

    fn value(&mut self, ty: &Ty, v: &Value) -> Result<(), EncodeError> {
        match ty {
            Ty::Bool => {
                let b = v
                    .as_bool()
                    .ok_or_else(|| self.expected("true or false", v))?;
                self.out.push(u8::from(b));
            }
            Ty::U8 => {
                let x = self.unsigned_value(v, 8, "u8")?;
                self.out.push(x as u8);
            }
            Ty::I8 => {
                let x = self.signed_value(v, 8, "i8")?;
                self.out.push(x as i8 as u8);
            }
            Ty::U16 => self.unsigned(v, 16, "u16")?,
            Ty::U32 => self.unsigned(v, 32, "u32")?,
            Ty::U64 => self.unsigned(v, 64, "u64")?,
            Ty::Usize => self.unsigned(v, 64, "usize")?,
            Ty::U128 => self.unsigned(v, 128, "u128")?,
            Ty::I16 => self.signed(v, 16, "i16")?,
            Ty::I32 => self.signed(v, 32, "i32")?,
            Ty::I64 => self.signed(v, 64, "i64")?,
            Ty::Isize => self.signed(v, 64, "isize")?,
            Ty::I128 => self.signed(v, 128, "i128")?,
            Ty::F32 => {
                let x = self.float(v)? as f32;
                self.out.extend_from_slice(&x.to_le_bytes());
            }
            Ty::F64 => {
                let x = self.float(v)?;
                self.out.extend_from_slice(&x.to_le_bytes());
            }
            Ty::String => {
                let s = v.as_str().ok_or_else(|| self.expected("a string", v))?;
                self.str_bytes(s);
            }
            Ty::Char => {
                let s = v
                    .as_str()
                    .ok_or_else(|| self.expected("a one-character string", v))?;
                if s.chars().count() != 1 {
                    return Err(self.err(format!("expected one character, found \"{s}\"")));
                }
                self.str_bytes(s);
            }
            Ty::ByteArray => {
                let a = self.array(v, None)?;
                self.varint(a.len() as u128);
                for (i, b) in a.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    self.value(&Ty::U8, b)?;
                    self.path.pop();
                }
            }
            Ty::Option(t) => {
                if v.is_null() {
                    self.out.push(0);
                } else {
                    self.out.push(1);
                    self.value(&t.ty, v)?;
                }
            }
            Ty::Unit | Ty::UnitStruct => {
                if !v.is_null() {
                    return Err(self.expected("null", v));
                }
            }
            Ty::NewtypeStruct(t) => self.value(&t.ty, v)?,
            Ty::Seq(t) => {
                let a = self.array(v, None)?;
                self.varint(a.len() as u128);
                for (i, x) in a.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    self.value(&t.ty, x)?;
                    self.path.pop();
                }
            }
            Ty::Tuple(ts) | Ty::TupleStruct(ts) => {
                // A one-element tuple may also be given bare.
                let bare;
                let a = if ts.len() == 1 && !v.is_array() {
                    bare = vec![v.clone()];
                    &bare
                } else {
                    self.array(v, Some(ts.len()))?
                };
                for (i, (t, x)) in ts.iter().zip(a).enumerate() {
                    self.path.push(Seg::Index(i));
                    self.value(&t.ty, x)?;
                    self.path.pop();
                }
            }
            Ty::Map { key, val } => {
                let m = v.as_object().ok_or_else(|| self.expected("an object", v))?;
                self.varint(m.len() as u128);
                for (k, x) in m {
                    self.path.push(Seg::Field(k.clone()));
                    let kv = if key.ty == Ty::String || key.ty == Ty::Char {
                        Value::String(k.clone())
                    } else {
                        serde_json::from_str(k).map_err(|_| {
                            self.err(format!(
                                "map key \"{k}\" is not valid JSON for the key type"
                            ))
                        })?
                    };
                    self.value(&key.ty, &kv)?;
                    self.value(&val.ty, x)?;
                    self.path.pop();
                }
            }
            Ty::Struct(fields) => self.fields(fields, v)?,
            Ty::Enum(vars) => self.variant(vars, v)?,
            Ty::Schema => return Err(self.err("cannot encode an embedded schema".into())),
        }
        Ok(())
    }

    fn fields(&mut self, fields: &[OwnedNamedValue], v: &Value) -> Result<(), EncodeError> {
        let m = v.as_object().ok_or_else(|| self.expected("an object", v))?;
        if let Some(extra) = m.keys().find(|k| !fields.iter().any(|f| &f.name == *k)) {
            let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
            return Err(self.err(format!(
                "unknown field \"{extra}\"; the fields are {}",
                names.join(", ")
            )));
        }
        for f in fields {
            self.path.push(Seg::Field(f.name.clone()));
            match m.get(&f.name) {
                Some(x) => self.value(&f.ty.ty, x)?,
                // A missing optional field is None.
                None if matches!(f.ty.ty, Ty::Option(_)) => self.out.push(0),
                None => {
                    self.path.pop();
                    return Err(self.err(format!("missing field \"{}\"", f.name)));
                }
            }
            self.path.pop();
        }
        Ok(())
    }

    fn variant(
        &mut self,
        vars: &[postcard_schema::schema::owned::OwnedNamedVariant],
        v: &Value,
    ) -> Result<(), EncodeError> {
        let (name, inner) = match v {
            Value::String(s) => (s.as_str(), None),
            Value::Object(m) if m.len() == 1 => {
                let (k, x) = m.iter().next().expect("one entry");
                (k.as_str(), Some(x))
            }
            other => return Err(self.expected("a variant name or {\"Variant\": value}", other)),
        };
        let Some((idx, var)) = vars.iter().enumerate().find(|(_, x)| x.name == name) else {
            let names: Vec<&str> = vars.iter().map(|x| x.name.as_str()).collect();
            return Err(self.err(format!(
                "no variant \"{name}\"; the variants are {}",
                names.join(", ")
            )));
        };
        self.varint(idx as u128);
        self.path.push(Seg::Variant(var.name.clone()));
        match (&var.ty, inner) {
            (Variant::UnitVariant, None | Some(Value::Null)) => {}
            (Variant::UnitVariant, Some(x)) => {
                return Err(self.expected("no value for a unit variant", x));
            }
            (_, None) => {
                return Err(self.err(format!(
                    "variant \"{name}\" needs a value: {{\"{name}\": ...}}"
                )));
            }
            (Variant::NewtypeVariant(t), Some(x)) => self.value(&t.ty, x)?,
            (Variant::TupleVariant(ts), Some(x)) => self.value(&Ty::Tuple(ts.clone()), x)?,
            (Variant::StructVariant(fs), Some(x)) => self.fields(fs, x)?,
        }
        self.path.pop();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postcard_schema::Schema;
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    #[derive(Serialize, Deserialize, Schema, Debug, PartialEq, Clone)]
    enum Mode {
        Idle,
        Fix(u8),
        Pair(i16, bool),
        Pos { lat: f64, lon: f64 },
    }

    #[derive(Serialize, Deserialize, Schema, Debug, PartialEq, Clone)]
    struct Meters(f32);

    #[derive(Serialize, Deserialize, Schema, Debug, PartialEq, Clone)]
    struct Everything {
        b: bool,
        u8_: u8,
        i8_: i8,
        u16_: u16,
        i32_: i32,
        u64_: u64,
        i64_: i64,
        u128_: u128,
        i128_: i128,
        f: f32,
        d: f64,
        c: char,
        name: heapless::String<16>,
        acc: [f32; 3],
        list: heapless::Vec<u16, 8>,
        opt: Option<u32>,
        none: Option<u32>,
        m: Meters,
        unit: (),
        pair: (u8, i8),
        modes: [Mode; 4],
    }

    fn sample() -> Everything {
        Everything {
            b: true,
            u8_: 255,
            i8_: -128,
            u16_: 65535,
            i32_: -123456,
            u64_: u64::MAX,
            i64_: i64::MIN,
            u128_: u128::MAX,
            i128_: -5,
            f: 9.81,
            d: -1.5e300,
            c: 'é',
            name: heapless::String::from("imu0"),
            acc: [0.0, -0.25, 9.81],
            list: heapless::Vec::from_slice(&[1, 300, 65535]).unwrap(),
            opt: Some(7),
            none: None,
            m: Meters(2.5),
            unit: (),
            pair: (1, -1),
            modes: [
                Mode::Idle,
                Mode::Fix(3),
                Mode::Pair(-300, true),
                Mode::Pos {
                    lat: 52.5,
                    lon: 13.4,
                },
            ],
        }
    }

    fn schema_of<T: Schema>() -> OwnedNamedType {
        OwnedNamedType::from(T::SCHEMA)
    }

    #[test]
    fn decodes_what_postcard_encodes() {
        let s = schema_of::<Everything>();
        let bytes = postcard::to_allocvec(&sample()).unwrap();
        let v = decode(&s, &bytes).unwrap();
        assert_eq!(v["b"], json!(true));
        assert_eq!(v["u64_"], json!(u64::MAX));
        assert_eq!(v["i64_"], json!(i64::MIN));
        assert_eq!(v["u128_"], json!(u128::MAX.to_string()));
        assert_eq!(v["i128_"], json!(-5));
        assert_eq!(v["f"], json!(9.81), "shortest f32 form");
        assert_eq!(v["c"], json!("é"));
        assert_eq!(v["name"], json!("imu0"));
        assert_eq!(v["acc"], json!([0.0, -0.25, 9.81]));
        assert_eq!(v["list"], json!([1, 300, 65535]));
        assert_eq!(v["opt"], json!(7));
        assert_eq!(v["none"], Value::Null);
        assert_eq!(v["m"], json!(2.5));
        assert_eq!(v["pair"], json!([1, -1]));
        assert_eq!(
            v["modes"],
            json!(["Idle", {"Fix": 3}, {"Pair": [-300, true]}, {"Pos": {"lat": 52.5, "lon": 13.4}}])
        );
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.first().map(|s| s.as_str()), Some("b"));
    }

    #[test]
    fn encode_round_trips_through_typed_postcard() {
        let s = schema_of::<Everything>();
        let bytes = postcard::to_allocvec(&sample()).unwrap();
        let v = decode(&s, &bytes).unwrap();
        let again = encode(&s, &v).unwrap();
        assert_eq!(again, bytes, "byte-identical re-encoding");
        let typed: Everything = postcard::from_bytes(&again).unwrap();
        assert_eq!(typed, sample());
    }

    #[test]
    fn non_finite_floats_round_trip_as_strings() {
        #[derive(Serialize, Deserialize, Schema, Debug, PartialEq)]
        struct F {
            a: f32,
            b: f64,
            c: f32,
        }
        let s = schema_of::<F>();
        let bytes = postcard::to_allocvec(&F {
            a: f32::NAN,
            b: f64::INFINITY,
            c: f32::NEG_INFINITY,
        })
        .unwrap();
        let v = decode(&s, &bytes).unwrap();
        assert_eq!(v, json!({"a": "NaN", "b": "inf", "c": "-inf"}));
        let back: F = postcard::from_bytes(&encode(&s, &v).unwrap()).unwrap();
        assert!(back.a.is_nan() && back.b == f64::INFINITY && back.c == f32::NEG_INFINITY);
    }

    #[test]
    fn encode_errors_name_the_field_and_the_fix() {
        let s = schema_of::<Everything>();
        let mut v = decode(&s, &postcard::to_allocvec(&sample()).unwrap()).unwrap();
        v["u8_"] = json!(256);
        let e = encode(&s, &v).unwrap_err();
        assert_eq!(e.path, ".u8_");
        assert!(e.to_string().contains("does not fit in u8"), "{e}");

        let mut w = v.clone();
        w["u8_"] = json!(1);
        w["acc"] = json!([1.0, 2.0]);
        let e = encode(&s, &w).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.what.as_str()),
            (".acc", "expected 3 elements, found 2")
        );

        let mut w = v.clone();
        w["u8_"] = json!(1);
        w.as_object_mut().unwrap().remove("name");
        assert!(
            encode(&s, &w)
                .unwrap_err()
                .to_string()
                .contains("missing field \"name\"")
        );

        let mut w = v.clone();
        w["u8_"] = json!(1);
        w["typo"] = json!(1);
        let e = encode(&s, &w).unwrap_err();
        assert!(e.what.contains("unknown field \"typo\""), "{e}");

        let mut w = v;
        w["u8_"] = json!(1);
        w["modes"][1] = json!("Nope");
        let e = encode(&s, &w).unwrap_err();
        assert_eq!(e.path, ".modes[1]");
        assert!(
            e.what.contains("the variants are Idle, Fix, Pair, Pos"),
            "{e}"
        );
    }

    #[test]
    fn missing_option_field_encodes_as_none_and_example_encodes() {
        let s = schema_of::<Everything>();
        let mut ex = example(&s);
        ex.as_object_mut().unwrap().remove("opt");
        ex["c"] = json!("x");
        let bytes = encode(&s, &ex).unwrap();
        let typed: Everything = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(typed.opt, None);
        assert_eq!(typed.modes[0], Mode::Idle);
    }

    #[test]
    fn garbage_frames_are_errors_not_panics() {
        let s = schema_of::<Everything>();
        let good = postcard::to_allocvec(&sample()).unwrap();
        // Every truncation fails cleanly.
        for n in 0..good.len() {
            assert!(decode(&s, &good[..n]).is_err(), "prefix {n}");
        }
        assert!(matches!(
            decode(&s, &[good.as_slice(), &[0]].concat())
                .unwrap_err()
                .what,
            DecodeProblem::TrailingBytes(1)
        ));
        // Deterministic pseudo-random junk: no panic, whatever the bytes.
        let mut x: u32 = 0x1234_5678;
        for len in 0..400 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = decode(&s, &junk);
        }
        assert_eq!(
            decode(&schema_of::<bool>(), &[2]).unwrap_err().what,
            DecodeProblem::BadBool(2)
        );
        assert_eq!(
            decode(&schema_of::<u16>(), &[0xff, 0xff, 0x04])
                .unwrap_err()
                .what,
            DecodeProblem::BadVarint
        );
    }

    #[test]
    fn huge_counts_of_empty_elements_hit_the_budget() {
        // A Seq of unit values costs no bytes per element: the count alone
        // must not make the decoder loop or allocate without bound.
        let s = schema_of::<Vec<()>>();
        let mut frame = Vec::new();
        let mut n: u64 = u64::from(u32::MAX); // fits usize on 32-bit targets too
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                frame.push(b);
                break;
            }
            frame.push(b | 0x80);
        }
        assert_eq!(
            decode(&s, &frame).unwrap_err().what,
            DecodeProblem::TooLarge
        );
        let e = decode(&schema_of::<Vec<u8>>(), &frame).unwrap_err();
        assert_eq!(e.what, DecodeProblem::UnexpectedEnd);
    }

    #[test]
    fn maps_with_integer_keys_round_trip() {
        let s = schema_of::<std::collections::BTreeMap<u8, i32>>();
        let mut m = std::collections::BTreeMap::new();
        m.insert(1u8, -1i32);
        m.insert(200u8, 5i32);
        let bytes = postcard::to_allocvec(&m).unwrap();
        let v = decode(&s, &bytes).unwrap();
        assert_eq!(v, json!({"1": -1, "200": 5}));
        assert_eq!(encode(&s, &v).unwrap(), bytes);
    }
}
