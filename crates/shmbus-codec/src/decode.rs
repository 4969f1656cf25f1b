//! Frame bytes to JSON: one walk of the schema, two outputs (a value tree
//! and JSON text), so the two can never disagree.

use std::collections::HashSet;

use serde_json::{Map, Number, Value};

use crate::MAX_VALUES;
use crate::error::{DecodeError, DecodeProblem, Seg, path_string};
use crate::node::{Bounded, Field, Node, VariantKind};

/// Receives the JSON of a decoded frame, value by value.
pub(crate) trait Sink {
    fn null(&mut self);
    fn bool(&mut self, b: bool);
    fn u64(&mut self, v: u64);
    fn i64(&mut self, v: i64);
    /// A finite float.
    fn f64(&mut self, v: f64);
    fn str(&mut self, s: &str);
    fn begin_array(&mut self);
    fn end_array(&mut self);
    fn begin_object(&mut self);
    fn key(&mut self, k: &str);
    fn end_object(&mut self);
}

/// Builds a `serde_json::Value`.
#[derive(Default)]
pub(crate) struct ValueSink {
    stack: Vec<Open>,
    done: Option<Value>,
}

enum Open {
    Array(Vec<Value>),
    Object(Map<String, Value>, String),
}

impl ValueSink {
    fn put(&mut self, v: Value) {
        match self.stack.last_mut() {
            Some(Open::Array(a)) => a.push(v),
            Some(Open::Object(m, k)) => {
                m.insert(core::mem::take(k), v);
            }
            None => self.done = Some(v),
        }
    }

    pub(crate) fn finish(self) -> Value {
        self.done.unwrap_or(Value::Null)
    }
}

impl Sink for ValueSink {
    fn null(&mut self) {
        self.put(Value::Null);
    }
    fn bool(&mut self, b: bool) {
        self.put(Value::Bool(b));
    }
    fn u64(&mut self, v: u64) {
        self.put(Value::from(v));
    }
    fn i64(&mut self, v: i64) {
        self.put(Value::from(v));
    }
    fn f64(&mut self, v: f64) {
        self.put(Number::from_f64(v).map_or(Value::Null, Value::Number));
    }
    fn str(&mut self, s: &str) {
        self.put(Value::String(s.to_string()));
    }
    fn begin_array(&mut self) {
        self.stack.push(Open::Array(Vec::new()));
    }
    fn end_array(&mut self) {
        if let Some(Open::Array(a)) = self.stack.pop() {
            self.put(Value::Array(a));
        }
    }
    fn begin_object(&mut self) {
        self.stack.push(Open::Object(Map::new(), String::new()));
    }
    fn key(&mut self, k: &str) {
        if let Some(Open::Object(_, key)) = self.stack.last_mut() {
            *key = k.to_string();
        }
    }
    fn end_object(&mut self) {
        if let Some(Open::Object(m, _)) = self.stack.pop() {
            self.put(Value::Object(m));
        }
    }
}

/// Writes compact JSON text, byte for byte what `serde_json::to_writer`
/// writes for the [`ValueSink`]'s value.
pub(crate) struct JsonSink<'o> {
    out: &'o mut Vec<u8>,
    /// Per open container: no element written yet.
    first: Vec<bool>,
    after_key: bool,
}

impl<'o> JsonSink<'o> {
    pub(crate) fn new(out: &'o mut Vec<u8>) -> Self {
        JsonSink {
            out,
            first: Vec::new(),
            after_key: false,
        }
    }

    fn comma(&mut self) {
        if let Some(f) = self.first.last_mut() {
            if !*f {
                self.out.push(b',');
            }
            *f = false;
        }
    }

    fn before_value(&mut self) {
        if self.after_key {
            self.after_key = false;
        } else {
            self.comma();
        }
    }

    fn scalar<T: serde::Serialize + ?Sized>(&mut self, v: &T) {
        self.before_value();
        // Writing to a Vec cannot fail, and every scalar given is valid JSON
        // (floats are finite).
        let _ = serde_json::to_writer(&mut *self.out, v);
    }
}

impl Sink for JsonSink<'_> {
    fn null(&mut self) {
        self.before_value();
        self.out.extend_from_slice(b"null");
    }
    fn bool(&mut self, b: bool) {
        self.scalar(&b);
    }
    fn u64(&mut self, v: u64) {
        self.scalar(&v);
    }
    fn i64(&mut self, v: i64) {
        self.scalar(&v);
    }
    fn f64(&mut self, v: f64) {
        self.scalar(&v);
    }
    fn str(&mut self, s: &str) {
        self.scalar(s);
    }
    fn begin_array(&mut self) {
        self.before_value();
        self.out.push(b'[');
        self.first.push(true);
    }
    fn end_array(&mut self) {
        self.first.pop();
        self.out.push(b']');
    }
    fn begin_object(&mut self) {
        self.before_value();
        self.out.push(b'{');
        self.first.push(true);
    }
    fn key(&mut self, k: &str) {
        self.comma();
        let _ = serde_json::to_writer(&mut *self.out, k);
        self.out.push(b':');
        self.after_key = true;
    }
    fn end_object(&mut self) {
        self.first.pop();
        self.out.push(b'}');
    }
}

