//! Find the capacities of a Rust type's strings, lists and maps by asking
//! its own `Deserialize` implementation.
//!
//! postcard-schema names a `heapless::String<16>` just
//! `heapless::String<N>`: the 16 is gone. But the type's `Deserialize`
//! still knows it: handed a 17-byte string it fails with `invalid_length`.
//! So for each string, byte array, sequence and map node of the schema,
//! `T` is deserialized from a synthetic deserializer that follows the
//! schema and gives defaults everywhere (`false`, `1`, `0.0`, `'a'`, empty
//! strings and lists, `None`, the first variant), except on the way to that
//! node (`Some`, one element, the variant that holds it) and at the node
//! itself, where it offers longer and longer strings (or more and more
//! elements) until `T` refuses one. The longest accepted is the capacity.
//!
//! A result counts only if it is consistent: the defaults alone must
//! deserialize, the capacity must be accepted and one more refused.
//! Otherwise (a type whose `Deserialize` refuses the defaults, or that is
//! bounded by something other than length) the node keeps its name and
//! declares no capacity, which is what every schema said before. Nodes that
//! postcard-schema names after std's unbounded types (`String`, `Vec<T>`,
//! `BTreeMap<K, V>`, ...) are not probed. Capacities above
//! [`MAX_PROBED_BYTES`] bytes or [`MAX_PROBED_ELEMENTS`] elements are not
//! looked for: such a node declares none (the frame capacity still bounds
//! it).

use core::cell::Cell;
use core::fmt;

use postcard_schema::schema::owned::{
    OwnedDataModelType as D, OwnedDataModelVariant as V, OwnedNamedType,
};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};

use super::{capacity_of, name_with_capacity};

/// The longest string or byte array probed for, bytes.
pub const MAX_PROBED_BYTES: usize = 1 << 20;
/// The most sequence elements or map entries probed for.
pub const MAX_PROBED_ELEMENTS: usize = 1 << 16;

/// Names of std types that are unbounded: not probed.
const UNBOUNDED: &[&str] = &[
    "String",
    "str",
    "PathBuf",
    "Arguments",
    "Vec<T>",
    "[T]",
    "HashSet<K>",
    "BTreeSet<K>",
    "HashMap<K, V>",
    "BTreeMap<K, V>",
];

/// Write the capacity of every probed node of `T`'s schema `t` into its
/// name (`name_with_capacity`).
pub(crate) fn write_capacities<T: DeserializeOwned>(t: &mut OwnedNamedType) {
    let root = t.clone();
    let mut targets = Vec::new();
    collect(&root, &mut Vec::new(), &mut targets);
    // Without the defaults deserializing, nothing can be learnt.
    if !accepts::<T>(&root, None, 0) {
        return;
    }
    for path in targets {
        let Some(node) = node_at(&root, &path) else {
            continue;
        };
        let cap = match node.ty {
            D::String | D::ByteArray => bytes_capacity::<T>(&root, &path),
            _ => count_capacity::<T>(&root, &path),
        };
        if let (Some(cap), Some(n)) = (cap, node_at_mut(t, &path)) {
            n.name = name_with_capacity(&n.name, cap);
        }
    }
    copy_array_elements(t);
}

/// Steps from the root to a node: the child index at each level; an enum
/// takes two steps (variant, then the index inside it).
type Path = Vec<usize>;

