//! Typed frames: a C program sets and gets fields by path; the frame
//! encodes itself as postcard for a publish and decodes a received frame.
//!
//! A frame owns a value store sized from its schema's [`Layout`](crate::layout::Layout) when it is
//! made: numbers in one array, strings and byte lists in buffers reserved
//! to their capacity, list lengths in another array, and an encode buffer of
//! the schema's maximum frame size. Setting fields, publishing and reading
//! then allocate nothing.

use core::ffi::c_char;

use crate::cabi;
use crate::handles::{self, Held, Kind, Object};
use crate::layout::{Cursor, LeafKind, Node, Prim, Target, put_varint, zigzag};
use crate::schema::{self, SchemaHandle, shmbus_schema};
use crate::status::*;
use shmbus_core::layout::MAX_FRAME_CAPACITY;

/// A frame handle (from `shmbus_frame_new`). Zero is never a valid handle.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types, reason = "C type name, as the header shows it")]
pub struct shmbus_frame {
    /// Opaque id.
    pub id: u64,
}

/// The values of one message of a schema.
#[derive(Debug)]
pub struct Frame {
    /// The schema (its layout is `Ok`: checked when the frame was made).
    pub schema: SchemaHandle,
    nums: Vec<u64>,
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    /// The last encoding.
    pub encoded: Vec<u8>,
    /// Where a received frame is decoded before it replaces the values
    /// (all or nothing), sized as they are so a read allocates nothing.
    scratch: Box<Scratch>,
}

/// A second value store, for decoding.
#[derive(Debug)]
struct Scratch {
    nums: Vec<u64>,
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
}

/// An empty buffer with room for `n` bytes, or `SHMBUS_ERR_SYSTEM_LIMIT`
/// when memory is short (never an abort).
fn reserved(n: usize) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::new(
            SHMBUS_ERR_SYSTEM_LIMIT,
            format!("out of memory for a frame buffer of {n} bytes"),
        )
    })?;
    Ok(v)
}

impl Frame {
    /// A frame with every number 0, every string and list empty.
    pub fn new(schema: SchemaHandle) -> Result<Frame> {
        let l = match &schema.layout {
            Ok(l) => l,
            Err(e) => return Err(e.clone()),
        };
        // A frame larger than any topic holds would only cost memory (and
        // a capacity such as heapless::Vec<u8, 4000000000000> cannot be
        // allocated at all: Rust would abort the process).
        let max = l.max_size.unwrap_or(256);
        if max > MAX_FRAME_CAPACITY {
            return fail(
                SHMBUS_ERR_TOO_LARGE,
                format!(
                    "a frame of this schema can be {max} bytes, more than a topic's frames hold ({MAX_FRAME_CAPACITY} bytes): declare smaller capacities (heapless::String<N>, heapless::Vec<T, N>)"
                ),
            );
        }
        let buffers = || -> Result<Vec<Vec<u8>>> {
            let mut bufs = Vec::with_capacity(l.bufs);
            for leaf in &l.leaves {
                if let LeafKind::Str(cap) | LeafKind::Bytes(cap) = leaf.kind {
                    bufs.push(reserved(cap.unwrap_or(64))?);
                }
            }
            Ok(bufs)
        };
        Ok(Frame {
            nums: vec![0; l.nums],
            bufs: buffers()?,
            lens: vec![0; l.lists.len()],
            encoded: reserved(max)?,
            scratch: Box::new(Scratch {
                nums: vec![0; l.nums],
                bufs: buffers()?,
                lens: vec![0; l.lists.len()],
            }),
            schema,
        })
    }

    fn layout(&self) -> &crate::layout::Layout {
        self.schema
            .layout
            .as_ref()
            .expect("a frame is only made for a schema with a layout")
    }

    /// Every value back to zero / empty.
    pub fn clear(&mut self) {
        self.nums.fill(0);
        self.bufs.iter_mut().for_each(Vec::clear);
        self.lens.fill(0);
    }

