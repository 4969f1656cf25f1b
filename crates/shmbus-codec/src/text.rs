//! A schema as Rust-like declaration text, and back.
//!
//! [`render`] prints any `OwnedNamedType`; [`parse`] reads that text (or
//! text written by hand in the same language) back into the same
//! `OwnedNamedType`: `parse(&render(t)) == t` for every schema, so the
//! schema bytes and the fingerprint are the same too.
//!
//! ```text
//! struct Thermal {
//!     t_ns: u64,
//!     temps: heapless::Vec<struct Temp {
//!         name: heapless::String<24>,
//!         milli_c: i32,
//!     }, 16>,
//! }
//! ```
//!
//! ## The language
//! | text | schema node (type, name) |
//! | --- | --- |
//! | `bool` `u8` `i8` `u16` `i16` `u32` `i32` `u64` `i64` `u128` `i128` `usize` `isize` `f32` `f64` `char` | that primitive, named as written |
//! | `()` | Unit, `()` |
//! | `String`, `str` | String, named as written |
//! | `heapless::String<16>` | String, `heapless::String<16>` (capacity 16 bytes; `<N>`: none declared) |
//! | `bytes` | ByteArray, `bytes` |
//! | `Option<T>` | Option, `Option<T>` |
//! | `Vec<T>`, `[T]`, `HashSet<T>`, `BTreeSet<T>` | Seq, `Vec<T>` / `[T]` / `HashSet<K>` / `BTreeSet<K>` |
//! | `heapless::Vec<T, 16>` | Seq, `heapless::Vec<T, 16>` (capacity 16 elements) |
//! | `BTreeMap<K, V>`, `HashMap<K, V>` | Map, `BTreeMap<K, V>` / `HashMap<K, V>` |
//! | `[T; 3]` | Tuple of 3 T, `[T; N]` |
//! | `(A,)`, `(A, B)` ... up to 6 | Tuple, `(A,)`, `(A, B,)` ... |
//! | `struct Name`, `struct Name(T)`, `struct Name(A, B)`, `struct Name { f: T }` | UnitStruct, NewtypeStruct, TupleStruct (`struct Name(T,)` for one element), Struct |
//! | `enum Name { A, B(T), C(T, U), D { f: T } }` | Enum with unit, newtype, tuple (`C(T,)` for one element) and struct variants |
//! | `Schema` | an embedded schema, `OwnedNamedType` |
//! | any form above, then `as "other name"` | the same node with that name |
//!
//! Names (of structs, enums, fields, variants) are identifiers or JSON
//! string literals (`struct "Range<T>" { ... }`). Whitespace is free,
//! trailing commas are allowed, `//` starts a comment to the end of the
//! line. The printer writes a name with `as "..."` only where it differs
//! from the form's own name (`u8 as "NonZeroU8"`).

use core::fmt;

use postcard_schema::schema::owned::{
    OwnedDataModelType as D, OwnedDataModelVariant as V, OwnedNamedType, OwnedNamedValue,
    OwnedNamedVariant,
};
use shmbus_core::layout::MAX_SCHEMA_LEN;
use shmbus_core::schema::MAX_SCHEMA_DEPTH;

use crate::error::{clip, is_ident, quote, quote_short};

const PRIMS: &[(&str, D)] = &[
    ("bool", D::Bool),
    ("u8", D::U8),
    ("i8", D::I8),
    ("u16", D::U16),
    ("i16", D::I16),
    ("u32", D::U32),
    ("i32", D::I32),
    ("u64", D::U64),
    ("i64", D::I64),
    ("u128", D::U128),
    ("i128", D::I128),
    ("usize", D::Usize),
    ("isize", D::Isize),
    ("f32", D::F32),
    ("f64", D::F64),
    ("char", D::Char),
];

const TUPLE_NAMES: [&str; 7] = [
    "",
    "(A,)",
    "(A, B,)",
    "(A, B, C,)",
    "(A, B, C, D,)",
    "(A, B, C, D, E,)",
    "(A, B, C, D, E, F,)",
];

const SEQ_FORMS: &[(&str, &str)] = &[
    ("Vec", "Vec<T>"),
    ("HashSet", "HashSet<K>"),
    ("BTreeSet", "BTreeSet<K>"),
];