/// An unsigned integer by the mapping: a number when it fits in 64 bits
/// (exact decimal digits), else a decimal string (a `u128` beyond
/// `u64::MAX`, which `serde_json::Value` cannot hold as a number).
fn unsigned<S: Sink>(sink: &mut S, v: u128) {
    match u64::try_from(v) {
        Ok(v) => sink.u64(v),
        Err(_) => sink.str(&v.to_string()),
    }
}

/// A signed integer by the mapping (see [`unsigned`]; negative numbers go
/// down to `i64::MIN`).
fn signed<S: Sink>(sink: &mut S, v: i128) {
    if v >= 0 {
        unsigned(sink, v as u128);
    } else {
        match i64::try_from(v) {
            Ok(v) => sink.i64(v),
            Err(_) => sink.str(&v.to_string()),
        }
    }
}

/// An f32 as the f64 of its shortest decimal form, so 9.81f32 is written
/// `9.81` and reads back as the same f32.
pub(crate) fn f32_as_f64(x: f32) -> f64 {
    let mut b = ryu::Buffer::new();
    b.format_finite(x).parse().unwrap_or(f64::from(x))
}

fn float<S: Sink>(sink: &mut S, x: f64) {
    if x.is_nan() {
        sink.str("NaN");
    } else if x.is_infinite() {
        sink.str(if x > 0.0 { "inf" } else { "-inf" });
    } else {
        sink.f64(x);
    }
}

pub(crate) struct Decoder<'d, 'n> {
    data: &'d [u8],
    budget: usize,
    path: Vec<Seg<'n>>,
}

impl<'d, 'n> Decoder<'d, 'n> {
    pub(crate) fn new(data: &'d [u8]) -> Self {
        Decoder {
            data,
            budget: MAX_VALUES,
            path: Vec::new(),
        }
    }

    /// Decode one value of `node` into `sink`, then require the end of the
    /// frame.
    pub(crate) fn frame<S: Sink>(
        &mut self,
        node: &'n Node,
        sink: &mut S,
    ) -> Result<(), DecodeError> {
        self.value(node, sink)?;
        if !self.data.is_empty() {
            return Err(self.err(DecodeProblem::TrailingBytes(self.data.len())));
        }
        Ok(())
    }

    fn err(&self, problem: DecodeProblem) -> DecodeError {
        DecodeError {
            path: path_string(&self.path),
            problem,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'d [u8], DecodeError> {
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

    /// A postcard varint of a `bits`-wide unsigned integer: at most
    /// ceil(bits / 7) bytes, and the last byte may not carry bits past the
    /// width (postcard's own rule).
    fn varint(&mut self, bits: u32) -> Result<u128, DecodeError> {
        let max_bytes = bits.div_ceil(7);
        let mut out: u128 = 0;
        for i in 0..max_bytes {
            let b = self.byte()?;
            out |= u128::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == max_bytes - 1 && bits % 7 != 0 && u32::from(b) >> (bits % 7) != 0 {
                    return Err(self.err(DecodeProblem::BadVarint));
                }
                return Ok(out);
            }
        }
        Err(self.err(DecodeProblem::BadVarint))
    }

    /// A length prefix (postcard's `usize` varint, read as 64 bits on every
    /// target).
    fn len(&mut self) -> Result<u64, DecodeError> {
        Ok(self.varint(64)? as u64)
    }

    fn spend(&mut self, n: usize) -> Result<(), DecodeError> {
        if n > self.budget {
            return Err(self.err(DecodeProblem::TooLarge));
        }
        self.budget -= n;
        Ok(())
    }

    fn capped(&self, n: u64, b: &Bounded, unit: &'static str) -> Result<usize, DecodeError> {
        if let Some(cap) = b.cap {
            if n > cap as u64 {
                return Err(self.err(DecodeProblem::OverCapacity {
                    len: n,
                    capacity: cap,
                    unit,
                    type_name: b.name.clone(),
                }));
            }
        }
        usize::try_from(n).map_err(|_| self.err(DecodeProblem::UnexpectedEnd))
    }

    /// `n` elements of at least `min` bytes each must fit in what is left.
    fn fits(&self, n: usize, min: usize) -> Result<(), DecodeError> {
        if min > 0 && n > self.data.len() / min {
            return Err(self.err(DecodeProblem::UnexpectedEnd));
        }
        Ok(())
    }

    fn text(&mut self, b: Option<&Bounded>) -> Result<&'d str, DecodeError> {
        let n = self.len()?;
        let n = match b {
            Some(b) => self.capped(n, b, "bytes")?,
            None => usize::try_from(n).map_err(|_| self.err(DecodeProblem::UnexpectedEnd))?,
        };
        let bytes = self.take(n)?;
        core::str::from_utf8(bytes).map_err(|_| self.err(DecodeProblem::BadUtf8))
    }