    fn target(&self, path: &str) -> Result<Target> {
        let layout = self.layout();
        layout.find(path).ok_or_else(|| {
            let why = match layout.past_capacity(path) {
                Some((list, 0, _)) => format!("list '{list}' holds no elements"),
                Some((list, cap, index)) => format!(
                    "index {index} is past the end of list '{list}', which holds {cap} ({list}[0] to {list}[{}])",
                    cap - 1
                ),
                None => "fields look like name, outer.inner, array[2]".to_string(),
            };
            Error::new(
                SHMBUS_ERR_NO_FIELD,
                format!(
                    "schema '{}' has no field '{}': {why}",
                    self.schema.owned.name,
                    shmbus_core::topic::shown(path)
                ),
            )
        })
    }

    /// The leaf at `path`, checked to be live (inside each enclosing list's
    /// length) for a get. For a set it is not made live here: the setter
    /// checks the value first and then calls [`Frame::make_live`], so a
    /// refused set leaves every list as it was.
    fn leaf(&mut self, path: &str, for_set: bool) -> Result<(usize, LeafKind, usize)> {
        let i = match self.target(path)? {
            Target::Leaf(i) => i,
            Target::List(_) => {
                return fail(
                    SHMBUS_ERR_WRONG_TYPE,
                    format!(
                        "'{path}' is a list: set or get its elements ({path}[0], ...) or its length"
                    ),
                );
            }
        };
        let layout = self.schema.layout.as_ref().expect("checked at new");
        let leaf = &layout.leaves[i];
        if !for_set {
            live(layout, &self.lens, path, &leaf.within)?;
        }
        Ok((i, leaf.kind, leaf.slot))
    }

    /// Make leaf `i` live ([`make_live`]): called by a setter once the
    /// value is known to fit.
    fn make_live(&mut self, i: usize) {
        let layout = self.schema.layout.as_ref().expect("checked at new");
        make_live(
            layout,
            &mut self.nums,
            &mut self.bufs,
            &mut self.lens,
            &layout.leaves[i].within,
        );
    }

    fn wrong(&self, path: &str, kind: LeafKind, wanted: &str) -> Error {
        Error::new(
            SHMBUS_ERR_WRONG_TYPE,
            format!("field '{path}' is {}, not {wanted}", kind.name()),
        )
    }

    /// Set an integer field from a signed or unsigned value, range-checked.
    pub fn set_int(&mut self, path: &str, v: i128) -> Result<()> {
        let (i, kind, slot) = self.leaf(path, true)?;
        let LeafKind::Prim(p) = kind else {
            return Err(self.wrong(path, kind, "an integer"));
        };
        let Some((lo, hi)) = p.int_range() else {
            return Err(self.wrong(path, kind, "an integer"));
        };
        if v < lo || v > hi {
            return fail(
                SHMBUS_ERR_RANGE,
                format!(
                    "{v} does not fit field '{path}' ({}: {lo} to {hi})",
                    p.name()
                ),
            );
        }
        self.make_live(i);
        // Two's complement bits: signed fields are read back as i64.
        self.nums[slot] = v as u64;
        Ok(())
    }

    /// Get an integer field.
    pub fn get_int(&mut self, path: &str) -> Result<i128> {
        let (_, kind, slot) = self.leaf(path, false)?;
        match kind {
            LeafKind::Prim(p) if p.int_range().is_some() => Ok(if p.int_range().unwrap().0 == 0 {
                i128::from(self.nums[slot])
            } else {
                i128::from(self.nums[slot] as i64)
            }),
            _ => Err(self.wrong(path, kind, "an integer")),
        }
    }

    /// Set a float field (`f32` fields refuse finite values beyond f32's
    /// range; NaN and infinities are kept).
    pub fn set_float(&mut self, path: &str, v: f64) -> Result<()> {
        let (i, kind, slot) = self.leaf(path, true)?;
        let bits = match kind {
            LeafKind::Prim(Prim::F64) => v.to_bits(),
            LeafKind::Prim(Prim::F32) => {
                let f = v as f32;
                if v.is_finite() && f.is_infinite() {
                    // `{:e}`: `{}` writes 1e300 as 301 digits.
                    return fail(
                        SHMBUS_ERR_RANGE,
                        format!(
                            "{v:e} does not fit field '{path}' (f32: at most {:e} in magnitude)",
                            f32::MAX
                        ),
                    );
                }
                u64::from(f.to_bits())
            }
            _ => return Err(self.wrong(path, kind, "a float")),
        };
        self.make_live(i);
        self.nums[slot] = bits;
        Ok(())
    }

