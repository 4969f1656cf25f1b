//! The schema compiled for the codec: a tree that mirrors postcard-schema's
//! `OwnedNamedType`, checked once, with the capacities read from the names.

use postcard_schema::schema::owned::{
    OwnedDataModelType as D, OwnedDataModelVariant as V, OwnedNamedType, OwnedNamedValue,
};
use shmbus_core::schema::{MAX_SCHEMA_DEPTH, capacity_of};

use crate::error::{SchemaError, clip, name_seg};

/// One node of a compiled schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Bool,
    U8,
    I8,
    /// A varint-encoded integer: signed (zigzag) or not, width in bits, and
    /// the Rust name for messages.
    Int {
        signed: bool,
        bits: u32,
        name: &'static str,
    },
    F32,
    F64,
    Char,
    Str(Bounded),
    Bytes(Bounded),
    Option(Box<Node>),
    /// `()` and unit structs: no bytes, JSON `null`.
    Unit,
    Newtype(Box<Node>),
    Seq(Box<Node>, Bounded),
    Tuple(Vec<Node>),
    Map(Box<Node>, Box<Node>, Bounded),
    Struct(Vec<Field>),
    Enum(Vec<Variant>),
}

/// The name of a string/sequence/map node and the capacity it declares.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bounded {
    pub name: String,
    pub cap: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    pub name: String,
    pub node: Node,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Variant {
    pub name: String,
    pub kind: VariantKind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum VariantKind {
    Unit,
    Newtype(Node),
    Tuple(Vec<Node>),
    Struct(Vec<Field>),
}

impl Node {
    /// True if this node's JSON can be `null` (so `Some(x)` of it needs a
    /// wrapper to stay apart from `None`).
    pub fn nullable(&self) -> bool {
        match self {
            Node::Unit | Node::Option(_) => true,
            Node::Newtype(n) => n.nullable(),
            _ => false,
        }
    }

    /// True for map keys written as plain text: strings, chars and integers
    /// (and newtypes of them). Other key types are written as JSON text.
    pub fn textual_key(&self) -> bool {
        match self {
            Node::Str(_) | Node::Char | Node::U8 | Node::I8 | Node::Int { .. } => true,
            Node::Newtype(n) => n.textual_key(),
            _ => false,
        }
    }

    /// The fewest bytes a value of this node takes in a frame.
    pub fn min_size(&self) -> usize {
        match self {
            Node::Unit => 0,
            Node::F32 => 4,
            Node::F64 => 8,
            Node::Newtype(n) => n.min_size(),
            Node::Tuple(v) => v.iter().map(Node::min_size).fold(0, usize::saturating_add),
            Node::Struct(f) => f
                .iter()
                .map(|f| f.node.min_size())
                .fold(0, usize::saturating_add),
            _ => 1,
        }
    }
}

impl Node {
    /// The most bytes a value of this node takes in a frame, as postcard's
    /// `MaxSize` computes it for the equivalent Rust type; `None` if a
    /// string, list or map declares no capacity. A sum beyond `usize`
    /// saturates to `usize::MAX`: a frame no topic can hold, on a 32-bit
    /// board as on a 64-bit one.
    pub fn max_size(&self) -> Option<usize> {
        // postcard's length prefix for at most `n` elements.
        fn prefix(n: usize) -> usize {
            let bits = (usize::BITS - n.leading_zeros()) as usize;
            bits.div_ceil(7).max(1)
        }
        fn sum<'a>(nodes: impl Iterator<Item = &'a Node>) -> Option<usize> {
            nodes
                .map(Node::max_size)
                .try_fold(0usize, |a, n| Some(a.saturating_add(n?)))
        }
        fn bounded(cap: Option<usize>, each: usize) -> Option<usize> {
            let cap = cap?;
            Some(each.saturating_mul(cap).saturating_add(prefix(cap)))
        }
        match self {
            Node::Bool | Node::U8 | Node::I8 => Some(1),
            Node::Int { bits, .. } => Some((*bits as usize).div_ceil(7)),
            Node::F32 => Some(4),
            Node::F64 => Some(8),
            Node::Char => Some(5),
            Node::Str(b) | Node::Bytes(b) => bounded(b.cap, 1),
            Node::Option(n) => Some(n.max_size()?.saturating_add(1)),
            Node::Unit => Some(0),
            Node::Newtype(n) => n.max_size(),
            Node::Seq(n, b) => bounded(b.cap, n.max_size()?),
            Node::Tuple(v) => sum(v.iter()),
            Node::Map(k, v, b) => bounded(b.cap, k.max_size()?.saturating_add(v.max_size()?)),
            Node::Struct(f) => sum(f.iter().map(|f| &f.node)),
            Node::Enum(vs) => {
                // The derive's discriminant: a varint of the variant count.
                let bits = (u32::BITS - (vs.len() as u32).leading_zeros()) as usize;
                let mut most = 0usize;
                for v in vs {
                    let n = match &v.kind {
                        VariantKind::Unit => 0,
                        VariantKind::Newtype(n) => n.max_size()?,
                        VariantKind::Tuple(t) => sum(t.iter())?,
                        VariantKind::Struct(f) => sum(f.iter().map(|f| &f.node))?,
                    };
                    most = most.max(n);
                }
                Some(most.saturating_add(bits.div_ceil(7)))
            }
        }
    }
}

