"""A clean-room check that docs/LAYOUT.md is a complete specification.

Everything below the `shmbus` import that touches a segment was written
from docs/LAYOUT.md (and docs/JSON.md for the JSON mapping the module's
reads return) alone, without the Rust sources: a reader (attach and
validate, section 7.1; "latest" and "next" with missed frames, section 5;
the schema and frame encodings, section 8; waiter registration, 7.4) and a
publisher (lock, create, header, publish: sections 5 and 6). Each is run
against the real thing: the `shmbus` module, whose core is the Rust code.

Two shortcuts, as the spec's own Python sketch (section 11) takes them:

- Python cannot issue an acquire (or any) fence, and ctypes loads and
  stores are plain machine loads and stores of the field's width. x86 does
  not reorder loads with loads nor stores with stores, so the seqlock reads
  and the publisher's stores below are correct there (CI's host); on ARM
  they are not, and this module claims nothing for ARM.
- The u64 `generation` is read as a hint (an aligned 8-byte load is atomic
  on x86_64 anyway); the slot's seqlock-validated generation decides.
- The waiter ticket (7.4, S1) is a load and a store, not an atomic
  fetch_add, and the seq_cst fence (S2) is the one the kernel's FUTEX_WAIT
  makes before it compares the word. With one registering reader (this
  test) the ticket is exact; with several, a lost increment is still "a
  change" of the word (7.4), which is all the publisher looks at.

Keys are above 0x80000000 (negative as key_t, section 1.1), derived from
the pid and the test's name, and every System V object a test creates is
removed in a finally block. Every wait is bounded (tens of seconds).
"""

import ctypes
import errno
import math
import os
import platform
import struct
import threading
import time
import zlib

import pytest

import shmbus

# ---------------------------------------------------------------- libc

libc = ctypes.CDLL(None, use_errno=True)
libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.shmdt.argtypes = [ctypes.c_void_p]
libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
libc.semget.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
libc.semctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
libc.semop.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
libc.syscall.restype = ctypes.c_long

IPC_CREAT, IPC_EXCL, IPC_NOWAIT = 0o1000, 0o2000, 0o4000
IPC_RMID = 0
GETPID, GETVAL = 11, 12
SEM_UNDO = 0x1000
SHM_RDONLY = 0o10000
SHM_DEST = 0o1000
FUTEX_WAIT, FUTEX_WAKE = 0, 1
SYS_FUTEX = {"x86_64": 202, "aarch64": 98, "armv7l": 240, "i686": 240}.get(platform.machine())

MAGIC = 0x0A5355424D485389
WAITER_MAGIC = 0x0A5254574D485389
FLAG_NOTIFY, FLAG_WAITERS = 1, 2
GEN_LIMIT = 1 << 62
FAILED = ctypes.c_void_p(-1).value


def key_t(key):
    """key_t is signed: keys 0x80000000 and above are negative (1.1)."""
    return key - (1 << 32) if key >= 1 << 31 else key


def test_key(name, n=0):
    """A key above 0x80000000 no other test (or run) uses."""
    return 0x80000000 | (zlib.crc32(name.encode()) & 0x7FF) << 20 | (os.getpid() & 0xFFFF) << 4 | n


test_key.__test__ = False


def remove_ipc(key):
    """Remove the segment and the semaphore at `key`, if any."""
    shmid = libc.shmget(key_t(key), 0, 0)
    if shmid >= 0:
        libc.shmctl(shmid, IPC_RMID, None)
    semid = libc.semget(key_t(key), 0, 0)
    if semid >= 0:
        libc.semctl(semid, 0, IPC_RMID)


def proc_shm(shmid):
    """/proc/sysvipc/shm's row of `shmid`: the kernel's view, not the header's."""
    with open("/proc/sysvipc/shm") as f:
        cols = f.readline().split()
        for line in f:
            row = dict(zip(cols, line.split()))
            if int(row["shmid"]) == shmid:
                return {k: int(v, 8 if k == "perms" else 10) for k, v in row.items()}
    raise FileNotFoundError("no segment with shmid %d" % shmid)


def proc_sem(key):
    """/proc/sysvipc/sem's row of the set at `key` (readable by anyone), or None."""
    with open("/proc/sysvipc/sem") as f:
        cols = f.readline().split()
        for line in f:
            row = dict(zip(cols, line.split()))
            if int(row["key"]) == key_t(key):
                return {k: int(v, 8 if k == "perms" else 10) for k, v in row.items()}
    return None


def u32(addr):
    return ctypes.c_uint32.from_address(addr).value


def u64(addr):
    return ctypes.c_uint64.from_address(addr).value


def put32(addr, v):
    ctypes.c_uint32.from_address(addr).value = v & 0xFFFFFFFF


def put64(addr, v):
    ctypes.c_uint64.from_address(addr).value = v & 0xFFFFFFFFFFFFFFFF


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def align64(x):
    return (x + 63) & ~63


def futex(addr, op, val, timeout_s=None):
    """(return value, errno) of a shared futex call (no FUTEX_PRIVATE_FLAG)."""
    ts = None
    if timeout_s is not None:

        class Timespec(ctypes.Structure):
            _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

        ts = Timespec(int(timeout_s), int((timeout_s % 1) * 1e9))
    libc.syscall.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p]
    rc = libc.syscall(SYS_FUTEX, addr, op, val & 0xFFFFFFFF, ctypes.byref(ts) if ts is not None else None)
    return rc, (ctypes.get_errno() if rc < 0 else 0)


# ---------------------------------------------------------------- reader (7.1)


class NotShmbus(Exception):
    pass


class NotReady(Exception):
    pass


class Corrupt(Exception):
    pass


class Unsupported(Exception):
    pass


class SizeMismatch(Exception):
    pass


NAME_CHARS = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/")