    /// Get a float field.
    pub fn get_float(&mut self, path: &str) -> Result<f64> {
        let (_, kind, slot) = self.leaf(path, false)?;
        match kind {
            LeafKind::Prim(Prim::F64) => Ok(f64::from_bits(self.nums[slot])),
            LeafKind::Prim(Prim::F32) => Ok(f64::from(f32::from_bits(self.nums[slot] as u32))),
            _ => Err(self.wrong(path, kind, "a float")),
        }
    }

    /// Set a bool field.
    pub fn set_bool(&mut self, path: &str, v: bool) -> Result<()> {
        let (i, kind, slot) = self.leaf(path, true)?;
        if kind != LeafKind::Prim(Prim::Bool) {
            return Err(self.wrong(path, kind, "a bool"));
        }
        self.make_live(i);
        self.nums[slot] = u64::from(v);
        Ok(())
    }

    /// Get a bool field.
    pub fn get_bool(&mut self, path: &str) -> Result<bool> {
        let (_, kind, slot) = self.leaf(path, false)?;
        if kind != LeafKind::Prim(Prim::Bool) {
            return Err(self.wrong(path, kind, "a bool"));
        }
        Ok(self.nums[slot] != 0)
    }

    /// Set a string (`str`) or byte-list (`!str`) field, capacity-checked.
    pub fn set_buf(&mut self, path: &str, v: &[u8], str: bool) -> Result<()> {
        let (i, kind, slot) = self.leaf(path, true)?;
        let cap = match (kind, str) {
            (LeafKind::Str(cap), true) => {
                if core::str::from_utf8(v).is_err() {
                    return fail(
                        SHMBUS_ERR_INVALID,
                        format!("the value for '{path}' is not valid UTF-8"),
                    );
                }
                cap
            }
            (LeafKind::Bytes(cap), false) => cap,
            _ => return Err(self.wrong(path, kind, if str { "a string" } else { "bytes" })),
        };
        if let Some(cap) = cap {
            if v.len() > cap {
                return fail(
                    SHMBUS_ERR_RANGE,
                    format!(
                        "{} {} field '{path}' ({})",
                        shmbus_core::plural::count(v.len(), "byte"),
                        if v.len() == 1 { "exceeds" } else { "exceed" },
                        kind.name()
                    ),
                );
            }
        }
        self.make_live(i);
        let b = &mut self.bufs[slot];
        b.clear();
        b.extend_from_slice(v);
        Ok(())
    }

    /// A string (`str`) or byte-list field's bytes.
    pub fn get_buf(&mut self, path: &str, str: bool) -> Result<&[u8]> {
        let (_, kind, slot) = self.leaf(path, false)?;
        match (kind, str) {
            (LeafKind::Str(_), true) | (LeafKind::Bytes(_), false) => Ok(&self.bufs[slot]),
            _ => Err(self.wrong(path, kind, if str { "a string" } else { "bytes" })),
        }
    }

    /// The length of a list (elements), string or byte list (bytes).
    pub fn len(&mut self, path: &str) -> Result<usize> {
        match self.target(path)? {
            Target::List(list) => {
                let l = self.schema.layout.as_ref().expect("checked at new");
                live(l, &self.lens, path, &l.lists[list].within)?;
                Ok(self.lens[list])
            }
            Target::Leaf(_) => {
                let (_, kind, slot) = self.leaf(path, false)?;
                match kind {
                    LeafKind::Str(_) | LeafKind::Bytes(_) => Ok(self.bufs[slot].len()),
                    _ => Err(self.wrong(path, kind, "a list or string")),
                }
            }
        }
    }

