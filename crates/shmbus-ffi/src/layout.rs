//! A schema flattened for typed field access from C.
//!
//! [`Layout::new`] walks a `postcard_schema` `OwnedNamedType` once and
//! gives every scalar in the message a path (`t_us`, `acc[2]`,
//! `pose.position.x`, `samples[7]`) and a slot in a frame's value store.
//! Encoding and decoding then walk the compiled tree: postcard's wire
//! format, with no allocation once a frame's buffers have their capacity.
//!
//! Covered: structs, tuple structs, newtypes, tuples and fixed arrays of
//! anything covered; `bool`, the integers up to 64 bits, `f32`, `f64`;
//! strings (with or without a capacity); lists of bytes; lists with a
//! capacity (`heapless::Vec<T, N>`). Not covered (use JSON or raw bytes):
//! enums, options, maps, `char`, 128-bit integers and lists without a
//! capacity of anything but bytes.

use postcard_schema::schema::owned::{OwnedDataModelType as D, OwnedNamedType};

use shmbus_core::schema::capacity_of;

use crate::status::*;

/// Most scalars a layout may flatten to (guards against a hostile schema
/// such as a list of a million elements).
pub(crate) const MAX_LEAVES: usize = 1 << 16;

/// Most nodes (fields, list elements, empty values) a layout may flatten
/// to. Leaves alone do not bound the work: `heapless::Vec<heapless::Vec<(),
/// 4096>, 4096>` has no leaf and 16 million elements (seconds of CPU and a
/// gigabyte, then an abort when memory runs out, at every subscriber open).
pub(crate) const MAX_NODES: usize = 4 * MAX_LEAVES;

/// A scalar's wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prim {
    /// One byte, 0 or 1.
    Bool,
    /// One byte.
    U8,
    /// Varint.
    U16,
    /// Varint.
    U32,
    /// Varint (also `usize`).
    U64,
    /// One byte.
    I8,
    /// Zigzag varint.
    I16,
    /// Zigzag varint.
    I32,
    /// Zigzag varint (also `isize`).
    I64,
    /// 4 bytes little-endian.
    F32,
    /// 8 bytes little-endian.
    F64,
}

impl Prim {
    fn max_size(self) -> usize {
        match self {
            Prim::Bool | Prim::U8 | Prim::I8 => 1,
            Prim::U16 | Prim::I16 => 3,
            Prim::U32 | Prim::I32 => 5,
            Prim::U64 | Prim::I64 => 10,
            Prim::F32 => 4,
            Prim::F64 => 8,
        }
    }
    /// The C-facing name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Prim::Bool => "bool",
            Prim::U8 => "u8",
            Prim::U16 => "u16",
            Prim::U32 => "u32",
            Prim::U64 => "u64",
            Prim::I8 => "i8",
            Prim::I16 => "i16",
            Prim::I32 => "i32",
            Prim::I64 => "i64",
            Prim::F32 => "f32",
            Prim::F64 => "f64",
        }
    }
    /// Inclusive integer range, for unsigned and signed kinds.
    pub fn int_range(self) -> Option<(i128, i128)> {
        Some(match self {
            Prim::U8 => (0, u8::MAX.into()),
            Prim::U16 => (0, u16::MAX.into()),
            Prim::U32 => (0, u32::MAX.into()),
            Prim::U64 => (0, u64::MAX.into()),
            Prim::I8 => (i8::MIN.into(), i8::MAX.into()),
            Prim::I16 => (i16::MIN.into(), i16::MAX.into()),
            Prim::I32 => (i32::MIN.into(), i32::MAX.into()),
            Prim::I64 => (i64::MIN.into(), i64::MAX.into()),
            _ => return None,
        })
    }
}

/// What a leaf holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKind {
    /// A scalar in the number store (as bits: integers as `u64`/`i64`,
    /// floats as their IEEE bits, bool as 0/1).
    Prim(Prim),
    /// A UTF-8 string in the byte store, with its capacity if declared.
    Str(Option<usize>),
    /// A list of bytes in the byte store, with its capacity if declared.
    Bytes(Option<usize>),
}

