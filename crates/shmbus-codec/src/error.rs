//! Errors of the codec, each naming where in the value it happened.
//!
//! A path is written like jq's: `.field`, `[index]`, `.Variant` for the
//! variant's key in `{"Variant": ...}`, and `["key"]` for a map entry or a
//! field whose name is not an identifier. The top level is the empty path.

use core::fmt;
use shmbus_core::plural::{Amount, count};
use shmbus_core::topic::{long_head, shown};

/// One step of a path into a value.
#[derive(Debug, Clone)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
    MapKey(String),
}

/// Format a path (see the module doc).
pub(crate) fn path_string(path: &[Seg<'_>]) -> String {
    let mut s = String::new();
    for p in path {
        match p {
            Seg::Key(k) if is_ident(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Key(k) => {
                s.push('[');
                s.push_str(&quote_short(k));
                s.push(']');
            }
            Seg::Index(i) => {
                s.push('[');
                s.push_str(&i.to_string());
                s.push(']');
            }
            Seg::MapKey(k) => {
                s.push('[');
                s.push_str(&quote_short(k));
                s.push(']');
            }
        }
    }
    s
}

/// One step of a schema path to a field or variant named `name`: `.name`
/// for an identifier, else `["name"]` quoted and cut as [`quote_short`]
/// does (a name from a segment's schema may hold control characters or be
/// megabytes long, and the path ends up in error messages).
pub(crate) fn name_seg(name: &str) -> String {
    if is_ident(name) {
        format!(".{name}")
    } else {
        format!("[{}]", quote_short(name))
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`
pub(crate) fn is_ident(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// [`quote`] for an error message: a string of more than 64 characters
/// (a field name or map key from the input, which may be megabytes) is
/// cut to its first 40, with its length in bytes after the literal, so an
/// error stays one short line (the bus-wide rule,
/// [`shmbus_core::topic::long_head`]).
pub(crate) fn quote_short(s: &str) -> String {
    match long_head(s) {
        None => quote(s),
        Some(head) => {
            let q = quote(head);
            format!("{}...\" ({} bytes)", &q[..q.len() - 1], s.len())
        }
    }
}

/// An identifier from the input as an error message shows it: cut as
/// [`quote_short`] cuts (identifiers hold no control characters).
pub(crate) fn clip(s: &str) -> String {
    match long_head(s) {
        None => s.to_string(),
        Some(head) => format!("{head}... ({} bytes)", s.len()),
    }
}

/// `s` as a JSON string literal (control characters escaped).
pub(crate) fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"?\""))
}

/// Why a frame did not decode with its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Where in the value (see the module doc); empty at the top level.
    pub path: String,
    /// What was wrong.
    pub problem: DecodeProblem,
}

/// The kind of [`DecodeError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeProblem {
    /// The frame ends in the middle of a value.
    UnexpectedEnd,
    /// A varint is longer than its type allows or its value does not fit.
    BadVarint,
    /// A bool byte other than 0 or 1.
    BadBool(u8),
    /// An Option tag other than 0 or 1.
    BadOption(u8),
    /// A string that is not UTF-8.
    BadUtf8,
    /// A char whose bytes are not exactly one UTF-8 character.
    BadChar,
    /// An enum discriminant past the last variant.
    BadVariant(u64),
    /// A string, byte array, sequence or map longer than its declared
    /// capacity (the `N` of `heapless::String<N>`, ...).
    OverCapacity {
        /// Bytes (strings, byte arrays), elements or entries.
        len: u64,
        /// The declared capacity.
        capacity: usize,
        /// "bytes", "elements" or "entries".
        unit: &'static str,
        /// The schema name that declares it.
        type_name: String,
    },
    /// A map holds the same key twice (JSON objects cannot).
    DuplicateKey(String),
    /// The value ended before the frame did: the frame's length and its
    /// content disagree.
    TrailingBytes(usize),
    /// The frame would produce more than [`crate::MAX_VALUES`] JSON values.
    TooLarge,
}

/// `3 bytes exceed heapless::String<2> (at most 2 bytes)`, counted right
/// for one: `unit` is the plural the problems carry ("bytes", "elements",
/// "entries").
fn over_capacity(
    f: &mut fmt::Formatter<'_>,
    len: impl Amount,
    capacity: usize,
    unit: &str,
    type_name: &str,
) -> fmt::Result {
    let one = match unit {
        "bytes" => "byte",
        "elements" => "element",
        "entries" => "entry",
        other => other,
    };
    let verb = if len.amount() == 1 {
        "exceeds"
    } else {
        "exceed"
    };
    write!(
        f,
        "{} {verb} {} (at most {})",
        count(len, one),
        shown(type_name),
        count(capacity, one)
    )
}

impl fmt::Display for DecodeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeProblem::UnexpectedEnd => write!(f, "the frame ends inside a value"),
            DecodeProblem::BadVarint => write!(f, "invalid varint"),
            DecodeProblem::BadBool(b) => write!(f, "bool byte {b} is neither 0 nor 1"),
            DecodeProblem::BadOption(b) => write!(f, "option tag {b} is neither 0 nor 1"),
            DecodeProblem::BadUtf8 => write!(f, "string is not UTF-8"),
            DecodeProblem::BadChar => write!(f, "char is not one UTF-8 character"),
            DecodeProblem::BadVariant(v) => write!(f, "no enum variant {v}"),
            DecodeProblem::OverCapacity {
                len,
                capacity,
                unit,
                type_name,
            } => over_capacity(f, *len, *capacity, unit, type_name),
            DecodeProblem::DuplicateKey(k) => write!(f, "map key {} appears twice", quote_short(k)),
            DecodeProblem::TrailingBytes(n) => {
                write!(f, "{} left over after the value", count(*n, "byte"))
            }
            DecodeProblem::TooLarge => {
                write!(f, "more than {} values in one frame", crate::MAX_VALUES)
            }
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.path, self.problem)
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a JSON value could not be encoded as a frame of the schema.
///
/// Its `Display` is `path: problem`, e.g.
/// `.zones[3].name: 100 bytes exceed heapless::String<16>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError {
    /// Where in the value (see the module doc); empty at the top level.
    pub path: String,
    /// What was wrong.
    pub problem: EncodeProblem,
}

/// The kind of [`EncodeError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeProblem {
    /// The JSON has the wrong kind of value here.
    Expected {
        /// What the schema wants, in words (`"an integer"`).
        expected: String,
        /// What the JSON has (`"a string"`).
        found: &'static str,
    },
    /// An integer outside its type's range.
    IntOutOfRange {
        /// The value as given; a decimal string over 64 characters is
        /// cut to its first 40 and its length, as every name is.
        value: String,
        /// The Rust type (`u8`, `i64`...).
        type_name: &'static str,
    },
    /// An integer within its type's range but beyond 2^53 written with a
    /// point or an exponent (`1e16`, `9007199254740993.0`): JSON parsers
    /// read such a number as a double, which may already have rounded it.
    InexactInteger {
        /// The value as read.
        value: String,
        /// The Rust type (`u64`, `i64`...).
        type_name: &'static str,
        /// Outside the 64-bit range (a `u128`/`i128`): a JSON number there
        /// is read as a double however it is written, so only a decimal
        /// string is exact.
        beyond_64_bits: bool,
    },
    /// The value has more JSON values than a frame may produce
    /// ([`crate::MAX_VALUES`], counted as decoding counts them): its frame
    /// could be published but no codec reader could show it.
    TooManyValues,
    /// A finite number too large for an f32 (it would become infinite).
    FloatOutOfRange {
        /// The value as given.
        value: String,
    },
    /// A string/byte array/sequence/map longer than its capacity.
    OverCapacity {
        /// Bytes (strings: UTF-8 bytes), elements or entries given.
        len: usize,
        /// The declared capacity.
        capacity: usize,
        /// "bytes", "elements" or "entries".
        unit: &'static str,
        /// The schema name that declares it (`heapless::String<16>`).
        type_name: String,
    },
    /// A fixed-size array or tuple with the wrong number of elements.
    WrongLength {
        /// Elements the type has.
        expected: usize,
        /// Elements given.
        found: usize,
    },
    /// A struct field is missing (Option fields may be left out: `None`).
    MissingField(String),
    /// The object has a field the struct does not.
    UnknownField {
        /// The field given.
        name: String,
        /// The fields the struct has.
        fields: Vec<String>,
    },
    /// No variant of that name.
    UnknownVariant {
        /// The variant given.
        name: String,
        /// The variants the enum has.
        variants: Vec<String>,
    },
    /// A map key that does not read as the key type.
    BadMapKey(String),
    /// The frame is longer than the topic's frame capacity (checked after
    /// every field is valid).
    FrameTooLarge {
        /// Encoded length, bytes.
        len: usize,
        /// The topic's frame capacity, bytes.
        capacity: usize,
    },
}

/// How long the list of a struct's fields or an enum's variants in an
/// error may grow before the rest are only counted.
const LIST_BYTES: usize = 160;

/// The names of a schema's fields or variants as a message lists them:
/// each escaped and cut as [`shown`] does, as many as fit in about
/// [`LIST_BYTES`] (at least one), then the count of the rest. The names
/// come from the schema, which a segment's creator chose (up to
/// `MAX_SCHEMA_LEN` bytes of them).
fn list(names: &[String]) -> String {
    let mut s = String::new();
    for (i, n) in names.iter().enumerate() {
        let n = shown(n);
        if i > 0 && s.len() + n.len() > LIST_BYTES {
            s.push_str(&format!(" and {} more", names.len() - i));
            break;
        }
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&n);
    }
    s
}