    /// Set the length of a list (`heapless::Vec<T, N>`, at most N). New
    /// elements start at zero.
    pub fn set_len(&mut self, path: &str, n: usize) -> Result<()> {
        let schema = self.schema.clone();
        let l = schema.layout.as_ref().expect("checked at new");
        let Target::List(list) = self.target(path)? else {
            return fail(
                SHMBUS_ERR_WRONG_TYPE,
                format!(
                    "'{path}' is not a list with a capacity; set strings and bytes with their own functions"
                ),
            );
        };
        let cap = l.lists[list].cap;
        if n > cap {
            return fail(
                SHMBUS_ERR_RANGE,
                format!(
                    "list '{path}' holds at most {}, not {n}",
                    shmbus_core::plural::count(cap, "element")
                ),
            );
        }
        // A list inside another list's element: that element becomes live.
        make_live(
            l,
            &mut self.nums,
            &mut self.bufs,
            &mut self.lens,
            &l.lists[list].within,
        );
        if n > self.lens[list] {
            grow(l, &mut self.nums, &mut self.bufs, &mut self.lens, list, n);
        } else {
            self.lens[list] = n;
        }
        Ok(())
    }

    /// Encode into `self.encoded`.
    pub fn encode(&mut self) -> &[u8] {
        let l = self.schema.layout.as_ref().expect("checked at new");
        self.encoded.clear();
        encode_node(
            l,
            &l.root,
            &self.nums,
            &self.bufs,
            &self.lens,
            &mut self.encoded,
        );
        &self.encoded
    }

    /// Decode `bytes` into the frame, all or nothing: the values change
    /// only if the whole frame decodes (it is decoded into a second store,
    /// then the two are swapped).
    pub fn decode(&mut self, bytes: &[u8]) -> core::result::Result<(), &'static str> {
        let l = self.schema.layout.as_ref().expect("checked at new");
        // Decoding writes every live value (each field, each list's length,
        // each element up to it); what it leaves in the store are elements
        // past a list's length, which no get can see and which a set that
        // makes them live zeroes first (`grow`). So the second store needs
        // no copy of the first.
        let s = &mut *self.scratch;
        let mut c = Cursor { bytes, pos: 0 };
        decode_node(l, &l.root, &mut s.nums, &mut s.bufs, &mut s.lens, &mut c)?;
        core::mem::swap(&mut self.nums, &mut s.nums);
        core::mem::swap(&mut self.bufs, &mut s.bufs);
        core::mem::swap(&mut self.lens, &mut s.lens);
        Ok(())
    }
}

/// Check that every enclosing list element is within its list's length
/// (a get: an element past a list's end is an error, nothing changes).
fn live(
    l: &crate::layout::Layout,
    lens: &[usize],
    path: &str,
    within: &[(usize, usize)],
) -> Result<()> {
    for &(list, index) in within {
        if index >= lens[list] {
            return fail(
                SHMBUS_ERR_RANGE,
                format!(
                    "'{path}' is past the end of list '{}' (length {})",
                    l.lists[list].path, lens[list]
                ),
            );
        }
    }
    Ok(())
}

/// Extend the enclosing lists so every element in `within` is live (a set,
/// once its value is known to fit); new elements start at zero.
fn make_live(
    l: &crate::layout::Layout,
    nums: &mut [u64],
    bufs: &mut [Vec<u8>],
    lens: &mut [usize],
    within: &[(usize, usize)],
) {
    for &(list, index) in within {
        if index >= lens[list] {
            grow(l, nums, bufs, lens, list, index + 1);
        }
    }
}

/// Extend list `list` to `n` elements, zeroing the new elements (their
/// leaves and nested lists).
fn grow(
    l: &crate::layout::Layout,
    nums: &mut [u64],
    bufs: &mut [Vec<u8>],
    lens: &mut [usize],
    list: usize,
    n: usize,
) {
    let from = lens[list];
    for (leaves, lists) in &l.lists[list].elems[from..n] {
        for leaf in &l.leaves[leaves.clone()] {
            match leaf.kind {
                LeafKind::Prim(_) => nums[leaf.slot] = 0,
                _ => bufs[leaf.slot].clear(),
            }
        }
        lens[lists.clone()].fill(0);
    }
    lens[list] = n;
}

