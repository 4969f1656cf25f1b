"""shmbus for Python: publish and read shmbus topics from Python.

A thin, pure-Python layer (ctypes) over libshmbus, the C library of shmbus:
the same topics, schema checks, locks and error messages as the Rust and C
APIs. Values are dicts in the JSON mapping of ``docs/JSON.md``.

    >>> import shmbus
    >>> sub = shmbus.Subscriber("imu")              # waits up to 5 s for the topic
    >>> s = sub.latest()                           # None before the first frame
    >>> s["generation"], s["value"]["acc"]
    >>> s = sub.wait(timeout=1.0)                  # next frame in order (blocks)

    >>> pub = shmbus.Publisher("cmd", schema="struct Cmd { speed: f32, mode: u8 }")
    >>> pub.publish({"speed": 0.5, "mode": 2})     # returns the generation

    >>> sub = shmbus.Subscriber.from_config("imu", config="/etc/shmbus/board.toml")

Errors are exceptions (subclasses of :class:`ShmbusError`) whose message is
the library's, with what to do. The library is found in this order: the
``SHMBUS_LIB`` environment variable, the copy bundled in the wheel
(``shmbus/_lib``), then the system's ``libshmbus.so.0``.
"""

import ctypes
import json
import math
import os
import threading
import time
import weakref

__all__ = [
    "Publisher",
    "Subscriber",
    "ShmbusError",
    "NotFound",
    "Timeout",
    "PublisherGone",
    "Removed",
    "SchemaMismatch",
    "PublisherActive",
    "PermissionDenied",
    "InvalidArgument",
    "SchemaError",
    "JsonError",
    "ConfigError",
    "Reentrant",
    "ReadError",
    "Closed",
    "key",
    "library_path",
    "version",
]

# ----------------------------------------------------------------- library


def _find_library():
    tried = []
    env = os.environ.get("SHMBUS_LIB")
    candidates = [env] if env else []
    here = os.path.dirname(os.path.abspath(__file__))
    candidates.append(os.path.join(here, "_lib", "libshmbus.so.0"))
    candidates.append("libshmbus.so.0")
    for c in candidates:
        if os.sep in c and not os.path.exists(c):
            tried.append(c + " (absent)")
            continue
        try:
            return ctypes.CDLL(c), c
        except OSError as e:
            tried.append("%s (%s)" % (c, e))
    raise ImportError(
        "shmbus: cannot load libshmbus; tried " + "; ".join(tried)
        + ". Install the wheel (it bundles the library), the libshmbus0 package, "
        "or set SHMBUS_LIB=/path/to/libshmbus.so.0"
    )


_lib, _lib_path = _find_library()


def library_path():
    """The path (or name) libshmbus was loaded from."""
    return _lib_path


class _Handle(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64)]