const MAP_FORMS: &[(&str, &str)] = &[("BTreeMap", "BTreeMap<K, V>"), ("HashMap", "HashMap<K, V>")];

const HEAPLESS_STRING: &str = "heapless::String<";
const HEAPLESS_VEC: &str = "heapless::Vec<T, ";

/// The message for a type name the language does not have, with a fix
/// that parses: a Rust path to a form the language has
/// (`std::string::String`, `core::option::Option`) is written by its last
/// name (it was told to declare `struct std::string::String { .. }`, which
/// no struct name can be); a `Box<T>`, `Rc<T>` or `Arc<T>` is its `T` on
/// the wire; any other name is a struct or enum declared in place, under
/// its last name.
fn unknown_type(id: &str) -> String {
    let last = id.rsplit("::").next().filter(|l| is_ident(l));
    let known = |n: &str| {
        PRIMS.iter().any(|(k, _)| *k == n)
            || SEQ_FORMS.iter().any(|(k, _)| *k == n)
            || MAP_FORMS.iter().any(|(k, _)| *k == n)
            || matches!(n, "String" | "str" | "bytes" | "Option")
    };
    match last {
        Some(l @ ("String" | "Vec")) if id.starts_with("heapless::") => {
            let form = if l == "String" {
                "heapless::String<N>"
            } else {
                "heapless::Vec<T, N>"
            };
            format!("unknown type '{}': write {form}", clip(id))
        }
        Some(l) if l != id && known(l) => {
            format!("unknown type '{}': write '{l}', without its path", clip(id))
        }
        Some(l @ ("Box" | "Rc" | "Arc")) => format!(
            "unknown type '{}': a {l}<T> is its T on the wire; write the T",
            clip(id)
        ),
        Some(l) => format!(
            "unknown type '{}'; a struct or enum is declared in place: struct {} {{ field: u8 }}",
            clip(id),
            clip(l)
        ),
        None => format!(
            "unknown type '{}'; a struct or enum is declared in place: struct Name {{ field: u8 }}",
            clip(id)
        ),
    }
}

/// `N` or a decimal number: the capacity argument of the heapless forms.
fn is_cap_arg(s: &str) -> bool {
    s == "N" || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
}

fn name_token(name: &str) -> String {
    if is_ident(name) {
        name.to_string()
    } else {
        quote(name)
    }
}

/// Render `t` as declaration text (no trailing newline).
pub fn render(t: &OwnedNamedType) -> String {
    let mut s = String::new();
    ty(t, 0, &mut s);
    s
}

fn pad(depth: usize, s: &mut String) {
    for _ in 0..depth {
        s.push_str("    ");
    }
}

fn fields(fs: &[OwnedNamedValue], depth: usize, s: &mut String) {
    if fs.is_empty() {
        s.push_str(" {}");
        return;
    }
    s.push_str(" {\n");
    for f in fs {
        pad(depth + 1, s);
        s.push_str(&name_token(&f.name));
        s.push_str(": ");
        ty(&f.ty, depth + 1, s);
        s.push_str(",\n");
    }
    pad(depth, s);
    s.push('}');
}

/// `(A, B)`; one element is `(A,)` so it stays apart from a newtype.
fn list(ts: &[OwnedNamedType], depth: usize, s: &mut String) {
    s.push('(');
    for (i, t) in ts.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        ty(t, depth, s);
    }
    if ts.len() == 1 {
        s.push(',');
    }
    s.push(')');
}