/// Compile `t`, refusing what the codec cannot map to JSON and back.
pub(crate) fn compile(t: &OwnedNamedType) -> Result<Node, SchemaError> {
    node(t, 0, &mut String::new())
}

fn bounded(t: &OwnedNamedType) -> Bounded {
    Bounded {
        name: t.name.clone(),
        cap: capacity_of(&t.name),
    }
}

fn int(signed: bool, bits: u32, name: &'static str) -> Node {
    Node::Int { signed, bits, name }
}

fn child(
    t: &OwnedNamedType,
    depth: usize,
    path: &mut String,
    seg: &str,
) -> Result<Node, SchemaError> {
    let len = path.len();
    path.push_str(seg);
    let n = node(t, depth + 1, path)?;
    path.truncate(len);
    Ok(n)
}

fn node(t: &OwnedNamedType, depth: usize, path: &mut String) -> Result<Node, SchemaError> {
    if depth > MAX_SCHEMA_DEPTH {
        return Err(SchemaError::TooDeep {
            max: MAX_SCHEMA_DEPTH,
        });
    }
    Ok(match &t.ty {
        D::Bool => Node::Bool,
        D::U8 => Node::U8,
        D::I8 => Node::I8,
        D::U16 => int(false, 16, "u16"),
        D::U32 => int(false, 32, "u32"),
        D::U64 => int(false, 64, "u64"),
        D::Usize => int(false, 64, "usize"),
        D::U128 => int(false, 128, "u128"),
        D::I16 => int(true, 16, "i16"),
        D::I32 => int(true, 32, "i32"),
        D::I64 => int(true, 64, "i64"),
        D::Isize => int(true, 64, "isize"),
        D::I128 => int(true, 128, "i128"),
        D::F32 => Node::F32,
        D::F64 => Node::F64,
        D::Char => Node::Char,
        D::String => Node::Str(bounded(t)),
        D::ByteArray => Node::Bytes(bounded(t)),
        D::Option(n) => Node::Option(Box::new(child(n, depth, path, "?")?)),
        D::Unit | D::UnitStruct => Node::Unit,
        D::NewtypeStruct(n) => Node::Newtype(Box::new(child(n, depth, path, "")?)),
        D::Seq(n) => Node::Seq(Box::new(child(n, depth, path, "[]")?), bounded(t)),
        D::Tuple(v) | D::TupleStruct(v) => Node::Tuple(tuple(v, depth, path)?),
        D::Map { key, val } => Node::Map(
            Box::new(child(key, depth, path, "{key}")?),
            Box::new(child(val, depth, path, "{}")?),
            bounded(t),
        ),
        D::Struct(fs) => Node::Struct(fields(fs, depth, path)?),
        D::Enum(vs) => {
            let mut out: Vec<Variant> = Vec::with_capacity(vs.len());
            for v in vs {
                if out.iter().any(|o| o.name == v.name) {
                    return Err(SchemaError::DuplicateName {
                        path: display_path(path),
                        name: v.name.clone(),
                    });
                }
                let seg = name_seg(&v.name);
                let len = path.len();
                path.push_str(&seg);
                let kind = match &v.ty {
                    V::UnitVariant => VariantKind::Unit,
                    V::NewtypeVariant(n) => VariantKind::Newtype(node(n, depth + 1, path)?),
                    V::TupleVariant(ts) => VariantKind::Tuple(tuple(ts, depth, path)?),
                    V::StructVariant(fs) => VariantKind::Struct(fields(fs, depth, path)?),
                };
                path.truncate(len);
                out.push(Variant {
                    name: v.name.clone(),
                    kind,
                });
            }
            Node::Enum(out)
        }
        D::Schema => {
            return Err(SchemaError::Unsupported {
                path: display_path(path),
                what: "an embedded schema (OwnedNamedType)",
            });
        }
    })
}

fn tuple(v: &[OwnedNamedType], depth: usize, path: &mut String) -> Result<Vec<Node>, SchemaError> {
    let mut out: Vec<Node> = Vec::with_capacity(v.len());
    for (i, t) in v.iter().enumerate() {
        // `[T; N]` holds N copies of one type: compile it once.
        if i > 0 && *t == v[0] {
            out.push(out[0].clone());
        } else {
            out.push(child(t, depth, path, &format!("[{i}]"))?);
        }
    }
    Ok(out)
}

fn fields(
    fs: &[OwnedNamedValue],
    depth: usize,
    path: &mut String,
) -> Result<Vec<Field>, SchemaError> {
    let mut out: Vec<Field> = Vec::with_capacity(fs.len());
    for f in fs {
        if out.iter().any(|o| o.name == f.name) {
            return Err(SchemaError::DuplicateName {
                path: display_path(path),
                name: f.name.clone(),
            });
        }
        let node = child(&f.ty, depth, path, &name_seg(&f.name))?;
        out.push(Field {
            name: f.name.clone(),
            node,
        });
    }
    Ok(out)
}

/// A schema path for an error message: its names are quoted and cut
/// ([`name_seg`]), and the whole path is cut as [`clip`] cuts (up to
/// `MAX_SCHEMA_DEPTH` steps of 40 characters would not be one short line).
fn display_path(path: &str) -> String {
    if path.is_empty() {
        "the top level".to_string()
    } else {
        clip(path)
    }
}