impl LeafKind {
    /// The name used in messages.
    pub fn name(&self) -> String {
        match self {
            LeafKind::Prim(p) => p.name().into(),
            LeafKind::Str(Some(n)) => {
                format!(
                    "string of at most {}",
                    shmbus_core::plural::count(*n, "byte")
                )
            }
            LeafKind::Str(None) => "string".into(),
            LeafKind::Bytes(Some(n)) => format!("bytes (at most {n})"),
            LeafKind::Bytes(None) => "bytes".into(),
        }
    }
}

/// One scalar of the message.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Its path.
    pub path: String,
    /// Its type.
    pub kind: LeafKind,
    /// Index in the number store (`Prim`) or byte store (`Str`, `Bytes`).
    pub slot: usize,
    /// The lists it is an element of: (list index, element index), outer
    /// first. The leaf is live only when each element index is below the
    /// list's current length.
    pub within: Vec<(usize, usize)>,
}

/// A list with a capacity (`heapless::Vec<T, N>` of anything but bytes).
#[derive(Debug, Clone)]
pub struct List {
    /// Its path.
    pub path: String,
    /// Capacity (elements).
    pub cap: usize,
    /// The lists it is an element of, as for [`Leaf::within`].
    pub within: Vec<(usize, usize)>,
    /// For each element: the leaves and the nested lists it spans
    /// (contiguous ranges, as both are numbered depth-first).
    pub elems: Vec<(core::ops::Range<usize>, core::ops::Range<usize>)>,
}

/// The compiled tree that encoding and decoding walk.
#[derive(Debug, Clone)]
pub enum Node {
    /// A scalar (leaf index).
    Leaf(usize),
    /// Members encoded one after another (struct, tuple, array).
    Group(Vec<Node>),
    /// A list with a capacity (list index): varint length, then that many
    /// elements.
    List(usize, Vec<Node>),
}

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A leaf.
    Leaf(usize),
    /// A list (for its length).
    List(usize),
}

/// A flattened schema.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The tree.
    pub root: Node,
    /// Every leaf, depth-first.
    pub leaves: Vec<Leaf>,
    /// Every list with a capacity, depth-first.
    pub lists: Vec<List>,
    /// Path to leaf or list, sorted by path (binary search: no hashing,
    /// and no worst case a hostile schema could provoke).
    pub paths: Vec<(String, Target)>,
    /// Slots in the number store.
    pub nums: usize,
    /// Slots in the byte store.
    pub bufs: usize,
    /// Largest encoded frame, `None` if a string or byte list has no
    /// capacity.
    pub max_size: Option<usize>,
}

/// Bytes of the varint encoding of `n`.
pub fn varint_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

struct Builder {
    leaves: Vec<Leaf>,
    lists: Vec<List>,
    nums: usize,
    bufs: usize,
    within: Vec<(usize, usize)>,
    /// Nodes made so far (bounded by [`MAX_NODES`]).
    nodes: usize,
}

impl Builder {
    fn leaf(&mut self, path: &str, kind: LeafKind) -> Result<(Node, Option<usize>)> {
        if self.leaves.len() >= MAX_LEAVES {
            return fail(
                SHMBUS_ERR_UNSUPPORTED,
                format!(
                    "the schema has more than {MAX_LEAVES} fields; use the JSON or bytes functions"
                ),
            );
        }
        let (slot, max) = match kind {
            LeafKind::Prim(p) => {
                self.nums += 1;
                (self.nums - 1, Some(p.max_size()))
            }
            LeafKind::Str(cap) | LeafKind::Bytes(cap) => {
                self.bufs += 1;
                (
                    self.bufs - 1,
                    cap.map(|n| varint_len(n as u64).saturating_add(n)),
                )
            }
        };
        self.leaves.push(Leaf {
            path: path.to_string(),
            kind,
            slot,
            within: self.within.clone(),
        });
        Ok((Node::Leaf(self.leaves.len() - 1), max))
    }