fn encode_node(
    l: &crate::layout::Layout,
    node: &Node,
    nums: &[u64],
    bufs: &[Vec<u8>],
    lens: &[usize],
    out: &mut Vec<u8>,
) {
    match node {
        Node::Leaf(i) => {
            let leaf = &l.leaves[*i];
            match leaf.kind {
                LeafKind::Prim(p) => {
                    let v = nums[leaf.slot];
                    match p {
                        Prim::Bool | Prim::U8 | Prim::I8 => out.push(v as u8),
                        Prim::U16 | Prim::U32 | Prim::U64 => put_varint(out, v),
                        Prim::I16 | Prim::I32 | Prim::I64 => put_varint(out, zigzag(v as i64)),
                        Prim::F32 => out.extend_from_slice(&(v as u32).to_le_bytes()),
                        Prim::F64 => out.extend_from_slice(&v.to_le_bytes()),
                    }
                }
                LeafKind::Str(_) | LeafKind::Bytes(_) => {
                    let b = &bufs[leaf.slot];
                    put_varint(out, b.len() as u64);
                    out.extend_from_slice(b);
                }
            }
        }
        Node::Group(nodes) => {
            for n in nodes {
                encode_node(l, n, nums, bufs, lens, out);
            }
        }
        Node::List(list, elems) => {
            let n = lens[*list];
            put_varint(out, n as u64);
            for e in &elems[..n] {
                encode_node(l, e, nums, bufs, lens, out);
            }
        }
    }
}

fn decode_node(
    l: &crate::layout::Layout,
    node: &Node,
    nums: &mut [u64],
    bufs: &mut [Vec<u8>],
    lens: &mut [usize],
    c: &mut Cursor<'_>,
) -> core::result::Result<(), &'static str> {
    match node {
        Node::Leaf(i) => {
            let leaf = &l.leaves[*i];
            match leaf.kind {
                LeafKind::Prim(p) => {
                    nums[leaf.slot] = match p {
                        Prim::Bool => match c.byte()? {
                            0 => 0,
                            1 => 1,
                            _ => return Err("a bool is neither 0 nor 1"),
                        },
                        Prim::U8 => u64::from(c.byte()?),
                        Prim::I8 => c.byte()? as i8 as i64 as u64,
                        Prim::U16 => c.varint(u16::MAX.into())?,
                        Prim::U32 => c.varint(u32::MAX.into())?,
                        Prim::U64 => c.varint(u64::MAX)?,
                        Prim::I16 => unzig(c.varint(u16::MAX.into())?) as u64,
                        Prim::I32 => unzig(c.varint(u32::MAX.into())?) as u64,
                        Prim::I64 => unzig(c.varint(u64::MAX)?) as u64,
                        Prim::F32 => {
                            let b = c.take(4)?;
                            u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        }
                        Prim::F64 => {
                            let b = c.take(8)?;
                            let mut a = [0u8; 8];
                            a.copy_from_slice(b);
                            u64::from_le_bytes(a)
                        }
                    };
                }
                LeafKind::Str(cap) | LeafKind::Bytes(cap) => {
                    let max = cap.unwrap_or(c.bytes.len()) as u64;
                    let n = c
                        .varint(max)
                        .map_err(|_| "a string or byte list is longer than its capacity")?;
                    let b = c.take(n as usize)?;
                    if matches!(leaf.kind, LeafKind::Str(_)) && core::str::from_utf8(b).is_err() {
                        return Err("a string is not valid UTF-8");
                    }
                    let dst = &mut bufs[leaf.slot];
                    dst.clear();
                    dst.extend_from_slice(b);
                }
            }
        }
        Node::Group(nodes) => {
            for n in nodes {
                decode_node(l, n, nums, bufs, lens, c)?;
            }
        }
        Node::List(list, elems) => {
            let n = c
                .varint(elems.len() as u64)
                .map_err(|_| "a list is longer than its capacity")? as usize;
            lens[*list] = n;
            for e in &elems[..n] {
                decode_node(l, e, nums, bufs, lens, c)?;
            }
        }
    }
    Ok(())
}