/// A JSON value from the input as a message quotes it: a string quoted
/// and cut as [`quote_short`] cuts it, anything else as its JSON text (a
/// number, the only other kind quoted, is short).
pub(crate) fn value_short(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => quote_short(s),
        other => other.to_string(),
    }
}

impl fmt::Display for EncodeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeProblem::Expected { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            EncodeProblem::IntOutOfRange { value, type_name } => {
                write!(f, "{value} does not fit in {type_name}")
            }
            EncodeProblem::InexactInteger {
                value,
                type_name,
                beyond_64_bits: false,
            } => write!(
                f,
                "{value} may have been rounded (beyond 2^53, written with a point or an exponent); write this {type_name} with all its digits, or as a decimal string"
            ),
            EncodeProblem::InexactInteger {
                value,
                type_name,
                beyond_64_bits: true,
            } => write!(
                f,
                "{value} may have been rounded (a JSON number beyond 64 bits is read as a double, whatever its digits); write this {type_name} as a decimal string, e.g. \"18446744073709551616\""
            ),
            EncodeProblem::TooManyValues => write!(
                f,
                "the value holds more than {} JSON values (each element, field and byte counts), more than a frame may hold",
                crate::MAX_VALUES
            ),
            EncodeProblem::FloatOutOfRange { value } => write!(
                f,
                "{value} does not fit in f32 (largest {:e}); write \"inf\" for infinity",
                f32::MAX
            ),
            EncodeProblem::OverCapacity {
                len,
                capacity,
                unit,
                type_name,
            } => over_capacity(f, *len, *capacity, unit, type_name),
            EncodeProblem::WrongLength { expected, found } => {
                write!(f, "expected {}, found {found}", count(*expected, "element"))
            }
            EncodeProblem::MissingField(name) => write!(f, "missing field {}", quote_short(name)),
            EncodeProblem::UnknownField { name, fields } => write!(
                f,
                "unknown field {}; the fields are {}",
                quote_short(name),
                list(fields)
            ),
            EncodeProblem::UnknownVariant { name, variants } => write!(
                f,
                "no variant {}; the variants are {}",
                quote_short(name),
                list(variants)
            ),
            EncodeProblem::BadMapKey(why) => write!(f, "bad map key: {why}"),
            EncodeProblem::FrameTooLarge { len, capacity } => write!(
                f,
                "the frame would be {len} bytes; the topic's frame capacity is {capacity}"
            ),
        }
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.path, self.problem)
        }
    }
}

impl std::error::Error for EncodeError {}

/// Why a schema cannot be used by the codec.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaError {
    /// The schema bytes are not a postcard `OwnedNamedType` within the
    /// limits of `shmbus_core::schema::decode_schema`.
    Malformed,
    /// Nesting deeper than `shmbus_core::schema::MAX_SCHEMA_DEPTH`.
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// Two fields of a struct or two variants of an enum share a name: the
    /// JSON object would lose one.
    DuplicateName {
        /// Where.
        path: String,
        /// The repeated name.
        name: String,
    },
    /// A type frames cannot hold as JSON.
    Unsupported {
        /// Where.
        path: String,
        /// What.
        what: &'static str,
    },
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaError::Malformed => write!(f, "the schema bytes are not a valid schema"),
            SchemaError::TooDeep { max } => {
                write!(f, "the schema nests deeper than {max} levels")
            }
            SchemaError::DuplicateName { path, name } => {
                write!(
                    f,
                    "the schema has two entries named {} at {path}",
                    quote_short(name)
                )
            }
            SchemaError::Unsupported { path, what } => {
                write!(
                    f,
                    "the schema holds {what} at {path}, which has no JSON form"
                )
            }
        }
    }
}

impl std::error::Error for SchemaError {}
