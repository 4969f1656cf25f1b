//! JSON to frame bytes, with every check a typed subscriber would make:
//! integer ranges, f32 range, capacities, lengths of fixed arrays.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::MAX_VALUES;
use crate::error::{EncodeError, EncodeProblem, Seg, path_string, quote_short, value_short};
use crate::node::{Bounded, Field, Node, Variant, VariantKind};

/// 2^53: every integer below it is exact as an f64. A JSON number with a
/// fraction or exponent (`5.0`, `1e3`) is parsed as an f64, so from this
/// on it may already have been rounded (2^53 + 1 reads as 2^53).
const EXACT_F64_INTEGER: f64 = 9007199254740992.0;

pub(crate) struct Encoder<'n> {
    pub out: Vec<u8>,
    path: Vec<Seg<'n>>,
    /// JSON values the frame may still produce when decoded: counted as
    /// the decoder counts them (one per value, one more per byte of a byte
    /// array, one per left-out `Option` field), so the codec never
    /// publishes a frame that its own readers refuse as too large.
    budget: usize,
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

impl<'n> Encoder<'n> {
    pub(crate) fn new() -> Self {
        Encoder {
            out: Vec::new(),
            path: Vec::new(),
            budget: MAX_VALUES,
        }
    }

    fn spend(&mut self) -> Result<(), EncodeError> {
        if self.budget == 0 {
            return Err(self.err(EncodeProblem::TooManyValues));
        }
        self.budget -= 1;
        Ok(())
    }

    fn err(&self, problem: EncodeProblem) -> EncodeError {
        EncodeError {
            path: path_string(&self.path),
            problem,
        }
    }