class Topic:
    """A read-only attachment with the validated init fields copied once."""

    def __init__(self, key):
        if key == 0:
            raise ValueError("key 0 is IPC_PRIVATE, never a topic")
        self.key = key
        self.shmid = libc.shmget(key_t(key), 0, 0)
        if self.shmid < 0:
            raise FileNotFoundError(ctypes.get_errno(), "no topic at key 0x%08x" % key)
        size = proc_shm(self.shmid)["size"]
        base = libc.shmat(self.shmid, None, SHM_RDONLY)
        if base in (None, FAILED):
            raise OSError(ctypes.get_errno(), "shmat")
        self.base = base
        try:
            # Re-checked after the attach (7.1): the smaller size bounds every read.
            self._validate(base, min(size, proc_shm(self.shmid)["size"]))
        except BaseException:
            self.close()
            raise

    def _validate(self, b, real):
        if real < 256:
            raise Corrupt("segment of %d bytes is smaller than the header" % real)
        magic = u64(b)
        if magic == 0:
            # "The lock exists" is 6.1's reading: semget(key, 0, 0) failing
            # with ENOENT/EIDRM/EINVAL is "no lock"; anything else (EACCES:
            # "unknown") is a lock.
            if libc.semget(key_t(self.key), 0, 0) < 0 and ctypes.get_errno() in (
                errno.ENOENT, errno.EIDRM, errno.EINVAL):
                raise NotShmbus("zeros and no publisher lock: another program's memory")
            # 6.1: a set of other than one semaphore is no publisher lock;
            # 7.1: nor is one whose creator did not create the segment.
            sem = proc_sem(self.key)
            if sem is not None and sem["nsems"] != 1:
                raise NotShmbus("zeros beside %d semaphores: not a publisher lock" % sem["nsems"])
            if sem is not None and sem["cuid"] != proc_shm(self.shmid)["cuid"]:
                raise NotShmbus("zeros beside another user's semaphore: not a publisher lock")
            raise NotReady("magic 0 behind a publisher lock: being created")
        if magic != MAGIC:
            raise NotShmbus("magic %#x" % magic)
        version = u32(b + 8)
        if version == 0:
            raise Corrupt("layout version 0")
        if version != 1:
            raise Unsupported("layout version %d" % version)
        hs, n, stride, cap, flags = (u32(b + o) for o in (12, 16, 20, 24, 28))
        seg_size, fp = u64(b + 32), u64(b + 40)
        s_off, s_len, name_len = u32(b + 48), u32(b + 52), u32(b + 56)
        if flags & ~3 or (flags & FLAG_WAITERS and not flags & FLAG_NOTIFY):
            raise Corrupt("flags %#x" % flags)
        if s_off != 256 or s_len > 32768:
            raise Corrupt("schema at %d, %d bytes" % (s_off, s_len))
        if not (1 <= n <= 65536 and n & (n - 1) == 0 and 1 <= cap <= 16 << 20):
            raise Corrupt("slot_count %d, frame_capacity %d" % (n, cap))
        if hs != align64(256 + s_len) or stride != align64(32 + cap) or seg_size != hs + n * stride:
            raise Corrupt("sizes do not follow section 2")
        if seg_size > real:
            raise SizeMismatch("header says %d bytes, the kernel %d" % (seg_size, real))
        name = ctypes.string_at(b + 64, min(name_len, 64))
        if not 1 <= name_len <= 63 or not set(name) <= NAME_CHARS:
            raise Corrupt("name %r" % name)
        schema = ctypes.string_at(b + 256, s_len)
        if fnv1a64(schema) != fp:
            raise Corrupt("schema fingerprint")
        if u64(b + 192) > GEN_LIMIT:
            raise Corrupt("generation beyond 2^62")
        # Private copies: nothing below reads an init field again.
        self.header_size, self.slot_count, self.slot_stride, self.cap = hs, n, stride, cap
        self.flags, self.fingerprint, self.schema, self.name = flags, fp, schema, name.decode()
        self.segment_size = seg_size

    def close(self):
        if self.base is not None:
            libc.shmdt(self.base)
            self.base = None

    # live header words
    def generation(self):
        return u64(self.base + 192)

    def notify_addr(self):
        return self.base + 200

    def waiter_ref(self):
        return u32(self.base + 212)

    def read_slot(self, g):
        """(gen, len, mono, real, frame bytes) of slot g mod slot_count,
        read with the seqlock (section 5), retries bounded."""
        slot = self.base + self.header_size + (g & (self.slot_count - 1)) * self.slot_stride
        for tries in range(100000):
            s1 = u32(slot)  # (R0); x86: loads are not reordered with loads
            if s1 & 1:
                if tries > 7:
                    time.sleep(0.0002)
                elif tries > 3:
                    os.sched_yield()
                continue
            length = u32(slot + 4)
            gen = u32(slot + 8) | u32(slot + 12) << 32
            mono = u32(slot + 16) | u32(slot + 20) << 32
            real = u32(slot + 24) | u32(slot + 28) << 32
            words = (min(length, self.cap) + 3) // 4
            data = bytes((ctypes.c_uint32 * words).from_address(slot + 32))[: min(length, self.cap)]
            # (R1): an acquire fence in C; nothing to do on x86
            if u32(slot) != s1:
                continue
            if length > self.cap:
                raise Corrupt("frame of %d bytes in a %d-byte slot" % (length, self.cap))
            if gen > GEN_LIMIT:
                raise Corrupt("slot generation beyond 2^62")
            return gen, length, mono, real, data
        raise TimeoutError("the slot stays mid-write: check the publisher lock (6.1)")

    def latest(self):
        """The newest frame (gen, mono, real, bytes), or None (section 5)."""
        g = self.generation()
        if g > GEN_LIMIT:
            raise Corrupt("generation beyond 2^62")
        if g == 0:
            return None
        gen, _, mono, real, data = self.read_slot(g)
        if gen >= g:
            return gen, mono, real, data
        return None  # 0: destroyed; 0 < gen < g: impossible, never an older frame


class Cursor:
    """An in-order reader ("next", section 5) starting at generation + 1."""

    def __init__(self, topic):
        self.t = topic
        self.c = topic.generation() + 1

    def next(self):
        """('frame', gen, bytes), ('missed', count) or None."""
        t, c = self.t, self.c
        g = t.generation()
        if g > GEN_LIMIT:
            raise Corrupt("generation beyond 2^62")
        if g < c:
            return None
        if g - c >= t.slot_count:
            o = g - t.slot_count + 1
            self.c = o
            return ("missed", o - c)
        x, _, _, _, data = t.read_slot(c)
        if x == c:
            self.c = c + 1
            return ("frame", c, data)
        if x > c:
            o = x - t.slot_count + 1
            self.c = o
            return ("missed", o - c)
        self.c = c + 1
        return ("missed", 1)


# ---------------------------------------------------------------- schema (8.3) and frames (8.1, 8.2)