    pub(crate) fn value<S: Sink>(
        &mut self,
        node: &'n Node,
        sink: &mut S,
    ) -> Result<(), DecodeError> {
        self.spend(1)?;
        match node {
            Node::Bool => match self.byte()? {
                0 => sink.bool(false),
                1 => sink.bool(true),
                b => return Err(self.err(DecodeProblem::BadBool(b))),
            },
            Node::U8 => sink.u64(u64::from(self.byte()?)),
            Node::I8 => signed(sink, i128::from(self.byte()? as i8)),
            Node::Int {
                signed: s, bits, ..
            } => {
                let z = self.varint(*bits)?;
                if *s {
                    signed(sink, ((z >> 1) as i128) ^ -((z & 1) as i128));
                } else {
                    unsigned(sink, z);
                }
            }
            Node::F32 => {
                let b = self.take(4)?;
                let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if x.is_finite() {
                    sink.f64(f32_as_f64(x));
                } else {
                    float(sink, f64::from(x));
                }
            }
            Node::F64 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                float(sink, f64::from_le_bytes(a));
            }
            Node::Char => {
                let s = self.text(None)?;
                let mut cs = s.chars();
                if cs.next().is_none() || cs.next().is_some() {
                    return Err(self.err(DecodeProblem::BadChar));
                }
                sink.str(s);
            }
            Node::Str(b) => {
                let s = self.text(Some(b))?;
                sink.str(s);
            }
            Node::Bytes(b) => {
                let n = self.len()?;
                let n = self.capped(n, b, "bytes")?;
                let bytes = self.take(n)?;
                self.spend(n)?;
                sink.begin_array();
                for x in bytes {
                    sink.u64(u64::from(*x));
                }
                sink.end_array();
            }
            Node::Option(inner) => match self.byte()? {
                0 => sink.null(),
                1 if inner.nullable() => {
                    sink.begin_array();
                    self.value(inner, sink)?;
                    sink.end_array();
                }
                1 => self.value(inner, sink)?,
                b => return Err(self.err(DecodeProblem::BadOption(b))),
            },
            Node::Unit => sink.null(),
            Node::Newtype(inner) => self.value(inner, sink)?,
            Node::Seq(elem, b) => {
                let n = self.len()?;
                let n = self.capped(n, b, "elements")?;
                self.fits(n, elem.min_size())?;
                sink.begin_array();
                for i in 0..n {
                    self.path.push(Seg::Index(i));
                    self.value(elem, sink)?;
                    self.path.pop();
                }
                sink.end_array();
            }
            Node::Tuple(items) => self.tuple(items, sink)?,
            Node::Map(key, val, b) => {
                let n = self.len()?;
                let n = self.capped(n, b, "entries")?;
                self.fits(n, key.min_size().saturating_add(val.min_size()))?;
                let mut seen = HashSet::new();
                sink.begin_object();
                for i in 0..n {
                    self.path.push(Seg::Index(i));
                    let mut k = ValueSink::default();
                    self.value(key, &mut k)?;
                    let text = key_text(key, k.finish());
                    self.path.pop();
                    self.path.push(Seg::MapKey(text.clone()));
                    if !seen.insert(text.clone()) {
                        return Err(self.err(DecodeProblem::DuplicateKey(text)));
                    }
                    sink.key(&text);
                    self.value(val, sink)?;
                    self.path.pop();
                }
                sink.end_object();
            }
            Node::Struct(fields) => self.fields(fields, sink)?,
            Node::Enum(vars) => {
                let d = self.varint(32)?;
                let Some(var) = usize::try_from(d).ok().and_then(|i| vars.get(i)) else {
                    return Err(self.err(DecodeProblem::BadVariant(d as u64)));
                };
                if var.kind == VariantKind::Unit {
                    sink.str(&var.name);
                } else {
                    sink.begin_object();
                    sink.key(&var.name);
                    self.path.push(Seg::Key(&var.name));
                    match &var.kind {
                        VariantKind::Unit => sink.null(),
                        VariantKind::Newtype(n) => self.value(n, sink)?,
                        VariantKind::Tuple(items) => self.tuple(items, sink)?,
                        VariantKind::Struct(fields) => self.fields(fields, sink)?,
                    }
                    self.path.pop();
                    sink.end_object();
                }
            }
        }
        Ok(())
    }

    fn tuple<S: Sink>(&mut self, items: &'n [Node], sink: &mut S) -> Result<(), DecodeError> {
        sink.begin_array();
        for (i, t) in items.iter().enumerate() {
            self.path.push(Seg::Index(i));
            self.value(t, sink)?;
            self.path.pop();
        }
        sink.end_array();
        Ok(())
    }

    fn fields<S: Sink>(&mut self, fields: &'n [Field], sink: &mut S) -> Result<(), DecodeError> {
        sink.begin_object();
        for f in fields {
            sink.key(&f.name);
            self.path.push(Seg::Key(&f.name));
            self.value(&f.node, sink)?;
            self.path.pop();
        }
        sink.end_object();
        Ok(())
    }
}

/// The JSON object key of a map key: strings and chars as they are,
/// integers in decimal, anything else as its compact JSON text.
pub(crate) fn key_text(key: &Node, v: Value) -> String {
    if key.textual_key() {
        match v {
            Value::String(s) => s,
            other => other.to_string(),
        }
    } else {
        v.to_string()
    }
}