    fn expected(&self, what: &str, v: &Value) -> EncodeError {
        self.err(EncodeProblem::Expected {
            expected: what.to_string(),
            found: kind(v),
        })
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

    /// An integer as sign, magnitude and whether it is exact: a JSON
    /// number that is an integer, or a decimal string (`-?[0-9]+`, the form
    /// used beyond 64 bits). A number beyond 2^53 written with a point or
    /// an exponent was read as an f64 and may have been rounded: not exact.
    fn integer(
        &self,
        v: &Value,
        type_name: &'static str,
    ) -> Result<(bool, u128, bool), EncodeError> {
        let out_of_range = || {
            self.err(EncodeProblem::IntOutOfRange {
                value: value_short(v),
                type_name,
            })
        };
        match v {
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Ok((false, u128::from(u), true))
                } else if let Some(i) = n.as_i64() {
                    Ok((i < 0, u128::from(i.unsigned_abs()), true))
                } else {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    if f.fract() != 0.0 || !f.is_finite() {
                        Err(self.err(EncodeProblem::Expected {
                            expected: format!("an integer ({type_name})"),
                            found: "a number with a fraction",
                        }))
                    } else {
                        // `as` saturates: beyond u128 stays out of every range.
                        // 2^53 itself is where 2^53 + 1 rounds to.
                        let exact = f.abs() < EXACT_F64_INTEGER;
                        Ok((f < 0.0, f.abs() as u128, exact))
                    }
                }
            }
            Value::String(s) => {
                let (neg, digits) = match s.strip_prefix('-') {
                    Some(d) => (true, d),
                    None => (false, s.as_str()),
                };
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(self.err(EncodeProblem::Expected {
                        expected: format!("an integer ({type_name}): a number or a decimal string"),
                        found: "a string that is not a decimal integer",
                    }));
                }
                let m = digits.parse::<u128>().map_err(|_| out_of_range())?;
                Ok((neg && m != 0, m, true))
            }
            other => Err(self.expected(&format!("an integer ({type_name})"), other)),
        }
    }

    /// Out of range first (a rounded number beyond the range is beyond it
    /// whatever the rounding), then exact.
    fn in_range(
        &self,
        v: &Value,
        fits: bool,
        exact: bool,
        type_name: &'static str,
    ) -> Result<(), EncodeError> {
        if !fits {
            return Err(self.err(EncodeProblem::IntOutOfRange {
                value: value_short(v),
                type_name,
            }));
        }
        if !exact {
            // Past 64 bits even a number written with all its digits was
            // read as a double: serde_json's `Value` has no wider integer.
            // (-2^63 itself as digits is an `i64`, never on this path.)
            let beyond_64_bits = v.as_f64().is_some_and(|f| {
                f >= 18_446_744_073_709_551_616.0 || f <= -9_223_372_036_854_775_808.0
            });
            return Err(self.err(EncodeProblem::InexactInteger {
                value: value_short(v),
                type_name,
                beyond_64_bits,
            }));
        }
        Ok(())
    }

    fn unsigned(&self, v: &Value, bits: u32, type_name: &'static str) -> Result<u128, EncodeError> {
        let (neg, m, exact) = self.integer(v, type_name)?;
        let max = if bits >= 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        self.in_range(v, !neg && m <= max, exact, type_name)?;
        Ok(m)
    }

    fn signed(&self, v: &Value, bits: u32, type_name: &'static str) -> Result<i128, EncodeError> {
        let (neg, m, exact) = self.integer(v, type_name)?;
        let limit = 1u128 << (bits - 1);
        let fits = !((neg && m > limit) || (!neg && m >= limit));
        self.in_range(v, fits, exact, type_name)?;
        Ok(if neg {
            (m as i128).wrapping_neg()
        } else {
            m as i128
        })
    }

    fn float(&self, v: &Value) -> Result<f64, EncodeError> {
        match v {
            Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) if s == "NaN" => Ok(f64::NAN),
            Value::String(s) if s == "inf" => Ok(f64::INFINITY),
            Value::String(s) if s == "-inf" => Ok(f64::NEG_INFINITY),
            other => Err(self.expected("a number, \"NaN\", \"inf\" or \"-inf\"", other)),
        }
    }

    fn check_cap(&self, len: usize, b: &Bounded, unit: &'static str) -> Result<(), EncodeError> {
        match b.cap {
            Some(cap) if len > cap => Err(self.err(EncodeProblem::OverCapacity {
                len,
                capacity: cap,
                unit,
                type_name: b.name.clone(),
            })),
            _ => Ok(()),
        }
    }

    fn array<'v>(&self, v: &'v Value) -> Result<&'v Vec<Value>, EncodeError> {
        v.as_array().ok_or_else(|| self.expected("an array", v))
    }

    fn object<'v>(&self, v: &'v Value) -> Result<&'v Map<String, Value>, EncodeError> {
        v.as_object().ok_or_else(|| self.expected("an object", v))
    }

    pub(crate) fn value(&mut self, node: &'n Node, v: &Value) -> Result<(), EncodeError> {
        self.spend()?;
        match node {
            Node::Bool => {
                let b = v
                    .as_bool()
                    .ok_or_else(|| self.expected("true or false", v))?;
                self.out.push(u8::from(b));
            }
            Node::U8 => {
                let x = self.unsigned(v, 8, "u8")?;
                self.out.push(x as u8);
            }
            Node::I8 => {
                let x = self.signed(v, 8, "i8")?;
                self.out.push(x as i8 as u8);
            }
            Node::Int {
                signed: false,
                bits,
                name,
            } => {
                let x = self.unsigned(v, *bits, name)?;
                self.varint(x);
            }
            Node::Int {
                signed: true,
                bits,
                name,
            } => {
                let x = self.signed(v, *bits, name)?;
                self.varint(((x << 1) ^ (x >> 127)) as u128);
            }
            Node::F32 => {
                let x = self.float(v)?;
                let f = to_f32(x);
                if x.is_finite() && !f.is_finite() {
                    return Err(self.err(EncodeProblem::FloatOutOfRange {
                        value: v.to_string(),
                    }));
                }
                self.out.extend_from_slice(&f.to_le_bytes());
            }
            Node::F64 => {
                let x = self.float(v)?;
                self.out.extend_from_slice(&x.to_le_bytes());
            }
            Node::Char => {
                let s = v
                    .as_str()
                    .ok_or_else(|| self.expected("a one-character string", v))?;
                if s.chars().count() != 1 {
                    return Err(self.err(EncodeProblem::Expected {
                        expected: "a one-character string".into(),
                        found: "a string of another length",
                    }));
                }
                self.bytes(s.as_bytes());
            }
            Node::Str(b) => {
                let s = v.as_str().ok_or_else(|| self.expected("a string", v))?;
                self.check_cap(s.len(), b, "bytes")?;
                self.bytes(s.as_bytes());
            }
            Node::Bytes(b) => {
                let a = self.array(v)?;
                self.check_cap(a.len(), b, "bytes")?;
                self.varint(a.len() as u128);
                for (i, x) in a.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    self.value(&Node::U8, x)?;
                    self.path.pop();
                }
            }
            Node::Option(inner) => {
                if v.is_null() {
                    self.out.push(0);
                } else if inner.nullable() {
                    // `Some(x)` of a type that can be null is `[x]`.
                    let a = self.array(v)?;
                    if a.len() != 1 {
                        return Err(self.err(EncodeProblem::Expected {
                            expected: "null or a one-element array [value]".into(),
                            found: "an array of another length",
                        }));
                    }
                    self.out.push(1);
                    self.value(inner, &a[0])?;
                } else {
                    self.out.push(1);
                    self.value(inner, v)?;
                }
            }
            Node::Unit => {
                if !v.is_null() {
                    return Err(self.expected("null", v));
                }
            }
            Node::Newtype(inner) => self.value(inner, v)?,
            Node::Seq(elem, b) => {
                let a = self.array(v)?;
                self.check_cap(a.len(), b, "elements")?;
                self.varint(a.len() as u128);
                for (i, x) in a.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    self.value(elem, x)?;
                    self.path.pop();
                }
            }
            Node::Tuple(items) => self.tuple(items, v)?,
            Node::Map(key, val, b) => {
                let m = self.object(v)?;
                self.check_cap(m.len(), b, "entries")?;
                self.varint(m.len() as u128);
                // Two JSON keys can be one key of the type (`"7"` and
                // `"007"` for an integer, `"[1,2]"` and `"[1, 2]"`): a frame
                // holding it twice has no JSON form, and the decoder refuses
                // it. Compare the keys' encodings.
                let mut seen: HashMap<Vec<u8>, &String> = HashMap::with_capacity(m.len());
                for (k, x) in m {
                    self.path.push(Seg::MapKey(k.clone()));
                    let kv = if key.textual_key() {
                        Value::String(k.clone())
                    } else {
                        serde_json::from_str(k).map_err(|_| {
                            self.err(EncodeProblem::BadMapKey(
                                "keys of this type are written as JSON text".into(),
                            ))
                        })?
                    };
                    let start = self.out.len();
                    self.value(key, &kv)?;
                    if let Some(first) = seen.insert(self.out[start..].to_vec(), k) {
                        return Err(self.err(EncodeProblem::BadMapKey(format!(
                            "the same key as {}",
                            quote_short(first)
                        ))));
                    }
                    self.value(val, x)?;
                    self.path.pop();
                }
            }
            Node::Struct(fields) => self.fields(fields, v)?,
            Node::Enum(vars) => self.variant(vars, v)?,
        }
        Ok(())
    }

    fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u128);
        self.out.extend_from_slice(b);
    }

    fn tuple(&mut self, items: &'n [Node], v: &Value) -> Result<(), EncodeError> {
        let a = self.array(v)?;
        if a.len() != items.len() {
            return Err(self.err(EncodeProblem::WrongLength {
                expected: items.len(),
                found: a.len(),
            }));
        }
        for (i, (t, x)) in items.iter().zip(a).enumerate() {
            self.path.push(Seg::Index(i));
            self.value(t, x)?;
            self.path.pop();
        }
        Ok(())
    }

    fn fields(&mut self, fields: &'n [Field], v: &Value) -> Result<(), EncodeError> {
        let m = self.object(v)?;
        if let Some(extra) = m.keys().find(|k| !fields.iter().any(|f| &f.name == *k)) {
            return Err(self.err(EncodeProblem::UnknownField {
                name: extra.clone(),
                fields: fields.iter().map(|f| f.name.clone()).collect(),
            }));
        }
        for f in fields {
            match m.get(&f.name) {
                Some(x) => {
                    self.path.push(Seg::Key(&f.name));
                    self.value(&f.node, x)?;
                    self.path.pop();
                }
                // A missing Option field is None.
                None if matches!(f.node, Node::Option(_)) => {
                    self.path.push(Seg::Key(&f.name));
                    self.spend()?;
                    self.path.pop();
                    self.out.push(0);
                }
                None => return Err(self.err(EncodeProblem::MissingField(f.name.clone()))),
            }
        }
        Ok(())
    }

    fn variant(&mut self, vars: &'n [Variant], v: &Value) -> Result<(), EncodeError> {
        let (name, inner) = match v {
            Value::String(s) => (s.as_str(), None),
            Value::Object(m) if m.len() == 1 => match m.iter().next() {
                Some((k, x)) => (k.as_str(), Some(x)),
                None => return Err(self.expected("\"Variant\" or {\"Variant\": value}", v)),
            },
            other => {
                return Err(self.expected("\"Variant\" or {\"Variant\": value}", other));
            }
        };
        let Some((idx, var)) = vars.iter().enumerate().find(|(_, x)| x.name == name) else {
            return Err(self.err(EncodeProblem::UnknownVariant {
                name: name.to_string(),
                variants: vars.iter().map(|x| x.name.clone()).collect(),
            }));
        };
        self.varint(idx as u128);
        self.path.push(Seg::Key(&var.name));
        match (&var.kind, inner) {
            (VariantKind::Unit, None | Some(Value::Null)) => {}
            (VariantKind::Unit, Some(x)) => return Err(self.expected("null (a unit variant)", x)),
            (_, None) => {
                return Err(self.err(EncodeProblem::Expected {
                    expected: format!("{{\"{name}\": value}} (the variant holds data)"),
                    found: "the variant's name alone",
                }));
            }
            (VariantKind::Newtype(n), Some(x)) => self.value(n, x)?,
            (VariantKind::Tuple(items), Some(x)) => self.tuple(items, x)?,
            (VariantKind::Struct(fields), Some(x)) => self.fields(fields, x)?,
        }
        self.path.pop();
        Ok(())
    }
}