PRIMS = {
    0: "Bool", 1: "I8", 2: "U8", 3: "I16", 4: "I32", 5: "I64", 6: "I128", 7: "U16", 8: "U32",
    9: "U64", 10: "U128", 11: "Usize", 12: "Isize", 13: "F32", 14: "F64", 15: "Char",
    16: "String", 17: "ByteArray", 19: "Unit", 20: "UnitStruct",
}
TAG = {v: k for k, v in PRIMS.items()}
TAG.update(Option=18, NewtypeStruct=21, Seq=22, Tuple=23, TupleStruct=24, Map=25, Struct=26, Enum=27)
INT_BITS = {"U8": 8, "U16": 16, "U32": 32, "U64": 64, "U128": 128, "Usize": 64,
            "I8": 8, "I16": 16, "I32": 32, "I64": 64, "I128": 128, "Isize": 64}


class Malformed(Exception):
    pass


class Buf:
    def __init__(self, data):
        self.d, self.i = data, 0

    def byte(self):
        if self.i >= len(self.d):
            raise Malformed("frame ends early")
        self.i += 1
        return self.d[self.i - 1]

    def take(self, n):
        if n > len(self.d) - self.i:
            raise Malformed("%d bytes wanted, %d left" % (n, len(self.d) - self.i))
        self.i += n
        return self.d[self.i - n : self.i]

    def varint(self, bits=64):
        v, shift = 0, 0
        for k in range(-(-bits // 7)):
            b = self.byte()
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                if v >> bits:
                    raise Malformed("varint beyond %d bits" % bits)
                return v
            shift += 7
        raise Malformed("varint longer than %d bytes" % -(-bits // 7))

    def string(self):
        return utf8(self.take(self.varint(32)))


def utf8(b):
    try:
        return b.decode()
    except UnicodeDecodeError as e:
        raise Malformed("not UTF-8: %s" % e) from None


def parse_schema(data, depth=0):
    """The schema bytes (8.3) as nested (kind, name, children) tuples."""
    b = Buf(data)
    t = _named_type(b, 0)
    if b.i != len(data):
        raise Malformed("bytes after the schema")
    return t


def _named_type(b, depth):
    if depth > 64:
        raise Malformed("nested deeper than 64")
    name = b.string()
    tag = b.varint(32)
    if tag in PRIMS:
        return (PRIMS[tag], name, None)
    if tag in (18, 21, 22):
        return ({18: "Option", 21: "NewtypeStruct", 22: "Seq"}[tag], name, _named_type(b, depth + 1))
    if tag in (23, 24):
        return ("Tuple" if tag == 23 else "TupleStruct", name, [_named_type(b, depth + 1) for _ in range(b.varint(32))])
    if tag == 25:
        return ("Map", name, (_named_type(b, depth + 1), _named_type(b, depth + 1)))
    if tag == 26:
        return ("Struct", name, [(b.string(), _named_type(b, depth + 1)) for _ in range(b.varint(32))])
    if tag == 27:
        variants = []
        for _ in range(b.varint(32)):
            vname, vtag = b.string(), b.varint(32)
            if vtag == 0:
                variants.append((vname, "Unit", None))
            elif vtag == 1:
                variants.append((vname, "Newtype", _named_type(b, depth + 1)))
            elif vtag == 2:
                variants.append((vname, "Tuple", [_named_type(b, depth + 1) for _ in range(b.varint(32))]))
            elif vtag == 3:
                variants.append((vname, "Struct", [(b.string(), _named_type(b, depth + 1)) for _ in range(b.varint(32))]))
            else:
                raise Malformed("variant tag %d" % vtag)
        return ("Enum", name, variants)
    raise Malformed("type tag %d" % tag)


def _put_varint(out, v):
    while True:
        if v < 0x80:
            out.append(v)
            return
        out.append(v & 0x7F | 0x80)
        v >>= 7


def _put_str(out, s):
    s = s.encode()
    _put_varint(out, len(s))
    out += s


def schema_bytes(t):
    """Encode a (kind, name, children) tree as 8.3 says (the inverse of parse_schema)."""
    out = bytearray()
    _enc_type(out, t)
    return bytes(out)


def _enc_type(out, t):
    kind, name, ch = t
    _put_str(out, name)
    _put_varint(out, TAG[kind])
    if kind in ("Option", "NewtypeStruct", "Seq"):
        _enc_type(out, ch)
    elif kind in ("Tuple", "TupleStruct"):
        _put_varint(out, len(ch))
        for c in ch:
            _enc_type(out, c)
    elif kind == "Map":
        _enc_type(out, ch[0])
        _enc_type(out, ch[1])
    elif kind == "Struct":
        _put_varint(out, len(ch))
        for fname, ft in ch:
            _put_str(out, fname)
            _enc_type(out, ft)
    elif kind == "Enum":
        _put_varint(out, len(ch))
        for vname, vkind, vch in ch:
            _put_str(out, vname)
            _put_varint(out, ["Unit", "Newtype", "Tuple", "Struct"].index(vkind))
            if vkind == "Newtype":
                _enc_type(out, vch)
            elif vkind == "Tuple":
                _put_varint(out, len(vch))
                for c in vch:
                    _enc_type(out, c)
            elif vkind == "Struct":
                _put_varint(out, len(vch))
                for fname, ft in vch:
                    _put_str(out, fname)
                    _enc_type(out, ft)


def capacity(name):
    """8.4: the last generic argument, if a decimal number."""
    if not name.endswith(">"):
        return None
    depth, i = 0, len(name) - 1
    while i >= 0:
        if name[i] == ">":
            depth += 1
        elif name[i] == "<":
            depth -= 1
            if depth == 0:
                break
        i -= 1
    if i < 0:
        return None
    last = name[i + 1 : -1].rsplit(",", 1)[-1].strip()
    return int(last) if last.isdigit() else None


def _nullable(t):
    kind, _, ch = t
    if kind in ("Option", "Unit", "UnitStruct"):
        return True
    return kind == "NewtypeStruct" and _nullable(ch)


def decode_frame(schema, data):
    """A frame (8.1, 8.2) as the JSON mapping of docs/JSON.md, as Python values.
    Floats are the exact f32/f64 values; NaN and infinities as JSON.md writes them."""
    b = Buf(data)
    v = _dec(b, schema)
    if b.i != len(data):
        raise Malformed("%d bytes left over after the value" % (len(data) - b.i))
    return v


def _float(x):
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _dec(b, t):
    kind, name, ch = t
    if kind == "Bool":
        v = b.byte()
        if v > 1:
            raise Malformed("bool %d" % v)
        return v == 1
    if kind == "U8":
        return b.byte()
    if kind == "I8":
        return struct.unpack("<b", b.take(1))[0]
    if kind in INT_BITS:
        bits = INT_BITS[kind]
        v = b.varint(bits)
        if kind.startswith("I"):
            v = (v >> 1) ^ -(v & 1)  # zigzag
        if bits == 128 and not -(1 << 63) <= v < 1 << 64:
            return str(v)
        return v
    if kind == "F32":
        return _float(struct.unpack("<f", b.take(4))[0])
    if kind == "F64":
        return _float(struct.unpack("<d", b.take(8))[0])
    if kind in ("Char", "String"):
        n = b.varint(32)
        cap = capacity(name) if kind == "String" else 4
        if cap is not None and n > cap:
            raise Malformed("%d bytes exceed %s" % (n, name))
        s = utf8(b.take(n))
        if kind == "Char" and len(s) != 1:
            raise Malformed("char of %d characters" % len(s))
        return s
    if kind == "ByteArray":
        n = b.varint(32)
        if capacity(name) is not None and n > capacity(name):
            raise Malformed("over capacity")
        return list(b.take(n))
    if kind == "Option":
        tag = b.byte()
        if tag == 0:
            return None
        if tag != 1:
            raise Malformed("option tag %d" % tag)
        v = _dec(b, ch)
        return [v] if _nullable(ch) else v
    if kind in ("Unit", "UnitStruct"):
        return None
    if kind == "NewtypeStruct":
        return _dec(b, ch)
    if kind in ("Seq", "Map"):
        n = b.varint(32)
        cap = capacity(name)
        if cap is not None and n > cap:
            raise Malformed("%d elements exceed %s" % (n, name))
        if n > len(b.d) - b.i and kind == "Seq" and ch[0] not in ("Unit", "UnitStruct"):
            raise Malformed("count beyond the bytes left")
        if kind == "Seq":
            return [_dec(b, ch) for _ in range(n)]
        out = {}
        for _ in range(n):
            k = _dec(b, ch[0])
            k = k if isinstance(k, str) else str(k)
            if k in out:
                raise Malformed("map key %r twice" % k)
            out[k] = _dec(b, ch[1])
        return out
    if kind in ("Tuple", "TupleStruct"):
        return [_dec(b, c) for c in ch]
    if kind == "Struct":
        return {fname: _dec(b, ft) for fname, ft in ch}
    if kind == "Enum":
        i = b.varint(32)
        if i >= len(ch):
            raise Malformed("variant %d of %d" % (i, len(ch)))
        vname, vkind, vch = ch[i]
        if vkind == "Unit":
            return vname
        if vkind == "Newtype":
            return {vname: _dec(b, vch)}
        if vkind == "Tuple":
            return {vname: [_dec(b, c) for c in vch]}
        return {vname: {fname: _dec(b, ft) for fname, ft in vch}}
    raise Malformed("no frame holds a %s" % kind)


def encode_frame(t, v):
    """The inverse of decode_frame, for the clean-room publisher."""
    out = bytearray()
    _enc(out, t, v)
    return bytes(out)


def _enc(out, t, v):
    kind, name, ch = t
    if kind == "Bool":
        out.append(1 if v else 0)
    elif kind == "U8":
        out.append(v)
    elif kind == "I8":
        out += struct.pack("<b", v)
    elif kind in INT_BITS:
        v = int(v)
        if kind.startswith("I"):
            v = (v << 1) ^ (v >> (INT_BITS[kind] - 1))
        _put_varint(out, v)
    elif kind in ("F32", "F64"):
        out += struct.pack("<f" if kind == "F32" else "<d", v)
    elif kind in ("Char", "String"):
        _put_str(out, v)
    elif kind in ("Tuple", "TupleStruct"):
        for c, x in zip(ch, v):
            _enc(out, c, x)
    elif kind == "Seq":
        _put_varint(out, len(v))
        for x in v:
            _enc(out, ch, x)
    elif kind == "Option":
        if v is None:
            out.append(0)
        else:
            out.append(1)
            _enc(out, ch, v[0] if _nullable(ch) else v)
    elif kind == "Struct":
        for fname, ft in ch:
            _enc(out, ft, v[fname])
    elif kind == "NewtypeStruct":
        _enc(out, ch, v)
    elif kind in ("Unit", "UnitStruct"):
        pass
    else:
        raise NotImplementedError(kind)


def as_f32(x):
    """The module writes an f32 as its shortest decimal (JSON.md 1); read it back as f32."""
    if isinstance(x, float):
        return struct.unpack("<f", struct.pack("<f", x))[0]
    return x


def same_json(ours, theirs, t):
    """Compare our decoded value with the module's, node by node (f32s as f32)."""
    kind, _, ch = t
    if kind == "F32":
        return as_f32(theirs) == ours or (ours == theirs)
    if kind == "Struct":
        return list(ours) == list(theirs) and all(same_json(ours[f], theirs[f], ft) for f, ft in ch)
    if kind in ("Tuple", "TupleStruct"):
        return len(ours) == len(theirs) and all(same_json(a, b, c) for a, b, c in zip(ours, theirs, ch))
    if kind == "Seq":
        return len(ours) == len(theirs) and all(same_json(a, b, ch) for a, b in zip(ours, theirs))
    if kind == "Option":
        if ours is None or theirs is None:
            return ours is None and theirs is None
        if _nullable(ch):
            return same_json(ours[0], theirs[0], ch)
        return same_json(ours, theirs, ch)
    if kind == "NewtypeStruct":
        return same_json(ours, theirs, ch)
    if kind == "Enum" and isinstance(ours, dict):
        (vname, x), = ours.items()
        _, vkind, vch = next(v for v in ch if v[0] == vname)
        if vkind == "Newtype":
            return list(theirs) == [vname] and same_json(x, theirs[vname], vch)
        if vkind == "Tuple":
            return list(theirs) == [vname] and all(same_json(a, b, c) for a, b, c in zip(x, theirs[vname], vch))
        return list(theirs) == [vname] and all(same_json(x[f], theirs[vname][f], ft) for f, ft in vch)
    return ours == theirs


# ---------------------------------------------------------------- tests: attach and validate (7.1)


def _make_segment(key, size):
    shmid = libc.shmget(key_t(key), size, IPC_CREAT | IPC_EXCL | 0o600)
    assert shmid >= 0, os.strerror(ctypes.get_errno())
    base = libc.shmat(shmid, None, 0)
    assert base not in (None, FAILED), os.strerror(ctypes.get_errno())
    return shmid, base


def test_a_garbage_segment_is_refused_cleanly():
    key = test_key("garbage")
    try:
        shmid, base = _make_segment(key, 4096)
        try:
            # Zeros without a publisher lock: another program's memory.
            with pytest.raises(NotShmbus):
                Topic(key)
            with pytest.raises(shmbus.ShmbusError):
                shmbus.Subscriber("x", key=key, wait=0)
            # Zeros behind a lock: being created.
            semid = libc.semget(key_t(key), 1, IPC_CREAT | IPC_EXCL | 0o600)
            assert semid >= 0
            with pytest.raises(NotReady):
                Topic(key)
            libc.semctl(semid, 0, IPC_RMID)
            # Random bytes.
            ctypes.memmove(base, os.urandom(4096), 4096)
            put64(base, MAGIC ^ 1)
            with pytest.raises(NotShmbus):
                Topic(key)
            with pytest.raises(shmbus.ShmbusError):
                shmbus.Subscriber("x", key=key, wait=0)
        finally:
            libc.shmdt(base)
    finally:
        remove_ipc(key)


def _root_or_skip(test):
    """As the Rust tests' rule: a root-only check never passes silently."""
    if os.geteuid() == 0:
        return True
    if os.environ.get("SHMBUS_SKIP_ROOT_TESTS") == "1" and "CI" not in os.environ:
        pytest.skip("%s needs root (SHMBUS_SKIP_ROOT_TESTS=1)" % test)
    pytest.fail("%s needs root to create a semaphore as another uid; run as root "
                "(CI does) or set SHMBUS_SKIP_ROOT_TESTS=1 to skip it knowingly" % test)


def _semget_as(uid, key, nsems):
    """Create a set of `nsems` semaphores at `key` as `uid` (a forked child)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(uid)
            os.setuid(uid)
            code = 0 if libc.semget(key_t(key), nsems, IPC_CREAT | IPC_EXCL | 0o600) >= 0 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def test_zeros_beside_a_semaphore_set_that_is_no_lock_are_not_a_topic():
    """6.1 and 7.1: zeros are a topic being created only beside a set of one
    semaphore that the segment's creator made; beside another program's set
    (several semaphores, or another user's) they are its memory, and the
    module says the same."""
    cases = [("several", None, 3), ("another user's", 64103, 1)]
    for n, (what, uid, nsems) in enumerate(cases):
        if uid is not None and not _root_or_skip("the another-user case"):
            continue
        key = test_key("foreign-sem", n)
        try:
            shmid, base = _make_segment(key, 4096)
            libc.shmdt(base)
            if uid is None:
                assert libc.semget(key_t(key), nsems, IPC_CREAT | IPC_EXCL | 0o600) >= 0
            else:
                _semget_as(uid, key, nsems)
            with pytest.raises(NotShmbus):
                Topic(key)
            with pytest.raises(shmbus.ShmbusError) as e:
                shmbus.Subscriber("x", key=key, wait=0)
            assert "is not a shmbus topic" in str(e.value), (what, str(e.value))
        finally:
            remove_ipc(key)


def test_a_segment_smaller_than_the_header_is_corrupt():
    key = test_key("small")
    try:
        shmid, base = _make_segment(key, 128)
        libc.shmdt(base)
        with pytest.raises(Corrupt):
            Topic(key)
    finally:
        remove_ipc(key)


# ---------------------------------------------------------------- clean-room publisher (sections 5, 6)


class Sembuf(ctypes.Structure):
    _fields_ = [("sem_num", ctypes.c_ushort), ("sem_op", ctypes.c_short), ("sem_flg", ctypes.c_short)]


class CleanPublisher:
    """Lock (6.1), create and initialise (6.2 step 2), publish (5), as written."""

    def __init__(self, key, name, schema_tree, frame_capacity, slot_count, notify=True):
        self.key, self.semid, self.shmid, self.base = key, -1, -1, None
        self.semid = libc.semget(key_t(key), 1, IPC_CREAT | IPC_EXCL | 0o600)
        if self.semid < 0:
            raise OSError(ctypes.get_errno(), "semget")
        ops = (Sembuf * 2)(Sembuf(0, 0, IPC_NOWAIT), Sembuf(0, 1, SEM_UNDO | IPC_NOWAIT))
        if libc.semop(self.semid, ops, 2) < 0:
            raise OSError(ctypes.get_errno(), "semop")
        self.schema = schema_bytes(schema_tree)
        self.tree = schema_tree
        self.n, self.cap = slot_count, frame_capacity
        self.hs = align64(256 + len(self.schema))
        self.stride = align64(32 + frame_capacity)
        self.size = self.hs + slot_count * self.stride
        self.shmid = libc.shmget(key_t(key), self.size, IPC_CREAT | IPC_EXCL | 0o600)
        if self.shmid < 0:
            raise OSError(ctypes.get_errno(), "shmget")
        self.base = libc.shmat(self.shmid, None, 0)
        b = self.base
        put64(b, 0)
        put32(b + 8, 1)
        put32(b + 12, self.hs)
        put32(b + 16, slot_count)
        put32(b + 20, self.stride)
        put32(b + 24, frame_capacity)
        self.flags = FLAG_NOTIFY if notify else 0
        put32(b + 28, self.flags)
        put64(b + 32, self.size)
        put64(b + 40, fnv1a64(self.schema))
        put32(b + 48, 256)
        put32(b + 52, len(self.schema))
        put32(b + 56, len(name))
        ctypes.memmove(b + 64, name.encode(), len(name))
        put64(b + 128, time.time_ns())
        ctypes.memmove(b + 256, self.schema, len(self.schema))
        put64(b + 192, 0)
        put32(b + 200, 0)
        put32(b + 204, os.getpid())
        put32(b + 208, u32(b + 208) + 1)
        put32(b + 212, 0)  # no waiter segment: wake on every publish
        put64(b + 232, time.time_ns())
        put64(b, MAGIC)  # last (x86: stores are not reordered with stores)
        self.g = 0

    def publish(self, value):
        return self.publish_raw(encode_frame(self.tree, value))

    def publish_raw(self, frame):
        assert len(frame) <= self.cap
        g = self.g + 1
        slot = self.base + self.hs + (g & (self.n - 1)) * self.stride
        s = u32(slot)
        if s & 1:
            s += 1
        put32(slot, s + 1)  # odd; (W1) is free on x86
        padded = frame + b"\0" * (-len(frame) % 4)
        for k in range(0, len(padded), 4):
            put32(slot + 32 + k, struct.unpack_from("<I", padded, k)[0])
        mono, real = time.clock_gettime_ns(time.CLOCK_MONOTONIC), time.time_ns()
        put32(slot + 4, len(frame))
        put32(slot + 8, g)
        put32(slot + 12, g >> 32)
        put32(slot + 16, mono)
        put32(slot + 20, mono >> 32)
        put32(slot + 24, real)
        put32(slot + 28, real >> 32)
        put32(slot, s + 2)  # (W2)
        put64(self.base + 216, mono)
        put64(self.base + 224, real)
        put64(self.base + 192, g)  # (W3)
        put32(self.base + 200, g)  # (W4)
        if self.flags & FLAG_NOTIFY:
            futex(self.base + 200, FUTEX_WAKE, 0x7FFFFFFF)
        self.g = g
        return g

    def close(self):
        if self.base is not None:
            libc.shmdt(self.base)
            self.base = None
        if self.semid >= 0:
            libc.semop(self.semid, (Sembuf * 1)(Sembuf(0, -1, SEM_UNDO | IPC_NOWAIT)), 1)


# Cmd as CMD_DECL
# declares it (docs/JSON.md 4, LAYOUT.md 8.3's table), built by hand.
CMD_DECL = "struct Cmd { v: u32, label: heapless::String<8>, acc: [f32; 2], t: i64, o: Option<u16>, ok: bool }"
CMD_TREE = ("Struct", "Cmd", [
    ("v", ("U32", "u32", None)),
    ("label", ("String", "heapless::String<8>", None)),
    ("acc", ("Tuple", "[T; N]", [("F32", "f32", None)] * 2)),
    ("t", ("I64", "i64", None)),
    ("o", ("Option", "Option<T>", ("U16", "u16", None))),
    ("ok", ("Bool", "bool", None)),
])


def test_the_schema_encoding_gives_the_modules_fingerprint():
    key = test_key("fingerprint")
    try:
        with shmbus.Publisher("cmd", schema=CMD_DECL, key=key) as pub:
            fp = pub.info()["fingerprint"]
            t = Topic(key)
            try:
                assert t.schema == schema_bytes(CMD_TREE)
                assert fnv1a64(t.schema) == fp == t.fingerprint
                assert parse_schema(t.schema) == CMD_TREE
            finally:
                t.close()
    finally:
        remove_ipc(key)


def test_fnv_vectors_of_the_spec():
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8


def test_a_clean_room_publisher_is_read_by_the_module():
    key = test_key("cleanpub")
    pub = None
    try:
        pub = CleanPublisher(key, "cmd", CMD_TREE, frame_capacity=40, slot_count=4)
        with shmbus.Subscriber("cmd", key=key, schema=CMD_DECL, wait=0) as sub:
            assert sub.latest() is None
            info = sub.info()
            assert (info["slots"], info["frame_capacity"]) == (4, 40)
            assert info["fingerprint"] == fnv1a64(schema_bytes(CMD_TREE))
            st = sub.status()
            assert st["publisher"] == "alive" and st["publisher_pid"] == os.getpid()
            values = [
                {"v": i, "label": "n%d" % i, "acc": [0.5 * i, -9.81], "t": -i * 10**12, "o": None if i % 2 else i, "ok": i % 3 == 0}
                for i in range(1, 11)
            ]
            # In order, one frame at a time, woken by our FUTEX_WAKE.
            for v in values[:3]:
                g = pub.publish(v)
                s = sub.wait(timeout=30)
                assert s["generation"] == g and s["missed"] == 0
                assert same_json(v, s["value"], CMD_TREE), (v, s["value"])
            # An overrun of the 4-slot ring: 7 frames, the reader wanted 4.
            for v in values[3:]:
                pub.publish(v)
            s = sub.next()
            assert (s["generation"], s["missed"]) == (7, 3)
            assert same_json(values[6], s["value"], CMD_TREE)
            assert sub.latest()["generation"] == 10
    finally:
        if pub is not None:
            pub.close()
        remove_ipc(key)


# ---------------------------------------------------------------- tests: latest and next (section 5)


def test_latest_and_next_with_an_overrun_match_the_module():
    key = test_key("next")
    decl = "struct S { i: u32 }"
    try:
        with shmbus.Publisher("seq", schema=decl, key=key, slots=8) as pub:
            sub = shmbus.Subscriber("seq", key=key, wait=0)
            t = Topic(key)
            try:
                assert (t.slot_count, t.name) == (8, "seq")
                tree = parse_schema(t.schema)
                assert t.latest() is None
                cur = Cursor(t)
                assert cur.next() is None
                assert pub.publish({"i": 100}) == 1
                gen, _, _, data = t.latest()
                assert gen == 1 and decode_frame(tree, data) == {"i": 100}
                kind, g, data = cur.next()
                assert (kind, g, decode_frame(tree, data)) == ("frame", 1, {"i": 100})
                assert sub.next()["value"] == {"i": 100}
                # 20 more frames into 8 slots: the cursor (2) is a lap behind.
                for i in range(2, 22):
                    assert pub.publish({"i": 100 + i}) == i
                got = cur.next()
                theirs = sub.next()
                # g = 21, c = 2: MISSED(21 - 8 + 1 - 2) = 12, then frame 14.
                assert got == ("missed", 12)
                assert theirs["missed"] == 12 and theirs["generation"] == 14
                delivered = []
                while True:
                    r = cur.next()
                    if r is None:
                        break
                    assert r[0] == "frame"
                    delivered.append((r[1], decode_frame(tree, r[2])))
                assert delivered == [(g, {"i": 100 + g}) for g in range(14, 22)]
                assert theirs["value"] == {"i": 114}
                # frames delivered + missed = cursor moved
                assert 1 + 12 + 8 == cur.c - 1
                gen, mono, real, data = t.latest()
                s = sub.latest()
                assert (gen, mono, real) == (s["generation"], s["mono_ns"], s["real_ns"])
                assert decode_frame(tree, data) == s["value"]
            finally:
                t.close()
                sub.close()
    finally:
        remove_ipc(key)


# ---------------------------------------------------------------- tests: schema shapes (8.1 to 8.4)

ALL_DECL = """struct All {
    a: u8, b: i8, c: u16, d: i16, e: u32, f: i32, g: u64, h: i64, i: u128, j: i128,
    x: f32, y: f64, ok: bool, ch: char,
    s: heapless::String<8>, s2: heapless::String<200>,
    v: heapless::Vec<i16, 4>, w: heapless::Vec<u64, 2>, arr: [u16; 3], tu: (u8, f32),
    o: Option<u32>, oo: Option<Option<u8>>, ou: Option<()>,
    mode: enum Mode { Idle, Fix(u8), Pair(i16, bool), Pos { lat: f64, lon: f64 } },
    m: BTreeMap<heapless::String<4>, u8> as "heapless::LinearMap<K, V, 4>", bs: bytes as "heapless::Vec<u8, 16>", nt: struct Inner(u32), u: (), us: struct Nothing,
    inner: struct Temp { name: heapless::String<24>, milli_c: i32 },
}"""

ALL_VALUES = [
    {"a": 0, "b": 0, "c": 0, "d": 0, "e": 0, "f": 0, "g": 0, "h": 0, "i": 0, "j": 0,
     "x": 0.0, "y": 0.0, "ok": False, "ch": "a", "s": "", "s2": "", "v": [], "w": [], "arr": [0, 0, 0],
     "tu": [0, 0.0], "o": None, "oo": None, "ou": None, "mode": "Idle", "m": {}, "bs": [],
     "nt": 0, "u": None, "us": None, "inner": {"name": "", "milli_c": 0}},
    {"a": 255, "b": -128, "c": 65535, "d": -32768, "e": 4294967295, "f": -2147483648,
     "g": 18446744073709551615, "h": -9223372036854775808,
     "i": "340282366920938463463374607431768211455", "j": "-170141183460469231731687303715884105728",
     "x": 9.81, "y": -1.5e300, "ok": True, "ch": "é", "s": "imu0é", "s2": "free text \n",
     "v": [-1, 1, -300, 300], "w": [1, 2**63], "arr": [1, 128, 65535], "tu": [7, -0.0],
     "o": 7, "oo": [None], "ou": [None], "mode": {"Fix": 3}, "m": {"a": 1, "b": 2}, "bs": [0, 255],
     "nt": 4000000000, "u": None, "us": None, "inner": {"name": "cpu", "milli_c": -40000}},
    {"a": 1, "b": 127, "c": 128, "d": 32767, "e": 1 << 31, "f": 2147483647, "g": 1 << 62, "h": 9223372036854775807,
     "i": 5, "j": -5, "x": "NaN", "y": "-inf", "ok": True, "ch": "\u20ac", "s": "12345678", "s2": "x" * 200,
     "v": [0], "w": [], "arr": [2, 3, 4], "tu": [255, "inf"], "o": 4294967295, "oo": [3], "ou": None,
     "mode": {"Pair": [-300, True]}, "m": {}, "bs": list(range(16)), "nt": 1, "u": None, "us": None,
     "inner": {"name": "x" * 24, "milli_c": 1}},
    {"a": 2, "b": -1, "c": 300, "d": -2, "e": 5, "f": -64, "g": 127, "h": -65, "i": "18446744073709551616", "j": "-9223372036854775809",
     "x": 3.4028235e38, "y": 5e-324, "ok": False, "ch": "\U0001F600", "s": "", "s2": "", "v": [], "w": [0],
     "arr": [0, 0, 1], "tu": [0, 1e-45], "o": 0, "oo": None, "ou": None,
     "mode": {"Pos": {"lat": 52.5, "lon": 13.4}}, "m": {"k": 255}, "bs": [], "nt": 0, "u": None, "us": None,
     "inner": {"name": "t", "milli_c": 0}},
]


def test_schema_and_frames_of_every_shape_decode_as_the_module_reads_them():
    key = test_key("shapes")
    try:
        with shmbus.Publisher("all", schema=ALL_DECL, key=key, slots=4) as pub:
            sub = shmbus.Subscriber("all", key=key, schema=ALL_DECL, wait=0)
            t = Topic(key)
            try:
                tree = parse_schema(t.schema)
                assert schema_bytes(tree) == t.schema
                kind, name, fields = tree
                assert (kind, name) == ("Struct", "All")
                by = dict(fields)
                assert [f for f, _ in fields][:4] == ["a", "b", "c", "d"]
                assert by["s"] == ("String", "heapless::String<8>", None) and capacity(by["s"][1]) == 8
                assert by["v"][0] == "Seq" and capacity(by["v"][1]) == 4
                assert by["s2"][0] == "String" and capacity(by["s2"][1]) == 200
                assert by["m"][0] == "Map" and capacity(by["m"][1]) == 4 and capacity(by["bs"][1]) == 16
                assert by["arr"][0] == "Tuple" and len(by["arr"][2]) == 3
                assert by["mode"][0] == "Enum"
                assert [(v[0], v[1]) for v in by["mode"][2]] == [
                    ("Idle", "Unit"), ("Fix", "Newtype"), ("Pair", "Tuple"), ("Pos", "Struct")]
                assert by["bs"][0] == "ByteArray" and by["nt"][0] == "NewtypeStruct"
                assert by["us"][0] == "UnitStruct" and by["u"][0] == "Unit"
                for v in ALL_VALUES:
                    g = pub.publish(v)
                    theirs = sub.next()
                    gen, _, _, data = t.latest()
                    assert theirs["generation"] == gen == g
                    ours = decode_frame(tree, data)
                    assert same_json(ours, theirs["value"], tree), (ours, theirs["value"])
                    assert same_json(ours, v, tree), (ours, v)
            finally:
                t.close()
                sub.close()
    finally:
        remove_ipc(key)


def test_malformed_frames_are_refused_not_misread():
    tree = ("Struct", "S", [("s", ("String", "heapless::String<2>", None)), ("b", ("Bool", "bool", None))])
    assert decode_frame(tree, b"\x02hi\x01") == {"s": "hi", "b": True}
    for bad in (b"\x03hey\x01", b"\x02hi\x02", b"\x02hi", b"\x02hi\x01\x00", b"\x80\x80\x80\x80\x80\x01"):
        with pytest.raises(Malformed):
            decode_frame(tree, bad)
    u64t = ("U64", "u64", None)
    assert decode_frame(u64t, b"\xff" * 9 + b"\x01") == 2**64 - 1
    with pytest.raises(Malformed):
        decode_frame(u64t, b"\xff" * 9 + b"\x02")  # the 10th byte may only be 0 or 1
    assert decode_frame(u64t, b"\x80\x00") == 0  # longer than needed: accepted


# ---------------------------------------------------------------- tests: waiter registration (7.4)


@pytest.mark.skipif(SYS_FUTEX is None, reason="futex syscall number unknown for this machine")
def test_a_registered_waiter_is_woken_by_the_modules_publish():
    key = test_key("waiter")
    try:
        with shmbus.Publisher("wake", schema="struct W { i: u32 }", key=key) as pub:
            t = Topic(key)
            wbase = None
            try:
                assert t.flags == FLAG_NOTIFY | FLAG_WAITERS
                ref = t.waiter_ref()
                assert ref != 0
                wshmid = ref - 1
                row = proc_shm(wshmid)
                topic_row = proc_shm(t.shmid)
                assert row["size"] == 128 and row["key"] == 0
                assert row["perms"] & SHM_DEST
                assert row["cuid"] == topic_row["cuid"]
                wbase = libc.shmat(wshmid, None, 0)
                assert wbase not in (None, FAILED), os.strerror(ctypes.get_errno())
                assert u64(wbase) == WAITER_MAGIC
                assert u32(wbase + 8) == 1 and u32(wbase + 16) == t.shmid
                assert u32(wbase + 12) == key

                # The first two publishes of a session always wake (7.4):
                # past them, only a registered ticket makes the third wake.
                assert pub.publish({"i": 1}) == 1 and pub.publish({"i": 2}) == 2
                ticket_before = u32(wbase + 64)
                n0 = u32(t.notify_addr())  # (S0)
                assert n0 == 2 and t.latest()[0] == 2  # nothing new since n0
                put32(wbase + 64, ticket_before + 1)  # (S1), see the docstring
                published, asleep = [], []
                tid = threading.get_native_id()

                addr = t.notify_addr()

                def in_futex_wait():
                    # The kernel shows a blocked task's system call: the
                    # reader is queued on the futex (after its compare).
                    # On this futex word: a reader waiting for the GIL
                    # (held by this thread) is in a futex call too, and
                    # taking that for the wait published before it (EAGAIN
                    # in a landing run on a loaded machine).
                    try:
                        with open("/proc/self/task/%d/syscall" % tid) as f:
                            call = f.read().split()
                        return call[0] == str(SYS_FUTEX) and int(call[1], 16) == addr
                    except (OSError, IndexError, ValueError):
                        return False

                def publisher():
                    # Publish once the reader sleeps: only a wake ends its wait.
                    end = time.monotonic() + 30
                    while not in_futex_wait() and time.monotonic() < end:
                        time.sleep(0.001)
                    asleep.append(in_futex_wait())
                    published.append(pub.publish({"i": 7}))

                th = threading.Thread(target=publisher)
                th.start()
                try:
                    # (S2) is the kernel's; (S3) with a generous slice: a lost
                    # wake-up would end it with ETIMEDOUT instead.
                    rc, err = futex(t.notify_addr(), FUTEX_WAIT, n0, 30.0)
                finally:
                    th.join(60)
                assert asleep == [True], "the reader was never seen asleep in FUTEX_WAIT"
                assert (rc, err) == (0, 0), "woken: %s" % os.strerror(err)
                assert published == [3]
                gen, _, _, data = t.latest()
                assert gen == 3 and decode_frame(parse_schema(t.schema), data) == {"i": 7}
                assert u32(t.notify_addr()) == 3
            finally:
                if wbase not in (None, FAILED):
                    libc.shmdt(wbase)
                t.close()
    finally:
        remove_ipc(key)


MAL_TREE = ("Struct", "M", [
    ("o", ("Option", "Option<T>", ("U8", "u8", None))),
    ("e", ("Enum", "E", [("A", "Unit", None), ("B", "Newtype", ("U8", "u8", None))])),
    ("s", ("String", "heapless::String<4>", None)),
    ("c", ("Char", "char", None)),
    ("m", ("Map", "BTreeMap<K, V>", (("U8", "u8", None), ("Bool", "bool", None)))),
])
MAL_DECL = "struct M { o: Option<u8>, e: enum E { A, B(u8) }, s: heapless::String<4>, c: char, m: BTreeMap<u8, bool> }"
MAL_GOOD = b"\x01\x07" + b"\x01\x02" + b"\x02hi" + b"\x01x" + b"\x01\x05\x01"
MAL_BAD = {
    "option tag 2": b"\x02\x07" + MAL_GOOD[2:],
    "variant 2 of 2": b"\x00" + b"\x02" + MAL_GOOD[4:],
    "bool 2": MAL_GOOD[:-1] + b"\x02",
    "string over capacity": b"\x00\x00" + b"\x05hello" + MAL_GOOD[7:],
    "string not UTF-8": b"\x00\x00" + b"\x02\xc3\x28" + MAL_GOOD[7:],
    "char of two characters": MAL_GOOD[:7] + b"\x02xy" + MAL_GOOD[9:],
    "char of no character": MAL_GOOD[:7] + b"\x00" + MAL_GOOD[9:],
    "map key twice": MAL_GOOD[:9] + b"\x02\x05\x01\x05\x00",
    "map count beyond the bytes": MAL_GOOD[:9] + b"\x09\x05\x01",
    "bytes left over": MAL_GOOD + b"\x00",
    "frame ends early": MAL_GOOD[:-1],
}


def test_malformed_frames_are_refused_by_both_readers_and_cost_one_frame():
    """8.2's malformed frames, published raw by the clean-room publisher: our
    decoder refuses each, and the module's typeless reader reports each as a
    frame it cannot decode, moving on by exactly one (section 5, end)."""
    assert decode_frame(MAL_TREE, MAL_GOOD) == {"o": 7, "e": {"B": 2}, "s": "hi", "c": "x", "m": {"5": True}}
    key = test_key("malformed")
    pub = None
    try:
        pub = CleanPublisher(key, "mal", MAL_TREE, frame_capacity=64, slot_count=16)
        with shmbus.Subscriber("mal", key=key, schema=MAL_DECL, wait=0) as sub:
            for what, frame in MAL_BAD.items():
                with pytest.raises(Malformed):
                    decode_frame(MAL_TREE, frame)
                g = pub.publish_raw(frame)
                with pytest.raises(shmbus.ShmbusError):
                    sub.next()
                g2 = pub.publish_raw(MAL_GOOD)
                s = sub.next()
                assert s is not None, what
                assert (s["generation"], s["missed"]) == (g2, 0), what
                assert s["value"] == decode_frame(MAL_TREE, MAL_GOOD), what
                assert g2 == g + 1
    finally:
        if pub is not None:
            pub.close()
        remove_ipc(key)