fn ty(t: &OwnedNamedType, depth: usize, s: &mut String) {
    // Each arm writes the form and says whether the form implies t.name.
    let canonical = match &t.ty {
        D::Unit => {
            s.push_str("()");
            t.name == "()"
        }
        D::String => {
            let own = t.name == "String"
                || t.name == "str"
                || t.name
                    .strip_prefix(HEAPLESS_STRING)
                    .and_then(|r| r.strip_suffix('>'))
                    .is_some_and(is_cap_arg);
            s.push_str(if own { &t.name } else { "String" });
            own
        }
        D::ByteArray => {
            s.push_str("bytes");
            t.name == "bytes"
        }
        D::Schema => {
            s.push_str("Schema");
            t.name == "OwnedNamedType"
        }
        D::Option(i) => {
            s.push_str("Option<");
            ty(i, depth, s);
            s.push('>');
            t.name == "Option<T>"
        }
        D::Seq(i) => {
            let cap = t
                .name
                .strip_prefix(HEAPLESS_VEC)
                .and_then(|r| r.strip_suffix('>'))
                .filter(|c| is_cap_arg(c));
            if let Some(cap) = cap {
                s.push_str("heapless::Vec<");
                ty(i, depth, s);
                s.push_str(", ");
                s.push_str(cap);
                s.push('>');
                true
            } else if t.name == "[T]" {
                s.push('[');
                ty(i, depth, s);
                s.push(']');
                true
            } else {
                let form = SEQ_FORMS.iter().find(|(_, n)| *n == t.name);
                s.push_str(form.map_or("Vec", |f| f.0));
                s.push('<');
                ty(i, depth, s);
                s.push('>');
                form.is_some()
            }
        }
        D::Map { key, val } => {
            let form = MAP_FORMS.iter().find(|(_, n)| *n == t.name);
            s.push_str(form.map_or("BTreeMap", |f| f.0));
            s.push('<');
            ty(key, depth, s);
            s.push_str(", ");
            ty(val, depth, s);
            s.push('>');
            form.is_some()
        }
        D::Tuple(ts) => match ts.first() {
            None => {
                s.push_str("[(); 0]");
                t.name == "[T; N]"
            }
            Some(first) if t.name == "[T; N]" && ts.iter().all(|x| x == first) => {
                s.push('[');
                ty(first, depth, s);
                s.push_str(&format!("; {}]", ts.len()));
                true
            }
            Some(_) => {
                list(ts, depth, s);
                TUPLE_NAMES.get(ts.len()) == Some(&t.name.as_str())
            }
        },
        D::UnitStruct => {
            s.push_str("struct ");
            s.push_str(&name_token(&t.name));
            true
        }
        D::NewtypeStruct(i) => {
            s.push_str("struct ");
            s.push_str(&name_token(&t.name));
            s.push('(');
            ty(i, depth, s);
            s.push(')');
            true
        }
        D::TupleStruct(ts) => {
            s.push_str("struct ");
            s.push_str(&name_token(&t.name));
            list(ts, depth, s);
            true
        }
        D::Struct(fs) => {
            s.push_str("struct ");
            s.push_str(&name_token(&t.name));
            fields(fs, depth, s);
            true
        }
        D::Enum(vars) => {
            s.push_str("enum ");
            s.push_str(&name_token(&t.name));
            if vars.is_empty() {
                s.push_str(" {}");
            } else {
                s.push_str(" {\n");
                for v in vars {
                    pad(depth + 1, s);
                    s.push_str(&name_token(&v.name));
                    match &v.ty {
                        V::UnitVariant => {}
                        V::NewtypeVariant(i) => {
                            s.push('(');
                            ty(i, depth + 1, s);
                            s.push(')');
                        }
                        V::TupleVariant(ts) => list(ts, depth + 1, s),
                        V::StructVariant(fs) => fields(fs, depth + 1, s),
                    }
                    s.push_str(",\n");
                }
                pad(depth, s);
                s.push('}');
            }
            true
        }
        prim => match PRIMS.iter().find(|(_, d)| d == prim) {
            Some((kw, _)) => {
                s.push_str(kw);
                t.name == *kw
            }
            None => true,
        },
    };
    if !canonical {
        s.push_str(" as ");
        s.push_str(&quote(&t.name));
    }
}

/// Why declaration text did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line of the problem.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// What was wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

impl std::error::Error for ParseError {}

/// The most nodes a parsed schema may have: each node takes at least two
/// bytes of schema, and a segment holds at most `MAX_SCHEMA_LEN` bytes.
const MAX_NODES: usize = MAX_SCHEMA_LEN / 2;