fn unzig(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

// ------------------------------------------------------------------ exports

fn frame_of(held: &mut Held) -> &mut Frame {
    match held.object() {
        Object::Frame(f) => f,
        _ => unreachable!("handles::get checked the kind"),
    }
}

/// Run `f` on the frame behind handle `frame`.
pub(crate) fn with<R>(frame: shmbus_frame, f: impl FnOnce(&mut Frame) -> Result<R>) -> Result<R> {
    let mut held = handles::get(frame.id, Kind::Frame)?;
    f(frame_of(&mut held))
}

/// Lock the frame `frame` as the second handle of a call.
pub(crate) fn held_second(frame: shmbus_frame, first: &Held) -> Result<Held> {
    handles::get_second(frame.id, Kind::Frame, first)
}

/// The frame in a held slot.
pub(crate) fn in_held(held: &mut Held) -> &mut Frame {
    frame_of(held)
}

/// Make a frame for messages of `schema`, every field zero or empty.
/// `SHMBUS_ERR_UNSUPPORTED` if the schema has a shape the typed field
/// functions do not cover (the message names the field).
///
/// # Safety
/// `out` points to a writable `shmbus_frame`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_frame_new(schema: shmbus_schema, out: *mut shmbus_frame) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        let frame = Frame::new(schema::get(schema)?)?;
        *out = shmbus_frame {
            id: handles::insert(Object::Frame(Box::new(frame)))?,
        };
        Ok(SHMBUS_OK)
    })
}

/// Close a frame.
#[unsafe(no_mangle)]
pub extern "C" fn shmbus_frame_close(frame: shmbus_frame) -> i32 {
    guard(|| {
        drop(handles::remove(frame.id, Kind::Frame)?);
        Ok(SHMBUS_OK)
    })
}

/// Set every field back to zero, every string and list to empty.
#[unsafe(no_mangle)]
pub extern "C" fn shmbus_frame_clear(frame: shmbus_frame) -> i32 {
    guard(|| {
        with(frame, |f| {
            f.clear();
            Ok(SHMBUS_OK)
        })
    })
}

/// The frame behind `frame` and the path, for the field functions.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
unsafe fn access(
    frame: shmbus_frame,
    path: *const c_char,
    f: impl FnOnce(&mut Frame, &str) -> Result<()>,
) -> i32 {
    guard_local(|| {
        // SAFETY: the caller's contract.
        let path = unsafe { cabi::text(path, "path") }?;
        with(frame, |fr| f(fr, path))?;
        Ok(SHMBUS_OK)
    })
}

/// Set an integer field (any width, signed or unsigned) from an
/// unsigned value; `SHMBUS_ERR_RANGE` if it does not fit the field's
/// type. Setting an element of a list extends the list to it.
///
/// # Safety
/// `path` is a NUL-terminated string; the other pointers point to valid
/// memory of their type (buffers: of the capacity given).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_frame_set_u64(
    frame: shmbus_frame,
    path: *const c_char,
    value: u64,
) -> i32 {
    let op = |f: &mut Frame, p: &str| f.set_int(p, value.into());
    // SAFETY: the caller's contract, forwarded.
    unsafe { access(frame, path, op) }
}

/// Set an integer field from a signed value, range-checked.
///
/// # Safety
/// `path` is a NUL-terminated string; the other pointers point to valid
/// memory of their type (buffers: of the capacity given).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_frame_set_i64(
    frame: shmbus_frame,
    path: *const c_char,
    value: i64,
) -> i32 {
    let op = |f: &mut Frame, p: &str| f.set_int(p, value.into());
    // SAFETY: the caller's contract, forwarded.
    unsafe { access(frame, path, op) }
}