    fn group(&mut self, items: Vec<(String, &OwnedNamedType)>) -> Result<(Node, Option<usize>)> {
        let mut nodes = Vec::with_capacity(items.len());
        let mut max = Some(0usize);
        for (path, t) in items {
            let (n, m) = self.node(&path, t)?;
            nodes.push(n);
            max = max.zip(m).map(|(a, b)| a.saturating_add(b));
        }
        Ok((Node::Group(nodes), max))
    }

    fn node(&mut self, path: &str, t: &OwnedNamedType) -> Result<(Node, Option<usize>)> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return fail(
                SHMBUS_ERR_UNSUPPORTED,
                format!(
                    "the schema flattens to more than {MAX_NODES} fields and list elements; use the JSON or bytes functions"
                ),
            );
        }
        let unsupported = |what: &str| {
            fail(
                SHMBUS_ERR_UNSUPPORTED,
                format!(
                    "field '{}' is {what}, which the typed field functions do not cover; use the JSON or bytes functions for this schema",
                    if path.is_empty() {
                        "(the message)"
                    } else {
                        path
                    }
                ),
            )
        };
        let kind = match &t.ty {
            D::Bool => LeafKind::Prim(Prim::Bool),
            D::U8 => LeafKind::Prim(Prim::U8),
            D::U16 => LeafKind::Prim(Prim::U16),
            D::U32 => LeafKind::Prim(Prim::U32),
            D::U64 | D::Usize => LeafKind::Prim(Prim::U64),
            D::I8 => LeafKind::Prim(Prim::I8),
            D::I16 => LeafKind::Prim(Prim::I16),
            D::I32 => LeafKind::Prim(Prim::I32),
            D::I64 | D::Isize => LeafKind::Prim(Prim::I64),
            D::F32 => LeafKind::Prim(Prim::F32),
            D::F64 => LeafKind::Prim(Prim::F64),
            D::String => LeafKind::Str(capacity_of(&t.name)),
            D::ByteArray => LeafKind::Bytes(capacity_of(&t.name)),
            D::Seq(e) if e.ty == D::U8 => LeafKind::Bytes(capacity_of(&t.name)),
            D::Unit | D::UnitStruct => return Ok((Node::Group(Vec::new()), Some(0))),
            D::NewtypeStruct(inner) => return self.node(path, inner),
            D::Struct(fields) => {
                let items = fields
                    .iter()
                    .map(|f| {
                        let p = if path.is_empty() {
                            f.name.clone()
                        } else {
                            format!("{path}.{}", f.name)
                        };
                        (p, &f.ty)
                    })
                    .collect();
                return self.group(items);
            }
            D::Tuple(items) | D::TupleStruct(items) => {
                let items = items
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (format!("{path}[{i}]"), t))
                    .collect();
                return self.group(items);
            }
            D::Seq(elem) => {
                let Some(cap) = capacity_of(&t.name) else {
                    return unsupported("a list without a capacity");
                };
                if cap > MAX_LEAVES {
                    return unsupported("a list longer than the typed field functions allow");
                }
                let list = self.lists.len();
                self.lists.push(List {
                    path: path.to_string(),
                    cap,
                    within: self.within.clone(),
                    elems: Vec::with_capacity(cap),
                });
                let mut nodes = Vec::with_capacity(cap);
                let mut max = Some(varint_len(cap as u64));
                for i in 0..cap {
                    let (l0, s0) = (self.leaves.len(), self.lists.len());
                    self.within.push((list, i));
                    let r = self.node(&format!("{path}[{i}]"), elem);
                    self.within.pop();
                    let (n, m) = r?;
                    nodes.push(n);
                    max = max.zip(m).map(|(a, b)| a.saturating_add(b));
                    let range = (l0..self.leaves.len(), s0..self.lists.len());
                    self.lists[list].elems.push(range);
                }
                return Ok((Node::List(list, nodes), max));
            }
            D::Char => return unsupported("a char"),
            D::I128 | D::U128 => return unsupported("a 128-bit integer"),
            D::Option(_) => return unsupported("an Option"),
            D::Enum(_) => return unsupported("an enum"),
            D::Map { .. } => return unsupported("a map"),
            D::Schema => return unsupported("a schema"),
        };
        self.leaf(path, kind)
    }
}