fn collect(t: &OwnedNamedType, path: &mut Path, out: &mut Vec<Path>) {
    let probe = matches!(t.ty, D::String | D::ByteArray | D::Seq(_) | D::Map { .. })
        && !UNBOUNDED.contains(&t.name.as_str())
        && capacity_of(&t.name).is_none();
    if probe {
        out.push(path.clone());
    }
    fn down(steps: &[usize], c: &OwnedNamedType, path: &mut Path, out: &mut Vec<Path>) {
        let n = path.len();
        path.extend_from_slice(steps);
        collect(c, path, out);
        path.truncate(n);
    }
    match &t.ty {
        D::Option(c) | D::NewtypeStruct(c) | D::Seq(c) => down(&[0], c, path, out),
        // `[T; N]` repeats one Rust type: probe the first copy only.
        D::Tuple(v) if t.name == "[T; N]" => {
            if let Some(c) = v.first() {
                down(&[0], c, path, out);
            }
        }
        D::Tuple(v) | D::TupleStruct(v) => {
            for (i, c) in v.iter().enumerate() {
                down(&[i], c, path, out);
            }
        }
        D::Map { key, val } => {
            down(&[0], key, path, out);
            down(&[1], val, path, out);
        }
        D::Struct(fs) => {
            for (i, f) in fs.iter().enumerate() {
                down(&[i], &f.ty, path, out);
            }
        }
        D::Enum(vs) => {
            for (vi, v) in vs.iter().enumerate() {
                match &v.ty {
                    V::UnitVariant => {}
                    V::NewtypeVariant(c) => down(&[vi, 0], c, path, out),
                    V::TupleVariant(cs) => {
                        for (i, c) in cs.iter().enumerate() {
                            down(&[vi, i], c, path, out);
                        }
                    }
                    V::StructVariant(fs) => {
                        for (i, f) in fs.iter().enumerate() {
                            down(&[vi, i], &f.ty, path, out);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// The child `i` of `t` (for an enum: the variant `i`'s contents are
/// reached with a second step, see [`child_in_variant`]).
fn child(t: &OwnedNamedType, i: usize) -> Option<&OwnedNamedType> {
    match &t.ty {
        D::Option(c) | D::NewtypeStruct(c) | D::Seq(c) => (i == 0).then_some(&**c),
        D::Tuple(v) | D::TupleStruct(v) => v.get(i),
        D::Map { key, val } => match i {
            0 => Some(key),
            1 => Some(val),
            _ => None,
        },
        D::Struct(fs) => fs.get(i).map(|f| &f.ty),
        _ => None,
    }
}

fn child_in_variant(v: &V, i: usize) -> Option<&OwnedNamedType> {
    match v {
        V::UnitVariant => None,
        V::NewtypeVariant(c) => (i == 0).then_some(&**c),
        V::TupleVariant(cs) => cs.get(i),
        V::StructVariant(fs) => fs.get(i).map(|f| &f.ty),
    }
}

fn node_at<'t>(t: &'t OwnedNamedType, path: &[usize]) -> Option<&'t OwnedNamedType> {
    match (&t.ty, path) {
        (_, []) => Some(t),
        (D::Enum(vs), [v, i, rest @ ..]) => node_at(child_in_variant(&vs.get(*v)?.ty, *i)?, rest),
        (_, [i, rest @ ..]) => node_at(child(t, *i)?, rest),
    }
}

fn node_at_mut<'t>(t: &'t mut OwnedNamedType, path: &[usize]) -> Option<&'t mut OwnedNamedType> {
    let Some((&i, rest)) = path.split_first() else {
        return Some(t);
    };
    let next = match &mut t.ty {
        D::Option(c) | D::NewtypeStruct(c) | D::Seq(c) => (i == 0).then_some(&mut **c)?,
        D::Tuple(v) | D::TupleStruct(v) => v.get_mut(i)?,
        D::Map { key, val } => match i {
            0 => &mut **key,
            1 => &mut **val,
            _ => return None,
        },
        D::Struct(fs) => &mut fs.get_mut(i)?.ty,
        D::Enum(vs) => {
            let (&j, rest2) = rest.split_first()?;
            let inner = match &mut vs.get_mut(i)?.ty {
                V::UnitVariant => return None,
                V::NewtypeVariant(c) => (j == 0).then_some(&mut **c)?,
                V::TupleVariant(cs) => cs.get_mut(j)?,
                V::StructVariant(fs) => &mut fs.get_mut(j)?.ty,
            };
            return node_at_mut(inner, rest2);
        }
        _ => return None,
    };
    node_at_mut(next, rest)
}

/// After probing the first copy of each `[T; N]`, make the others equal
/// to it again (they are the same Rust type).
fn copy_array_elements(t: &mut OwnedNamedType) {
    let kids: Vec<&mut OwnedNamedType> = match &mut t.ty {
        D::Option(c) | D::NewtypeStruct(c) | D::Seq(c) => vec![&mut **c],
        D::Tuple(v) if t.name == "[T; N]" => {
            if let Some((first, rest)) = v.split_first_mut() {
                copy_array_elements(first);
                for x in rest {
                    *x = first.clone();
                }
            }
            return;
        }
        D::Tuple(v) | D::TupleStruct(v) => v.iter_mut().collect(),
        D::Map { key, val } => vec![&mut **key, &mut **val],
        D::Struct(fs) => fs.iter_mut().map(|f| &mut f.ty).collect(),
        D::Enum(vs) => vs
            .iter_mut()
            .flat_map(|v| -> Vec<&mut OwnedNamedType> {
                match &mut v.ty {
                    V::UnitVariant => vec![],
                    V::NewtypeVariant(c) => vec![&mut **c],
                    V::TupleVariant(cs) => cs.iter_mut().collect(),
                    V::StructVariant(fs) => fs.iter_mut().map(|f| &mut f.ty).collect(),
                }
            })
            .collect(),
        _ => vec![],
    };
    for k in kids {
        copy_array_elements(k);
    }
}

/// The capacity of the string or byte array at `path`: the longest length
/// `T` accepts (exponential, then binary search).
fn bytes_capacity<T: DeserializeOwned>(root: &OwnedNamedType, path: &[usize]) -> Option<usize> {
    let ok = |n: usize| accepts::<T>(root, Some(path), n);
    if !ok(0) {
        return None;
    }
    let mut good = 0;
    let mut bad = 1;
    while ok(bad) {
        good = bad;
        bad *= 2;
        if bad > MAX_PROBED_BYTES {
            return None;
        }
    }
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if ok(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Some(good)
}

/// The capacity of the sequence or map at `path`: offered elements one at
/// a time, `T` refuses the first one past its capacity.
fn count_capacity<T: DeserializeOwned>(root: &OwnedNamedType, path: &[usize]) -> Option<usize> {
    let taken = Cell::new(0);
    let state = State {
        target: Some(path),
        offer: MAX_PROBED_ELEMENTS + 1,
        taken: &taken,
    };
    if run::<T>(root, &state) {
        return None; // took everything offered: unbounded as far as we look
    }
    let cap = taken.get().checked_sub(1)?;
    (accepts::<T>(root, Some(path), cap) && !accepts::<T>(root, Some(path), cap + 1)).then_some(cap)
}

/// Whether `T` deserializes from the defaults, with `n` bytes or elements
/// at `target`.
fn accepts<T: DeserializeOwned>(root: &OwnedNamedType, target: Option<&[usize]>, n: usize) -> bool {
    let taken = Cell::new(0);
    let state = State {
        target,
        offer: n,
        taken: &taken,
    };
    run::<T>(root, &state)
}

fn run<T: DeserializeOwned>(root: &OwnedNamedType, state: &State<'_>) -> bool {
    T::deserialize(Probe {
        node: root,
        state,
        at: Vec::new(),
    })
    .is_ok()
}

struct State<'s> {
    /// The node probed (`None`: defaults everywhere).
    target: Option<&'s [usize]>,
    /// Bytes or elements offered there.
    offer: usize,
    /// Elements handed out there so far.
    taken: &'s Cell<usize>,
}

/// A deserializer for one node of the schema.
struct Probe<'a, 's> {
    node: &'a OwnedNamedType,
    state: &'a State<'s>,
    /// The path from the root to this node.
    at: Vec<usize>,
}

impl<'a, 's> Probe<'a, 's> {
    /// Where this node stands: the rest of the path to the target (`Some`
    /// and empty: this is the target).
    fn rest(&self) -> Option<&'s [usize]> {
        let target = self.state.target?;
        target.strip_prefix(self.at.as_slice())
    }

    fn child(&self, node: &'a OwnedNamedType, steps: &[usize]) -> Probe<'a, 's> {
        let mut at = self.at.clone();
        at.extend_from_slice(steps);
        Probe {
            node,
            state: self.state,
            at,
        }
    }

    fn is_target(&self) -> bool {
        self.rest().is_some_and(<[usize]>::is_empty)
    }

    /// The next step toward the target from here, if the target is below.
    fn next_step(&self) -> Option<&'s [usize]> {
        self.rest().filter(|r| !r.is_empty())
    }
}

#[derive(Debug)]
struct ProbeError;

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<M: fmt::Display>(_: M) -> Self {
        ProbeError
    }
}