/// Set an `f32` or `f64` field. For an `f32` field the value is rounded;
/// a finite value beyond f32's range is `SHMBUS_ERR_RANGE`.
///
/// # Safety
/// `path` is a NUL-terminated string; the other pointers point to valid
/// memory of their type (buffers: of the capacity given).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_frame_set_f64(
    frame: shmbus_frame,
    path: *const c_char,
    value: f64,
) -> i32 {
    let op = |f: &mut Frame, p: &str| f.set_float(p, value);
    // SAFETY: the caller's contract, forwarded.
    unsafe { access(frame, path, op) }
}

/// Set a `bool` field (any non-zero `value` is true).
///
/// # Safety
/// `path` is a NUL-terminated string; the other pointers point to valid
/// memory of their type (buffers: of the capacity given).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_frame_set_bool(
    frame: shmbus_frame,
    path: *const c_char,
    value: i32,
) -> i32 {
    let op = |f: &mut Frame, p: &str| f.set_bool(p, value != 0);
    // SAFETY: the caller's contract, forwarded.
    unsafe { access(frame, path, op) }
}

/// Set a string field from a NUL-terminated UTF-8 string;
/// `SHMBUS_ERR_RANGE` beyond its capacity (`heapless::String<N>`: N
/// bytes).
///
/// # Safety
/// `path` is a NUL-terminated string; the other pointers point to valid
/// memory of their type (buffers: of the capacity given).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_frame_set_str(
    frame: shmbus_frame,
    path: *const c_char,
    value: *const c_char,
) -> i32 {
    let op = |f: &mut Frame, p: &str| {
        // SAFETY: the caller's contract (a NUL-terminated string).
        let v = unsafe { cabi::text(value, "value") }?;
        f.set_buf(p, v.as_bytes(), true)
    };
    // SAFETY: the caller's contract, forwarded.
    unsafe { access(frame, path, op) }
}

/// Set a byte-list field (`heapless::Vec<u8, N>`, byte arrays) from
/// `len` bytes.
///
/// # Safety
/// `path` is a NUL-terminated string; the other pointers point to valid
/// memory of their type (buffers: of the capacity given).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_frame_set_bytes(
    frame: shmbus_frame,
    path: *const c_char,
    value: *const u8,
    len: usize,
) -> i32 {
    let op = |f: &mut Frame, p: &str| {
        // SAFETY: the caller's contract (`len` readable bytes).
        let v = unsafe { cabi::bytes(value, len, "value") }?;
        f.set_buf(p, v, false)
    };
    // SAFETY: the caller's contract, forwarded.
    unsafe { access(frame, path, op) }
}

/// Set the number of elements of a list with a capacity
/// (`heapless::Vec<T, N>`); new elements start at zero.
///
/// # Safety
/// `path` is a NUL-terminated string; the other pointers point to valid
/// memory of their type (buffers: of the capacity given).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_frame_set_len(
    frame: shmbus_frame,
    path: *const c_char,
    len: usize,
) -> i32 {
    let op = |f: &mut Frame, p: &str| f.set_len(p, len);
    // SAFETY: the caller's contract, forwarded.
    unsafe { access(frame, path, op) }
}

/// Get an integer field as unsigned; `SHMBUS_ERR_RANGE` if it is
/// negative.
///
/// # Safety
/// `path` is a NUL-terminated string; the other pointers point to valid
/// memory of their type (buffers: of the capacity given).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_frame_get_u64(
    frame: shmbus_frame,
    path: *const c_char,
    out: *mut u64,
) -> i32 {
    let op = |f: &mut Frame, p: &str| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        let v = f.get_int(p)?;
        *out = u64::try_from(v).map_err(|_| {
            Error::new(
                SHMBUS_ERR_RANGE,
                format!("field '{p}' is {v}: negative; use shmbus_frame_get_i64"),
            )
        })?;
        Ok(())
    };
    // SAFETY: the caller's contract, forwarded.
    unsafe { access(frame, path, op) }
}