class _Topic(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("bus", ctypes.c_char_p),
        ("key", ctypes.c_uint32),
        ("slots", ctypes.c_uint32),
        ("mode", ctypes.c_uint32),
        ("lock", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("publisher_uid", ctypes.c_uint32),
        ("group", ctypes.c_uint32),
    ]


class _Sample(ctypes.Structure):
    _fields_ = [
        ("generation", ctypes.c_uint64),
        ("mono_ns", ctypes.c_uint64),
        ("real_ns", ctypes.c_uint64),
        ("age_ns", ctypes.c_uint64),
        ("missed", ctypes.c_uint64),
        ("len", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
    ]


class _Status(ctypes.Structure):
    _fields_ = [
        ("generation", ctypes.c_uint64),
        ("age_ns", ctypes.c_uint64),
        ("publisher", ctypes.c_int32),
        ("publisher_pid", ctypes.c_int32),
        ("removed", ctypes.c_int32),
        ("has_new", ctypes.c_int32),
    ]


class _Info(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char * 64),
        ("key", ctypes.c_uint32),
        ("shmid", ctypes.c_int32),
        ("slots", ctypes.c_uint32),
        ("frame_capacity", ctypes.c_uint32),
        ("fingerprint", ctypes.c_uint64),
        ("created", ctypes.c_int32),
        ("locked", ctypes.c_int32),
    ]


_P = ctypes.POINTER
_u8p = _P(ctypes.c_uint8)
_sz = ctypes.c_size_t


def _sig(name, *args):
    f = getattr(_lib, name)
    f.argtypes = list(args)
    f.restype = ctypes.c_int32
    return f


_lib.shmbus_version.restype = ctypes.c_char_p
_lib.shmbus_version.argtypes = []
_lib.shmbus_strerror.restype = ctypes.c_char_p
_lib.shmbus_strerror.argtypes = [ctypes.c_int32]
_lib.shmbus_last_error.restype = ctypes.c_char_p
_lib.shmbus_last_error.argtypes = []
_key = _sig("shmbus_key", ctypes.c_char_p, ctypes.c_char_p, _P(ctypes.c_uint32))
_schema_parse = _sig("shmbus_schema_parse", ctypes.c_char_p, _P(_Handle))
_schema_close = _sig("shmbus_schema_close", _Handle)
_schema_text = _sig("shmbus_schema_text", _Handle, ctypes.c_char_p, _sz, _P(_sz))
_pub_open = _sig("shmbus_publisher_open", _P(_Topic), _Handle, _P(_Handle))
_pub_open_config = _sig(
    "shmbus_publisher_open_config", ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, _Handle, _P(_Handle),
)
_pub_json = _sig("shmbus_publish_json", _Handle, ctypes.c_char_p, _P(ctypes.c_uint64))
_pub_info = _sig("shmbus_publisher_info", _Handle, _P(_Info))
_pub_close = _sig("shmbus_publisher_close", _Handle)
_pub_remove = _sig("shmbus_publisher_remove", _Handle)
_pub_check = _sig("shmbus_publisher_check", _Handle)
_sub_open = _sig("shmbus_subscriber_open", _P(_Topic), _Handle, ctypes.c_uint32, _P(_Handle))
_sub_open_config = _sig(
    "shmbus_subscriber_open_config",
    ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, _Handle, ctypes.c_uint32, _P(_Handle),
)
_sub_close = _sig("shmbus_subscriber_close", _Handle)
_sub_schema = _sig("shmbus_subscriber_schema", _Handle, _P(_Handle))
_sub_json = _sig(
    "shmbus_subscriber_read_json",
    _Handle, ctypes.c_int32, ctypes.c_uint32, ctypes.c_char_p, _sz, _P(_sz), _P(_Sample),
)
_sub_status = _sig("shmbus_subscriber_status", _Handle, _P(_Status))
_sub_info = _sig("shmbus_subscriber_info", _Handle, _P(_Info))
_sub_seek_oldest = _sig("shmbus_subscriber_seek_oldest", _Handle)
_sub_has_new = _sig("shmbus_subscriber_has_new", _Handle)
_sub_wait_publisher = _sig("shmbus_subscriber_wait_publisher", _Handle, ctypes.c_uint32, _P(ctypes.c_int32))

# Status codes (shmbus.h).
OK, NO_FRAME, MISSED = 0, 1, 2
_READ_LATEST, _READ_NEXT, _READ_WAIT_NEXT, _READ_WAIT_LATEST = 0, 1, 2, 3
_ERR_BUFFER_TOO_SMALL = -5
_ERR_NOT_FOUND = -9
_ERR_PUBLISHER_ACTIVE = -11
_ERR_TIMEOUT = -14
# The longest a wait sleeps in one C call (seconds): how late Ctrl-C, or
# another thread's close(), interrupts a wait at most.
_WAIT_SLICE = 0.1
_PUBLISHER = {1: "alive", 2: "not running", 3: "no lock", 0: "unknown"}

# ------------------------------------------------------------------ errors


class ShmbusError(Exception):
    """A failed libshmbus call: ``code`` is the SHMBUS_ERR_* status, the
    message is ``shmbus_last_error()``."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class InvalidArgument(ShmbusError, ValueError):
    """Invalid topic description or argument (SHMBUS_ERR_INVALID)."""


class Closed(ShmbusError):
    """The publisher or subscriber was closed (SHMBUS_ERR_CLOSED)."""


class NotFound(ShmbusError):
    """No topic at the key: its publisher has not created it (yet)."""


class SchemaMismatch(ShmbusError):
    """The topic carries frames of another type."""


class PublisherActive(ShmbusError):
    """The topic already has a live publisher."""


class OpenError(ShmbusError):
    """The segment at the key cannot be opened as this topic: another
    program's memory or a damaged segment, another layout version or shape,
    or one another user made (SHMBUS_ERR_OPEN). The message says which, and
    the fix."""


class SystemLimit(ShmbusError):
    """A system limit was reached (kernel.shmmax, shmmni or shmall, memory;
    SHMBUS_ERR_SYSTEM_LIMIT). The message names the limit and how to raise
    it; ``shmbus doctor`` shows them all."""


class PermissionDenied(ShmbusError, PermissionError):
    """Denied by the segment's or the lock's mode (also in a wait, when the
    topic's mode or group changed since the subscriber attached)."""


class Timeout(ShmbusError, TimeoutError):
    """A wait ended without a frame."""


class PublisherGone(ShmbusError):
    """The topic's publisher is not running."""


class Removed(ShmbusError):
    """The topic was removed."""


class ReadError(ShmbusError):
    """A frame could not be read (publisher stuck or died mid-write, the slot
    rewritten during every read, or the frame does not decode). An in-order
    read (``next()``, ``wait()``) has moved past that frame, which is lost:
    the next one returns the frame after it."""


class SchemaError(ShmbusError, ValueError):
    """A schema declaration does not parse, or has no maximum size."""


class JsonError(ShmbusError, ValueError):
    """A value does not fit the topic's schema (the message names the field)."""


class ConfigError(ShmbusError):
    """The config file cannot be read, has errors (``path:line:col:
    message``), or declares no topic of that name (SHMBUS_ERR_CONFIG)."""


class Reentrant(ShmbusError, RuntimeError):
    """A read of a subscriber from a signal handler that interrupted a read
    of the same subscriber on the same thread (a wait): the interrupted read
    owns its buffer. Read another subscriber there, or set a flag and read
    after the wait returns (SHMBUS_ERR_REENTRANT, as the C library says)."""


_ERRORS = {
    -4: InvalidArgument,
    -3: Closed,
    -9: NotFound,
    -10: SchemaMismatch,
    -11: PublisherActive,
    -12: PermissionDenied,
    -13: OpenError,
    -14: Timeout,
    -15: PublisherGone,
    -16: Removed,
    -17: ReadError,
    -18: JsonError,
    -19: SchemaError,
    -20: JsonError,
    -23: SystemLimit,
    -26: ConfigError,
    -27: Reentrant,
}


def _raise(code):
    msg = _lib.shmbus_last_error().decode("utf-8", "replace")
    raise _ERRORS.get(code, ShmbusError)(code, msg)


def _check(code):
    if code < 0:
        _raise(code)
    return code


# ------------------------------------------------------------------- topics


def version():
    """libshmbus's version."""
    return _lib.shmbus_version().decode()


def _text(value, what, optional=False):
    """A str argument as the C library's NUL-terminated UTF-8: a NUL inside
    would end the string early (another topic or schema), so it is refused,
    like anything that is not a str."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(-4, "%s must be a str, not %s" % (what, type(value).__name__))
    if "\0" in value:
        raise InvalidArgument(-4, "%s contains a NUL character (at index %d)" % (what, value.index("\0")))
    try:
        return value.encode()
    except UnicodeEncodeError as e:
        # A lone surrogate (os.fsdecode of bytes that are not UTF-8) has no
        # UTF-8 form.
        raise InvalidArgument(-4, "%s is not valid Unicode: %s at index %d" % (what, _shown(value[e.start]), e.start)) from None


# The rule every shmbus message follows when it quotes a value from outside
# (shmbus_core::topic::long_head): over 64 characters, the first 40 and the
# length.
_CUT_OVER = 64
_CUT_KEEP = 40


def _shown(value):
    """An argument as an error message shows it: its repr, cut as every
    shmbus message cuts a quoted value (over 64 characters: the first 40 and
    the length, so a 10 kB argument is not echoed whole), and a huge int by
    its size (str() of an int over 4300 digits raises ValueError)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**_CUT_OVER:
        return "%san int of %d bits" % ("-" if value < 0 else "", value.bit_length())
    text = repr(value)
    if len(text) > _CUT_OVER:
        text = "%s... (%d characters)" % (text[:_CUT_KEEP], len(text))
    return text


def _path(value):
    """A config path (str, bytes or os.PathLike) as the C library's
    NUL-terminated bytes; None: the tools' search order."""
    if value is None:
        return None
    try:
        p = os.fsencode(value)
    except TypeError:
        raise InvalidArgument(
            -4, "config must be a path (str, bytes or os.PathLike) or None, not %s" % type(value).__name__
        ) from None
    if b"\0" in p:
        raise InvalidArgument(-4, "config path contains a NUL character (at index %d)" % p.index(b"\0"))
    return p


def _uint32(value, what):
    """An optional unsigned 32-bit argument (None or 0: the default); a
    value ctypes would silently cut to 32 bits is refused."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(-4, "%s must be an int, not %s" % (what, type(value).__name__))
    if not 0 <= value <= 0xFFFFFFFF:
        raise InvalidArgument(-4, "%s = %s is out of range: give 0 to 0xffffffff" % (what, _shown(value)))
    return value


def key(name, bus=None):
    """The System V key of topic ``name`` on ``bus`` (default "shmbus")."""
    out = ctypes.c_uint32()
    _check(_key(_text(bus, "bus", True), _text(name, "topic name"), ctypes.byref(out)))
    return out.value


def _topic(name, key, bus, slots, mode):
    t = _Topic()
    t._keep = [_text(name, "topic name"), _text(bus, "bus", True)]
    t.name = t._keep[0]
    t.bus = t._keep[1]
    t.key = _uint32(key, "key")
    t.slots = _uint32(slots, "slots")
    t.mode = _uint32(mode, "mode")
    return t


def _info(fn, handle, publisher=False):
    i = _Info()
    _check(fn(handle, ctypes.byref(i)))
    info = {
        "name": i.name.decode(),
        "key": i.key,
        "shmid": i.shmid,
        "slots": i.slots,
        "frame_capacity": i.frame_capacity,
        "fingerprint": i.fingerprint,
    }
    if publisher:
        # What only a publisher knows: whether this open created the
        # segment or reopened one a previous publisher left, and whether
        # the segment is locked in RAM (None: no lock asked for).
        info["created"] = bool(i.created)
        info["locked"] = None if i.locked < 0 else bool(i.locked)
    return info


def _schema_text_of(handle):
    n = _sz()
    buf = ctypes.create_string_buffer(1024)
    rc = _schema_text(handle, buf, len(buf), ctypes.byref(n))
    if rc == _ERR_BUFFER_TOO_SMALL:
        buf = ctypes.create_string_buffer(n.value + 1)
        rc = _schema_text(handle, buf, len(buf), ctypes.byref(n))
    _check(rc)
    return buf.value.decode()


# --------------------------------------------------------------- subscriber


class Subscriber:
    """A read-only subscriber of one topic.

    ``Subscriber(name)`` attaches topic ``name`` (key derived from ``bus``
    and the name, or ``key``), waiting up to ``wait`` seconds for its
    publisher to create it. With ``schema`` (declaration text), a topic of
    another type is refused with :class:`SchemaMismatch`. In-order reads
    start after the newest frame, or, for a topic that appeared while the
    constructor waited, at its first frame still in the ring.

    Reads return a dict ``{"topic", "generation", "mono_ns", "real_ns",
    "age_ns", "missed", "value"}`` (``missed``: frames lost just before
    this one by an in-order reader that fell behind the ring, counted also
    when a read in between raised).
    """

    def __init__(self, name, key=None, bus=None, schema=None, wait=5.0):
        self._h = None
        t = _topic(name, key, bus, 0, 0)
        self._open(name, schema, wait, lambda expected, ms, h: _sub_open(ctypes.byref(t), expected, ms, h))

    @classmethod
    def from_config(cls, name, config=None, bus=None, schema=None, wait=5.0):
        """Attach topic ``name`` as the board's config declares it (its key
        and publisher user): the topic ``shmbus echo NAME`` shows.

        ``config`` is the config file's path; None finds it as the
        ``shmbus`` tools do (``$SHMBUS_CONFIG``, else
        ``/etc/shmbus/shmbus.toml``, else the built-in demo config). ``bus``
        moves the config's derived keys to another bus (as ``--bus``).
        :class:`ConfigError` if the file cannot be read, has errors, or
        declares no topic ``name``; ``schema`` and ``wait`` as for
        ``Subscriber(...)``."""
        self = cls.__new__(cls)
        self._h = None
        n = _text(name, "topic name")
        b = _text(bus, "bus", True)
        c = _path(config)
        self._open(name, schema, wait, lambda expected, ms, h: _sub_open_config(c, b, n, expected, ms, h))
        return self

    def _open(self, name, schema, wait, opener):
        expected = _Handle(0)
        if schema is not None:
            _check(_schema_parse(_text(schema, "schema"), ctypes.byref(expected)))
        h = _Handle()
        try:
            # In slices, as the reads' waits (Ctrl-C is not held up for the
            # whole wait); a topic found after a slice that did not find it
            # appeared while this waited, and is read from its oldest frame,
            # as the C library does within one call.
            deadline = time.monotonic() + _seconds(wait)
            waited = False
            while True:
                ms = _ms(min(max(deadline - time.monotonic(), 0.0), _WAIT_SLICE))
                rc = opener(expected, ms, ctypes.byref(h))
                if rc == _ERR_NOT_FOUND and time.monotonic() < deadline:
                    waited = True
                    continue
                _check(rc)
                break
            if waited:
                _check(_sub_seek_oldest(h))
        except BaseException:
            # Ctrl-C just after the open: no handle left behind.
            if h.id:
                _sub_close(h)
            raise
        finally:
            if expected.id:
                _schema_close(expected)
        self._h = h
        self.topic = name
        # Each thread's reads land in its own buffer: the C library
        # serialises its calls on one handle, and a read's text stays in
        # the reading thread's buffer until it is decoded, so each read
        # returns one frame's value with that frame's generation. No lock
        # of this object is held across a wait: another thread's read of
        # this subscriber gets in between two of its 0.1 s slices, as in C
        # (it used to wait for the whole wait, for ever with an infinite
        # timeout).
        self._local = threading.local()
        # The threads inside a read of this subscriber: a signal handler
        # that reads it on the thread it interrupted raises Reentrant (the
        # interrupted read's text is in that thread's buffer).
        self._reading_in = set()
        # Frames an in-order read lost (SHMBUS_MISSED) and has not yet
        # reported: the next in-order frame returned carries them, also
        # when the read that met them raised instead (the oldest frame
        # left after an overrun is the one a publisher killed mid-write
        # was overwriting: ReadError) or was interrupted.
        self._missed = 0
        _subscribers.add(self)

    def _read(self, how, timeout=0.0):
        me = threading.get_ident()
        if me in self._reading_in:
            raise Reentrant(
                -27,
                "a read of '%s' from a signal handler that interrupted a read of it on the "
                "same thread: read it after that read returns" % self.topic,
            )
        self._reading_in.add(me)
        try:
            return self._read_locked(how, timeout)
        finally:
            self._reading_in.discard(me)

    def _read_locked(self, how, timeout):
        """The read loop, into this thread's buffer."""
        if self._h is None:
            raise Closed(-3, "the subscriber of '%s' is closed" % self.topic)
        smp = _Sample()
        n = _sz()
        # A wait sleeps in the C library in slices of at most _WAIT_SLICE:
        # between two, Python runs its signal handlers (Ctrl-C raises
        # KeyboardInterrupt at once, not when the timeout ends) and another
        # thread's close() gets the handle (this wait then raises Closed).
        waiting = how in (_READ_WAIT_NEXT, _READ_WAIT_LATEST)
        deadline = time.monotonic() + _seconds(timeout) if waiting else 0.0
        tries = 0
        while tries < 1000:
            tries += 1
            ms = 0
            if waiting:
                ms = _ms(min(max(deadline - time.monotonic(), 0.0), _WAIT_SLICE))
            h = self._h
            if h is None:
                raise Closed(-3, "the subscriber of '%s' was closed during the read" % self.topic)
            buf = getattr(self._local, "buf", None)
            if buf is None:
                buf = self._local.buf = ctypes.create_string_buffer(4096)
            rc = _sub_json(h, how, ms, buf, len(buf), ctypes.byref(n), ctypes.byref(smp))
            if rc == _ERR_TIMEOUT and waiting and time.monotonic() < deadline:
                tries -= 1
                continue
            if rc == _ERR_BUFFER_TOO_SMALL:
                self._local.buf = ctypes.create_string_buffer(max(n.value + 1, 2 * len(buf)))
                continue
            if rc == MISSED:
                # Frames lost; the next call returns the oldest one left.
                self._missed += smp.missed
                continue
            if rc == NO_FRAME:
                return None
            _check(rc)
            missed = 0
            if how in (_READ_NEXT, _READ_WAIT_NEXT):
                missed, self._missed = self._missed, 0
            return {
                "topic": self.topic,
                "generation": smp.generation,
                "mono_ns": smp.mono_ns,
                "real_ns": smp.real_ns,
                "age_ns": smp.age_ns,
                "missed": missed,
                "value": json.loads(buf.value.decode()),
            }
        raise ReadError(-17, "the reader kept falling behind the ring of '%s'" % self.topic)

    def latest(self):
        """The newest frame, or None before the first publish."""
        return self._read(_READ_LATEST)

    def next(self):
        """The next frame in publish order, or None if nothing is new.
        :class:`ReadError` for a frame that is lost (see :meth:`wait`): the
        next call returns the frame after it."""
        return self._read(_READ_NEXT)

    def wait(self, timeout=1.0):
        """Block up to ``timeout`` seconds for the next frame in publish
        order. Raises :class:`Timeout`, :class:`PublisherGone`,
        :class:`Removed`, :class:`PermissionDenied` (the topic's mode or
        group changed since this subscriber attached, and no longer admits
        this process), or :class:`ReadError` for one frame that is lost
        (its publisher died or stopped while overwriting it, or it does not
        decode; the message says which frame): the next call returns the
        frame after it, so read on."""
        return self._read(_READ_WAIT_NEXT, timeout)

    def wait_latest(self, timeout=1.0):
        """Block up to ``timeout`` seconds for a frame newer than the last one
        read, then return the newest."""
        return self._read(_READ_WAIT_LATEST, timeout)

    def wait_for_publisher(self, timeout=10.0):
        """After :class:`PublisherGone`: block up to ``timeout`` seconds until
        the topic is published again, then read on (its frames come to the
        same segment). Returns the publisher's state then: "alive" (a
        publisher holds the topic's lock again), or "no lock" (frames came
        although none holds it: a publisher whose lock alone was removed
        still publishes). A frame ends the wait at once. Raises
        :class:`Timeout`, :class:`Removed` (frames published before the
        removal are reported first, and stay readable) or :class:`Closed`."""
        deadline = time.monotonic() + _seconds(timeout)
        state = ctypes.c_int32(0)
        while True:
            # In slices, as the reads' waits: Ctrl-C and another thread's
            # close() get in between.
            ms = _ms(min(max(deadline - time.monotonic(), 0.0), _WAIT_SLICE))
            rc = _sub_wait_publisher(self._live(), ms, ctypes.byref(state))
            if rc == _ERR_TIMEOUT and time.monotonic() < deadline:
                continue
            _check(rc)
            return _PUBLISHER.get(state.value, "unknown")

    def has_new(self):
        """True if a frame newer than the last one read was published."""
        return _check(_sub_has_new(self._live())) == 1

    def seek_oldest(self):
        """Make ``next()`` start at the oldest frame still in the ring."""
        _check(_sub_seek_oldest(self._live()))
        self._missed = 0

    def status(self):
        """Staleness and liveness: generation, age_ns (None before the first
        frame), publisher ("alive", "not running", "no lock", "unknown"),
        publisher_pid, removed."""
        s = _Status()
        _check(_sub_status(self._live(), ctypes.byref(s)))
        return {
            "generation": s.generation,
            "age_ns": None if s.age_ns == 2**64 - 1 else s.age_ns,
            "publisher": _PUBLISHER.get(s.publisher, "unknown"),
            "publisher_pid": s.publisher_pid or None,
            "removed": bool(s.removed),
        }

    def info(self):
        """Name, key, shmid, slots, frame capacity and schema fingerprint."""
        return _info(_sub_info, self._live())

    @property
    def schema(self):
        """The topic's schema as declaration text."""
        h = _Handle()
        _check(_sub_schema(self._live(), ctypes.byref(h)))
        try:
            return _schema_text_of(h)
        finally:
            _schema_close(h)

    def _live(self):
        if self._h is None:
            raise Closed(-3, "the subscriber of '%s' is closed" % self.topic)
        return self._h

    def close(self):
        """Detach. Further reads raise :class:`Closed`; a wait in another
        thread raises :class:`Closed` within about 0.1 s."""
        if self._h is not None:
            h, self._h = self._h, None
            _check(_sub_close(h))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# ---------------------------------------------------------------- publisher


class Publisher:
    """The one publisher of a topic, for values of ``schema`` (declaration
    text such as ``"struct Imu { t_us: u64, acc: [f32; 3] }"``).

    Creates the topic (or reopens the one a previous publisher of the same
    type left). :class:`PublisherActive` if another publisher is alive;
    :class:`SchemaMismatch` if the topic carries another type (a publisher
    whose type changed: the message says how to remove the old topic).
    """

    def __init__(self, name, schema, key=None, bus=None, slots=None, mode=None):
        self._h = None
        self._removed = False
        t = _topic(name, key, bus, slots, mode)
        self._open(name, schema, lambda s, h: _pub_open(ctypes.byref(t), s, h))

    @classmethod
    def from_config(cls, name, schema, config=None, bus=None):
        """Open topic ``name`` as the board's config declares it (key,
        slots, mode, group, lock policy, notification): the topic a Rust
        sensor of that name publishes.

        ``config`` is the config file's path; None finds it as the
        ``shmbus`` tools do (``$SHMBUS_CONFIG``, else
        ``/etc/shmbus/shmbus.toml``, else the built-in demo config). ``bus``
        moves the config's derived keys to another bus (as ``--bus``).
        :class:`ConfigError` if the file cannot be read, has errors, or
        declares no topic ``name``."""
        self = cls.__new__(cls)
        self._h = None
        self._removed = False
        n = _text(name, "topic name")
        b = _text(bus, "bus", True)
        c = _path(config)
        self._open(name, schema, lambda s, h: _pub_open_config(c, b, n, s, h))
        return self

    def _open(self, name, schema, opener):
        s = _Handle()
        _check(_schema_parse(_text(schema, "schema"), ctypes.byref(s)))
        h = _Handle()
        try:
            try:
                _check(opener(s, ctypes.byref(h)))
            finally:
                _schema_close(s)
            self._key = _info(_pub_info, h)["key"]
        except BaseException:
            # Ctrl-C just after the open (or a failure after it): the
            # handle, which holds the topic's publisher lock, is closed, not
            # left open where nothing can reach it (every later Publisher of
            # the topic in this process was PublisherActive).
            if h.id:
                _pub_close(h)
            raise
        self._h = h
        self.topic = name

    def publish(self, value):
        """Publish ``value`` (a dict or any JSON-able value of the schema).
        Returns its generation. :class:`JsonError` names the field that does
        not fit."""
        if self._h is None:
            raise Closed(-3, "the publisher of '%s' is closed" % self.topic)
        g = ctypes.c_uint64()
        try:
            text = json.dumps(_nonfinite(value), allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError) as e:
            raise JsonError(-18, "value for topic '%s' is not JSON: %s" % (self.topic, e)) from None
        _check(_pub_json(self._h, text.encode(), ctypes.byref(g)))
        return g.value

    def info(self):
        """Name, key, shmid, slots, frame capacity and schema fingerprint;
        ``created`` (this open created the segment, False: it reopened one)
        and ``locked`` (locked in RAM; False: the lock was refused under the
        "try" policy; None: not asked for)."""
        if self._h is None:
            raise Closed(-3, "the publisher of '%s' is closed" % self.topic)
        return _info(_pub_info, self._h, publisher=True)

    def check(self):
        """Raise :class:`Removed` if the topic was removed under this
        publisher (``shmbus rm --force``, ``ipcrm``, systemd-logind's
        RemoveIPC at the user's logout: its frames reach no reader) or its
        publisher lock was (``ipcrm -s``: readers see no publisher, and a
        second one could start). Then close it and open the topic again.
        Two system calls: call it now and then (every second or so), not at
        every publish."""
        if self._h is None:
            raise Closed(-3, "the publisher of '%s' is closed" % self.topic)
        _check(_pub_check(self._h))

    def close(self):
        """Stop publishing; the last frames stay readable."""
        if self._h is not None:
            h, self._h = self._h, None
            _check(_pub_close(h))

    def remove(self):
        """Stop publishing and remove the topic. After ``close()`` (also the
        end of a ``with`` block) the handle that could remove it is gone:
        :class:`Closed`, rather than returning as if the topic were
        removed. A second ``remove()`` does nothing."""
        if self._h is None:
            if self._removed:
                return
            raise Closed(
                -3,
                "the publisher of '%s' is closed, so remove() cannot remove the topic: "
                "call remove() instead of close() (or inside the with block), or "
                "run 'shmbus rm %#010x'" % (self.topic, self._key),
            )
        h, self._h = self._h, None
        rc = _pub_remove(h)
        if rc == _ERR_PUBLISHER_ACTIVE:
            # A fork child's copy: nothing was closed or removed.
            self._h = h
        _check(rc)
        self._removed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _nonfinite(v):
    """NaN and infinities as the JSON mapping writes them ("NaN", "inf",
    "-inf"): JSON itself has no such numbers."""
    if isinstance(v, float) and v != v:
        return "NaN"
    if isinstance(v, float) and v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, dict):
        return {k: _nonfinite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_nonfinite(x) for x in v]
    return v


def _seconds(seconds):
    """A timeout in seconds, checked: a number >= 0 (infinity: for ever)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise InvalidArgument(-4, "timeout must be a number of seconds >= 0, not %s" % _shown(seconds))
    return float(seconds) if not isinstance(seconds, int) or seconds < 2**53 else math.inf


def _ms(seconds):
    """Seconds as the C library's milliseconds: at most 2**32 - 1 (49 days;
    also what an infinite timeout becomes)."""
    seconds = _seconds(seconds)
    return min(int(min(seconds, 2**32) * 1000 + 0.5), 2**32 - 1)


# Live subscribers, for the fork handler.
_subscribers = weakref.WeakSet()


def _after_fork_in_child():
    """In a fork() child: no thread is inside a read of any subscriber (the
    parent's other threads do not exist here, and a thread made here later
    may get one of their ids). A handle the parent's thread had inside the
    C library is refused by it with a code (the C library marks those at
    the fork)."""
    for s in list(_subscribers):
        s._reading_in = set()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