impl<'de> de::Deserializer<'de> for Probe<'_, '_> {
    type Error = ProbeError;

    fn deserialize_any<W: Visitor<'de>>(self, v: W) -> Result<W::Value, ProbeError> {
        match &self.node.ty {
            D::Bool => v.visit_bool(false),
            D::I8 => v.visit_i8(1),
            D::U8 => v.visit_u8(1),
            D::I16 => v.visit_i16(1),
            D::I32 => v.visit_i32(1),
            D::I64 | D::Isize => v.visit_i64(1),
            D::I128 => v.visit_i128(1),
            D::U16 => v.visit_u16(1),
            D::U32 => v.visit_u32(1),
            D::U64 | D::Usize => v.visit_u64(1),
            D::U128 => v.visit_u128(1),
            D::F32 => v.visit_f32(0.0),
            D::F64 => v.visit_f64(0.0),
            D::Char => v.visit_char('a'),
            D::String => {
                if self.is_target() {
                    v.visit_str(&"a".repeat(self.state.offer))
                } else {
                    v.visit_str("")
                }
            }
            D::ByteArray => {
                if self.is_target() {
                    v.visit_bytes(&vec![0u8; self.state.offer])
                } else {
                    v.visit_bytes(&[])
                }
            }
            D::Option(c) => match self.next_step() {
                Some(_) => v.visit_some(self.child(c, &[0])),
                None => v.visit_none(),
            },
            D::Unit | D::UnitStruct => v.visit_unit(),
            D::NewtypeStruct(c) => v.visit_newtype_struct(self.child(c, &[0])),
            D::Seq(c) => {
                let n = if self.is_target() {
                    self.state.offer
                } else if self.next_step().is_some() {
                    1
                } else {
                    0
                };
                let counting = self.is_target();
                v.visit_seq(Elements {
                    parent: &self,
                    items: Items::Repeat(c, n),
                    i: 0,
                    counting,
                })
            }
            D::Tuple(items) | D::TupleStruct(items) => v.visit_seq(Elements {
                parent: &self,
                items: Items::List(items.iter().collect()),
                i: 0,
                counting: false,
            }),
            D::Struct(fields) => v.visit_seq(Elements {
                parent: &self,
                items: Items::List(fields.iter().map(|f| &f.ty).collect()),
                i: 0,
                counting: false,
            }),
            D::Map { key, val } => {
                let n = if self.is_target() {
                    self.state.offer
                } else if self.next_step().is_some() {
                    1
                } else {
                    0
                };
                let counting = self.is_target();
                v.visit_map(Entries {
                    parent: &self,
                    key,
                    val,
                    n,
                    i: 0,
                    counting,
                })
            }
            D::Enum(vars) => {
                let idx = self
                    .next_step()
                    .and_then(|r| r.first().copied())
                    .unwrap_or(0);
                if idx >= vars.len() {
                    return Err(ProbeError);
                }
                v.visit_enum(Variant {
                    parent: &self,
                    idx,
                    kind: &vars[idx].ty,
                })
            }
            D::Schema => Err(ProbeError),
        }
    }

    fn is_human_readable(&self) -> bool {
        false
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

enum Items<'a> {
    Repeat(&'a OwnedNamedType, usize),
    List(Vec<&'a OwnedNamedType>),
}

struct Elements<'p, 'a, 's> {
    parent: &'p Probe<'a, 's>,
    items: Items<'a>,
    i: usize,
    counting: bool,
}

impl<'de> SeqAccess<'de> for Elements<'_, '_, '_> {
    type Error = ProbeError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, ProbeError> {
        let node = match &self.items {
            Items::Repeat(c, n) if self.i < *n => *c,
            Items::List(v) if self.i < v.len() => v[self.i],
            _ => return Ok(None),
        };
        // Every element of a repeated sequence is on the way to a target
        // below it only as element 0.
        let step = match self.items {
            Items::Repeat(..) => 0,
            Items::List(_) => self.i,
        };
        let child = if matches!(self.items, Items::Repeat(..)) && self.i > 0 {
            off_path(self.parent, node)
        } else {
            self.parent.child(node, &[step])
        };
        self.i += 1;
        if self.counting {
            self.parent.state.taken.set(self.i);
        }
        seed.deserialize(child).map(Some)
    }
}