/// The f32 nearest to the decimal number `x` stands for. `x as f32`
/// would round twice (decimal to f64, f64 to f32) and can miss by one ulp:
/// the shortest decimal of 0x15ae43fd, read as an f64 and cast, is
/// 0x15ae43fe. Reading the f64's shortest decimal as an f32 rounds once.
fn to_f32(x: f64) -> f32 {
    if !x.is_finite() {
        return x as f32;
    }
    let mut b = ryu::Buffer::new();
    b.format_finite(x).parse().unwrap_or(x as f32)
}

/// A value of the right shape for `node`: zeros, empty strings and lists,
/// `null` options, the first variant of enums.
pub(crate) fn example(node: &Node) -> Value {
    let obj = |fields: &[Field]| {
        Value::Object(
            fields
                .iter()
                .map(|f| (f.name.clone(), example(&f.node)))
                .collect(),
        )
    };
    match node {
        Node::Bool => Value::Bool(false),
        Node::U8 | Node::I8 | Node::Int { .. } => Value::from(0),
        Node::F32 | Node::F64 => Value::from(0.0),
        Node::Char => Value::from(" "),
        Node::Str(_) => Value::from(""),
        Node::Bytes(_) | Node::Seq(..) => Value::Array(Vec::new()),
        Node::Option(_) | Node::Unit => Value::Null,
        Node::Newtype(n) => example(n),
        Node::Tuple(items) => Value::Array(items.iter().map(example).collect()),
        Node::Map(..) => Value::Object(Map::new()),
        Node::Struct(fields) => obj(fields),
        Node::Enum(vars) => match vars.first() {
            None => Value::Null,
            Some(v) => {
                let inner = match &v.kind {
                    VariantKind::Unit => return Value::from(v.name.clone()),
                    VariantKind::Newtype(n) => example(n),
                    VariantKind::Tuple(items) => Value::Array(items.iter().map(example).collect()),
                    VariantKind::Struct(fields) => obj(fields),
                };
                let mut m = Map::new();
                m.insert(v.name.clone(), inner);
                Value::Object(m)
            }
        },
    }
}