/// Get an integer field as signed; `SHMBUS_ERR_RANGE` if it is above
/// `INT64_MAX`.
///
/// # Safety
/// `path` is a NUL-terminated string; the other pointers point to valid
/// memory of their type (buffers: of the capacity given).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_frame_get_i64(
    frame: shmbus_frame,
    path: *const c_char,
    out: *mut i64,
) -> i32 {
    let op = |f: &mut Frame, p: &str| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        let v = f.get_int(p)?;
        *out = i64::try_from(v).map_err(|_| {
            Error::new(
                SHMBUS_ERR_RANGE,
                format!("field '{p}' is {v}: above INT64_MAX; use shmbus_frame_get_u64"),
            )
        })?;
        Ok(())
    };
    // SAFETY: the caller's contract, forwarded.
    unsafe { access(frame, path, op) }
}

/// Get an `f32` or `f64` field.
///
/// # Safety
/// `path` is a NUL-terminated string; the other pointers point to valid
/// memory of their type (buffers: of the capacity given).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_frame_get_f64(
    frame: shmbus_frame,
    path: *const c_char,
    out: *mut f64,
) -> i32 {
    let op = |f: &mut Frame, p: &str| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        *out = f.get_float(p)?;
        Ok(())
    };
    // SAFETY: the caller's contract, forwarded.
    unsafe { access(frame, path, op) }
}

/// Get a `bool` field (1 or 0).
///
/// # Safety
/// `path` is a NUL-terminated string; the other pointers point to valid
/// memory of their type (buffers: of the capacity given).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_frame_get_bool(
    frame: shmbus_frame,
    path: *const c_char,
    out: *mut i32,
) -> i32 {
    let op = |f: &mut Frame, p: &str| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        *out = i32::from(f.get_bool(p)?);
        Ok(())
    };
    // SAFETY: the caller's contract, forwarded.
    unsafe { access(frame, path, op) }
}

/// Copy a string field and a NUL into `buf` (`cap` bytes). `*len` is
/// the string's length without the NUL, also when the buffer is too
/// small (`SHMBUS_ERR_BUFFER_TOO_SMALL`: `*len + 1` bytes are needed).
///
/// # Safety
/// `path` is a NUL-terminated string; the other pointers point to valid
/// memory of their type (buffers: of the capacity given).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_frame_get_str(
    frame: shmbus_frame,
    path: *const c_char,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> i32 {
    let op = |f: &mut Frame, p: &str| {
        // SAFETY: the caller's contract.
        let len = unsafe { cabi::out(len, "len") }?;
        // SAFETY: the caller's contract.
        let buf = unsafe { cabi::buffer(buf.cast(), cap, "buf") }?;
        let s = f.get_buf(p, true)?;
        *len = s.len();
        cabi::copy_str_out(s, buf, format_args!("field '{p}'"))?;
        Ok(())
    };
    // SAFETY: the caller's contract, forwarded.
    unsafe { access(frame, path, op) }
}

/// Copy a byte-list field into `buf` (`cap` bytes); `*len` is its
/// length, also when the buffer is too small.
///
/// # Safety
/// `path` is a NUL-terminated string; the other pointers point to valid
/// memory of their type (buffers: of the capacity given).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_frame_get_bytes(
    frame: shmbus_frame,
    path: *const c_char,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> i32 {
    let op = |f: &mut Frame, p: &str| {
        // SAFETY: the caller's contract.
        let len = unsafe { cabi::out(len, "len") }?;
        // SAFETY: the caller's contract.
        let buf = unsafe { cabi::buffer(buf, cap, "buf") }?;
        let s = f.get_buf(p, false)?;
        *len = s.len();
        cabi::copy_out(s, buf, format_args!("field '{p}'"))?;
        Ok(())
    };
    // SAFETY: the caller's contract, forwarded.
    unsafe { access(frame, path, op) }
}

/// The length of a list (elements) or of a string or byte list (bytes).
///
/// # Safety
/// `path` is a NUL-terminated string; the other pointers point to valid
/// memory of their type (buffers: of the capacity given).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_frame_get_len(
    frame: shmbus_frame,
    path: *const c_char,
    out: *mut usize,
) -> i32 {
    let op = |f: &mut Frame, p: &str| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        *out = f.len(p)?;
        Ok(())
    };
    // SAFETY: the caller's contract, forwarded.
    unsafe { access(frame, path, op) }
}