/// A child that is never on the way to the target.
fn off_path<'a, 's>(parent: &Probe<'a, 's>, node: &'a OwnedNamedType) -> Probe<'a, 's> {
    Probe {
        node,
        state: parent.state,
        // A position no target path starts with.
        at: vec![usize::MAX],
    }
}

struct Entries<'p, 'a, 's> {
    parent: &'p Probe<'a, 's>,
    key: &'a OwnedNamedType,
    val: &'a OwnedNamedType,
    n: usize,
    i: usize,
    counting: bool,
}

/// A key deserializer that gives distinct keys (the map's capacity counts
/// distinct keys only).
struct DistinctKey<'a> {
    node: &'a OwnedNamedType,
    i: usize,
}

impl<'de> de::Deserializer<'de> for DistinctKey<'_> {
    type Error = ProbeError;

    fn deserialize_any<W: Visitor<'de>>(self, v: W) -> Result<W::Value, ProbeError> {
        let i = self.i;
        match &self.node.ty {
            D::U8 => v.visit_u8(u8::try_from(i).map_err(|_| ProbeError)?),
            D::I8 => v.visit_i8(i8::try_from(i).map_err(|_| ProbeError)?),
            D::U16 => v.visit_u16(u16::try_from(i).map_err(|_| ProbeError)?),
            D::I16 => v.visit_i16(i16::try_from(i).map_err(|_| ProbeError)?),
            D::U32 => v.visit_u32(i as u32),
            D::I32 => v.visit_i32(i as i32),
            D::U64 | D::Usize => v.visit_u64(i as u64),
            D::I64 | D::Isize => v.visit_i64(i as i64),
            D::U128 => v.visit_u128(i as u128),
            D::I128 => v.visit_i128(i as i128),
            D::String => v.visit_str(&i.to_string()),
            D::NewtypeStruct(c) => v.visit_newtype_struct(DistinctKey { node: c, i }),
            _ => Err(ProbeError),
        }
    }

    fn is_human_readable(&self) -> bool {
        false
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> MapAccess<'de> for Entries<'_, '_, '_> {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        if self.i >= self.n {
            return Ok(None);
        }
        let k = if self.counting {
            seed.deserialize(DistinctKey {
                node: self.key,
                i: self.i,
            })?
        } else {
            seed.deserialize(self.parent.child(self.key, &[0]))?
        };
        self.i += 1;
        if self.counting {
            self.parent.state.taken.set(self.i);
        }
        Ok(Some(k))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, ProbeError> {
        seed.deserialize(self.parent.child(self.val, &[1]))
    }
}

struct Variant<'p, 'a, 's> {
    parent: &'p Probe<'a, 's>,
    idx: usize,
    kind: &'a V,
}