impl Layout {
    /// What `path` names.
    pub fn find(&self, path: &str) -> Option<Target> {
        self.paths
            .binary_search_by(|(p, _)| p.as_str().cmp(path))
            .ok()
            .map(|i| self.paths[i].1)
    }

    /// Why `path`, which [`Layout::find`] did not find, names nothing when
    /// it is only an index past a list's capacity (`points[3]` of a list of
    /// 3): that list's path, its capacity and the index. `None` for any
    /// other miss.
    pub fn past_capacity<'p>(&self, path: &'p str) -> Option<(&'p str, usize, usize)> {
        let mut from = 0;
        while let Some(open) = path[from..].find('[').map(|i| from + i) {
            let close = open + path[open..].find(']')?;
            let list = &path[..open];
            let Target::List(l) = self.find(list)? else {
                return None;
            };
            let index: usize = path[open + 1..close].parse().ok()?;
            let cap = self.lists[l].cap;
            if index >= cap {
                return Some((list, cap, index));
            }
            from = close + 1;
        }
        None
    }

    /// Flatten `t`. Fails with [`SHMBUS_ERR_UNSUPPORTED`] naming the first
    /// field the typed accessors cannot cover.
    pub fn new(t: &OwnedNamedType) -> Result<Layout> {
        let mut b = Builder {
            leaves: Vec::new(),
            lists: Vec::new(),
            nums: 0,
            bufs: 0,
            within: Vec::new(),
            nodes: 0,
        };
        let (root, max_size) = b.node("", t)?;
        let mut paths = Vec::with_capacity(b.leaves.len() + b.lists.len());
        for (i, l) in b.leaves.iter().enumerate() {
            paths.push((l.path.clone(), Target::Leaf(i)));
        }
        for (i, l) in b.lists.iter().enumerate() {
            paths.push((l.path.clone(), Target::List(i)));
        }
        paths.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Layout {
            root,
            leaves: b.leaves,
            lists: b.lists,
            paths,
            nums: b.nums,
            bufs: b.bufs,
            max_size,
        })
    }
}

/// Append the varint encoding of `v`.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Zigzag-encode a signed value.
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// A reader over a frame's bytes.
pub struct Cursor<'a> {
    /// The bytes.
    pub bytes: &'a [u8],
    /// Position.
    pub pos: usize,
}

impl Cursor<'_> {
    /// One byte.
    pub fn byte(&mut self) -> core::result::Result<u8, &'static str> {
        let b = *self.bytes.get(self.pos).ok_or("frame ends early")?;
        self.pos += 1;
        Ok(b)
    }
    /// `n` bytes.
    pub fn take(&mut self, n: usize) -> core::result::Result<&[u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or("length overflows")?;
        let s = self.bytes.get(self.pos..end).ok_or("frame ends early")?;
        self.pos = end;
        Ok(s)
    }
    /// A varint of at most `max_bytes` bytes whose value fits `max`.
    pub fn varint(&mut self, max: u64) -> core::result::Result<u64, &'static str> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if i == 9 && part > 1 {
                return Err("varint overflows 64 bits");
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                return if v > max {
                    Err("integer out of range for its type")
                } else {
                    Ok(v)
                };
            }
        }
        Err("varint too long")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_refuse_overflow() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX.into(), u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            let mut c = Cursor { bytes: &b, pos: 0 };
            assert_eq!(c.varint(u64::MAX), Ok(v));
        }
        let mut c = Cursor {
            bytes: &[0xff; 11],
            pos: 0,
        };
        assert!(c.varint(u64::MAX).is_err());
        let mut c = Cursor {
            bytes: &[0x80, 0x02],
            pos: 0,
        };
        assert!(c.varint(255).is_err());
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }
}