/// Parse declaration text into a schema (see the module doc).
///
/// The result nests at most `MAX_SCHEMA_DEPTH` levels and has at most
/// 16384 nodes, whatever the text says (`[u8; 1000000000]` is an error,
/// not an allocation).
pub fn parse(text: &str) -> Result<OwnedNamedType, ParseError> {
    let mut p = Parser {
        src: text,
        pos: 0,
        nodes: 0,
    };
    let t = p.ty(0)?;
    p.skip_ws();
    if p.pos < p.src.len() {
        return Err(p.err("unexpected text after the type"));
    }
    Ok(t)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    nodes: usize,
}

#[derive(Debug, PartialEq)]
enum Tok<'a> {
    Ident(&'a str),
    Str(String),
    Num(&'a str),
    Punct(char),
    End,
}

impl<'a> Parser<'a> {
    fn err_at(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        let before = &self.src[..pos.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ParseError {
            line,
            col,
            message: msg.into(),
        }
    }

    fn err(&self, msg: impl Into<String>) -> ParseError {
        self.err_at(self.pos, msg)
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn skip_ws(&mut self) {
        loop {
            let r = self.rest();
            let t = r.trim_start();
            self.pos += r.len() - t.len();
            if t.starts_with("//") {
                self.pos += t.find('\n').unwrap_or(t.len());
            } else {
                return;
            }
        }
    }

    /// The next token, without consuming it; returns its length too.
    fn peek(&mut self) -> Result<(Tok<'a>, usize), ParseError> {
        self.skip_ws();
        let r = self.rest();
        let Some(c) = r.chars().next() else {
            return Ok((Tok::End, 0));
        };
        if c.is_ascii_alphabetic() || c == '_' {
            let mut n = r
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(r.len());
            // A path such as `heapless::String` is one token.
            while r[n..].starts_with("::")
                && r[n + 2..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            {
                let tail = &r[n + 2..];
                n += 2 + tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
            }
            return Ok((Tok::Ident(&r[..n]), n));
        }
        if c.is_ascii_digit() {
            let n = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            return Ok((Tok::Num(&r[..n]), n));
        }
        if c == '"' {
            // A JSON string literal: find its end, then let serde_json unescape.
            let b = r.as_bytes();
            let mut i = 1;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => {
                        let lit = &r[..=i];
                        return serde_json::from_str::<String>(lit)
                            .map(|s| (Tok::Str(s), i + 1))
                            .map_err(|e| self.err(format!("bad string literal: {e}")));
                    }
                    _ => i += 1,
                }
            }
            return Err(self.err("unterminated string literal; close it with \""));
        }
        Ok((Tok::Punct(c), c.len_utf8()))
    }

    fn next(&mut self) -> Result<Tok<'a>, ParseError> {
        let (t, n) = self.peek()?;
        self.pos += n;
        Ok(t)
    }

    fn eat(&mut self, c: char) -> Result<bool, ParseError> {
        let (t, n) = self.peek()?;
        if t == Tok::Punct(c) {
            self.pos += n;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn expect(&mut self, c: char) -> Result<(), ParseError> {
        if self.eat(c)? {
            Ok(())
        } else {
            let (t, _) = self.peek()?;
            Err(self.err(format!("expected '{c}', found {}", describe(&t))))
        }
    }

    fn name(&mut self, what: &str) -> Result<String, ParseError> {
        match self.next()? {
            Tok::Ident(s) if !s.contains("::") => Ok(s.to_string()),
            Tok::Str(s) => Ok(s),
            t => Err(self.err(format!(
                "expected {what} (an identifier or a \"quoted name\"), found {}",
                describe(&t)
            ))),
        }
    }

    fn count(&mut self, n: usize) -> Result<(), ParseError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(self.err(format!(
                "the schema has more than {MAX_NODES} types; a segment holds at most {MAX_SCHEMA_LEN} schema bytes"
            )));
        }
        Ok(())
    }

    fn number(&mut self) -> Result<(&'a str, usize), ParseError> {
        match self.next()? {
            Tok::Num(n) => n
                .parse()
                .map(|v| (n, v))
                .map_err(|_| self.err(format!("{} is too large", clip(n)))),
            t => Err(self.err(format!("expected a number, found {}", describe(&t)))),
        }
    }

    fn ty(&mut self, depth: usize) -> Result<OwnedNamedType, ParseError> {
        if depth > MAX_SCHEMA_DEPTH {
            return Err(self.err(format!(
                "the type nests deeper than {MAX_SCHEMA_DEPTH} levels"
            )));
        }
        self.count(1)?;
        let mut t = self.form(depth)?;
        let (tok, n) = self.peek()?;
        if tok == Tok::Ident("as") {
            self.pos += n;
            match self.next()? {
                Tok::Str(s) => t.name = s,
                other => {
                    return Err(self.err(format!(
                        "expected a quoted name after 'as', found {}",
                        describe(&other)
                    )));
                }
            }
        }
        Ok(t)
    }

    fn form(&mut self, depth: usize) -> Result<OwnedNamedType, ParseError> {
        let at = {
            self.skip_ws();
            self.pos
        };
        let named = |name: &str, ty: D| OwnedNamedType {
            name: name.to_string(),
            ty,
        };
        let tok = self.next()?;
        Ok(match tok {
            Tok::Punct('(') => {
                if self.eat(')')? {
                    return Ok(named("()", D::Unit));
                }
                let (items, one) = self.items(depth, ')')?;
                if items.len() == 1 && !one {
                    return Err(self.err_at(
                        at,
                        "a one-element tuple is written (T,); for a plain type drop the parentheses",
                    ));
                }
                let name = TUPLE_NAMES.get(items.len()).copied().unwrap_or("");
                named(name, D::Tuple(items))
            }
            Tok::Punct('[') => {
                let elem = self.ty(depth + 1)?;
                if self.eat(']')? {
                    return Ok(named("[T]", D::Seq(Box::new(elem))));
                }
                self.expect(';')?;
                let (_, n) = self.number()?;
                self.expect(']')?;
                if n == 0 {
                    return Ok(named("[T; N]", D::Tuple(Vec::new())));
                }
                // Each copy is a node of the schema.
                self.count(n.saturating_sub(1).saturating_mul(1 + self.nodes_in(&elem)))?;
                named("[T; N]", D::Tuple(vec![elem; n]))
            }
            Tok::Ident("struct") => self.struct_(depth)?,
            Tok::Ident("enum") => self.enum_(depth)?,
            Tok::Ident("Option") => {
                self.expect('<')?;
                let i = self.ty(depth + 1)?;
                self.expect('>')?;
                named("Option<T>", D::Option(Box::new(i)))
            }
            Tok::Ident("heapless::String") => {
                self.expect('<')?;
                let cap = self.cap_arg()?;
                self.expect('>')?;
                named(&format!("{HEAPLESS_STRING}{cap}>"), D::String)
            }
            Tok::Ident("heapless::Vec") => {
                self.expect('<')?;
                let i = self.ty(depth + 1)?;
                self.expect(',')?;
                let cap = self.cap_arg()?;
                self.expect('>')?;
                named(&format!("{HEAPLESS_VEC}{cap}>"), D::Seq(Box::new(i)))
            }
            Tok::Ident(id) => {
                if let Some((_, name)) = SEQ_FORMS.iter().find(|(f, _)| *f == id) {
                    self.expect('<')?;
                    let i = self.ty(depth + 1)?;
                    self.expect('>')?;
                    named(name, D::Seq(Box::new(i)))
                } else if let Some((_, name)) = MAP_FORMS.iter().find(|(f, _)| *f == id) {
                    self.expect('<')?;
                    let key = Box::new(self.ty(depth + 1)?);
                    self.expect(',')?;
                    let val = Box::new(self.ty(depth + 1)?);
                    self.expect('>')?;
                    named(name, D::Map { key, val })
                } else if let Some((kw, d)) = PRIMS.iter().find(|(k, _)| *k == id) {
                    named(kw, d.clone())
                } else {
                    match id {
                        "String" | "str" => named(id, D::String),
                        "bytes" => named("bytes", D::ByteArray),
                        "Schema" => named("OwnedNamedType", D::Schema),
                        _ => return Err(self.err_at(at, unknown_type(id))),
                    }
                }
            }
            t => {
                return Err(self.err_at(at, format!("expected a type, found {}", describe(&t))));
            }
        })
    }

    fn nodes_in(&self, t: &OwnedNamedType) -> usize {
        fn n(t: &OwnedNamedType) -> usize {
            1 + match &t.ty {
                D::Option(i) | D::NewtypeStruct(i) | D::Seq(i) => n(i),
                D::Tuple(v) | D::TupleStruct(v) => v.iter().map(n).sum(),
                D::Map { key, val } => n(key) + n(val),
                D::Struct(f) => f.iter().map(|f| n(&f.ty)).sum(),
                D::Enum(vs) => vs
                    .iter()
                    .map(|v| match &v.ty {
                        V::UnitVariant => 0,
                        V::NewtypeVariant(i) => n(i),
                        V::TupleVariant(v) => v.iter().map(n).sum(),
                        V::StructVariant(f) => f.iter().map(|f| n(&f.ty)).sum(),
                    })
                    .sum(),
                _ => 0,
            }
        }
        n(t) - 1
    }

    fn cap_arg(&mut self) -> Result<String, ParseError> {
        match self.next()? {
            Tok::Num(n) => Ok(n.to_string()),
            Tok::Ident("N") => Ok("N".to_string()),
            t => Err(self.err(format!(
                "expected a capacity (a number, or N for none declared), found {}",
                describe(&t)
            ))),
        }
    }

    /// Types up to `close`; also says whether a trailing comma followed
    /// the only element (`(T,)`).
    fn items(
        &mut self,
        depth: usize,
        close: char,
    ) -> Result<(Vec<OwnedNamedType>, bool), ParseError> {
        let mut items = Vec::new();
        let mut trailing = false;
        loop {
            if self.eat(close)? {
                return Ok((items, trailing));
            }
            items.push(self.ty(depth + 1)?);
            trailing = self.eat(',')?;
            if !trailing {
                self.expect(close)?;
                return Ok((items, false));
            }
        }
    }

    fn fields(&mut self, depth: usize) -> Result<Vec<OwnedNamedValue>, ParseError> {
        let mut out = Vec::new();
        loop {
            if self.eat('}')? {
                return Ok(out);
            }
            let name = self.name("a field name")?;
            self.expect(':')?;
            let ty = self.ty(depth + 1)?;
            out.push(OwnedNamedValue { name, ty });
            if !self.eat(',')? {
                self.expect('}')?;
                return Ok(out);
            }
        }
    }

    fn struct_(&mut self, depth: usize) -> Result<OwnedNamedType, ParseError> {
        let name = self.name("a struct name")?;
        let ty = if self.eat('{')? {
            D::Struct(self.fields(depth)?)
        } else if self.eat('(')? {
            let (mut items, one) = self.items(depth, ')')?;
            if items.len() == 1 && !one {
                D::NewtypeStruct(Box::new(items.remove(0)))
            } else {
                D::TupleStruct(items)
            }
        } else {
            D::UnitStruct
        };
        Ok(OwnedNamedType { name, ty })
    }

    fn enum_(&mut self, depth: usize) -> Result<OwnedNamedType, ParseError> {
        let name = self.name("an enum name")?;
        self.expect('{')?;
        let mut vars = Vec::new();
        loop {
            if self.eat('}')? {
                break;
            }
            self.count(1)?;
            let vname = self.name("a variant name")?;
            let ty = if self.eat('{')? {
                V::StructVariant(self.fields(depth)?)
            } else if self.eat('(')? {
                let (mut items, one) = self.items(depth, ')')?;
                if items.len() == 1 && !one {
                    V::NewtypeVariant(Box::new(items.remove(0)))
                } else {
                    V::TupleVariant(items)
                }
            } else {
                V::UnitVariant
            };
            vars.push(OwnedNamedVariant { name: vname, ty });
            if !self.eat(',')? {
                self.expect('}')?;
                break;
            }
        }
        Ok(OwnedNamedType {
            name,
            ty: D::Enum(vars),
        })
    }
}

fn describe(t: &Tok<'_>) -> String {
    match t {
        Tok::Ident(s) => format!("'{}'", clip(s)),
        Tok::Str(s) => quote_short(s),
        Tok::Num(n) => clip(n),
        // Any character that starts no token: ESC, DEL or U+009B raw would
        // reach the terminal.
        Tok::Punct(c) => format!("'{}'", c.escape_debug()),
        Tok::End => "the end of the text".to_string(),
    }
}