impl<'de, 'p, 'a, 's> EnumAccess<'de> for Variant<'p, 'a, 's> {
    type Error = ProbeError;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self), ProbeError> {
        let idx = u32::try_from(self.idx).map_err(|_| ProbeError)?;
        let v = seed.deserialize(de::value::U32Deserializer::<ProbeError>::new(idx))?;
        Ok((v, self))
    }
}

impl<'de> VariantAccess<'de> for Variant<'_, '_, '_> {
    type Error = ProbeError;

    fn unit_variant(self) -> Result<(), ProbeError> {
        match self.kind {
            V::UnitVariant => Ok(()),
            _ => Err(ProbeError),
        }
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, ProbeError> {
        match self.kind {
            V::NewtypeVariant(c) => seed.deserialize(self.parent.child(c, &[self.idx, 0])),
            _ => Err(ProbeError),
        }
    }

    fn tuple_variant<W: Visitor<'de>>(self, _len: usize, v: W) -> Result<W::Value, ProbeError> {
        match self.kind {
            V::TupleVariant(cs) => v.visit_seq(VariantElements {
                parent: self.parent,
                items: cs.iter().collect(),
                idx: self.idx,
                i: 0,
            }),
            _ => Err(ProbeError),
        }
    }

    fn struct_variant<W: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: W,
    ) -> Result<W::Value, ProbeError> {
        match self.kind {
            V::StructVariant(fs) => v.visit_seq(VariantElements {
                parent: self.parent,
                items: fs.iter().map(|f| &f.ty).collect(),
                idx: self.idx,
                i: 0,
            }),
            _ => Err(ProbeError),
        }
    }
}

struct VariantElements<'p, 'a, 's> {
    parent: &'p Probe<'a, 's>,
    items: Vec<&'a OwnedNamedType>,
    idx: usize,
    i: usize,
}

impl<'de> SeqAccess<'de> for VariantElements<'_, '_, '_> {
    type Error = ProbeError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, ProbeError> {
        let Some(node) = self.items.get(self.i) else {
            return Ok(None);
        };
        let child = self.parent.child(node, &[self.idx, self.i]);
        self.i += 1;
        seed.deserialize(child).map(Some)
    }
}
