"""The Python module against live Rust publishers and subscribers."""

import math
import os
import subprocess
import sys
import threading
import time

import pytest

import shmbus
from conftest import _keys as conftest_keys
from conftest import remove_key, run_rust_subscriber, wait_until

# The Rust example's message type (crates/shmbus-examples), declared once.
IMU = (
    "struct Imu { seq: u32, t_us: u64, frame_id: heapless::String<16>, "
    "acc: [f32; 3], gyro: [f32; 3], temp_c: f32 }"
)


def test_the_module_loads_the_library_it_was_installed_with():
    assert shmbus.version()
    expected = os.environ.get("SHMBUS_EXPECT_LIB_UNDER")
    if expected:
        assert os.path.realpath(shmbus.library_path()).startswith(os.path.realpath(expected)), shmbus.library_path()
        assert os.path.realpath(shmbus.__file__).startswith(os.path.realpath(expected)), shmbus.__file__


def test_latest_next_and_wait_read_a_rust_publisher(rust_publisher, key):
    rust_publisher("--rate", "1000", "--duration", "600")
    with shmbus.Subscriber("imu", key=key, wait=20) as sub:
        s = sub.wait_latest(timeout=10)
        assert s["topic"] == "imu"
        assert s["generation"] >= 1
        assert s["mono_ns"] > 0 and s["real_ns"] > 0 and s["age_ns"] >= 0
        v = s["value"]
        assert list(v) == ["seq", "t_us", "frame_id", "acc", "gyro", "temp_c"]
        assert v["frame_id"] == "imu_link"
        assert math.isclose(v["acc"][2], 9.81, rel_tol=1e-6)
        assert 35.0 <= v["temp_c"] < 36.0

        latest = sub.latest()
        assert latest["generation"] >= s["generation"]

        a = sub.wait(timeout=10)
        b = sub.wait(timeout=10)
        # Frames delivered plus frames reported missed add up.
        assert b["generation"] == a["generation"] + 1 + b["missed"]
        assert b["value"]["seq"] == a["value"]["seq"] + 1 + b["missed"]

        n = sub.next()
        assert n is None or n["generation"] > b["generation"]

        st = sub.status()
        assert st["publisher"] == "alive" and st["publisher_pid"] > 0
        assert st["removed"] is False and st["age_ns"] is not None
        info = sub.info()
        assert info["name"] == "imu" and info["key"] == key and info["frame_capacity"] == 60
        assert "heapless::String<16>" in sub.schema or "frame_id" in sub.schema


def test_a_reader_that_falls_behind_is_told_how_many_frames_it_lost(rust_publisher, key):
    rust_publisher("--rate", "1000", "--duration", "600", "--slots", "16")
    with shmbus.Subscriber("imu", key=key, wait=20) as sub:
        first = sub.wait(timeout=10)
        assert wait_until(lambda: sub.status()["generation"] >= first["generation"] + 50)
        s = sub.next()
        assert s["missed"] >= 50 - 16
        assert s["generation"] == first["generation"] + 1 + s["missed"]


def test_a_dead_publisher_ends_a_wait_and_its_frames_stay_readable(rust_publisher, key):
    p = rust_publisher("--rate", "1000", "--count", "5")
    assert p.proc.wait(timeout=60) == 0
    with shmbus.Subscriber("imu", key=key, wait=0) as sub:
        assert sub.latest()["generation"] == 5
        assert sub.status()["publisher"] == "not running"
        with pytest.raises(shmbus.PublisherGone) as e:
            sub.wait(timeout=10)
        assert "not running" in str(e.value)


def test_errors_are_exceptions_with_the_library_messages(rust_publisher, key):
    with pytest.raises(shmbus.NotFound) as e:
        shmbus.Subscriber("imu", key=key, wait=0)
    assert "start its publisher first" in str(e.value)
    assert e.value.code == -9
    with pytest.raises(shmbus.InvalidArgument) as e:
        shmbus.Subscriber("no spaces", key=key, wait=0)
    assert "contains ' '" in str(e.value)

    rust_publisher("--rate", "100", "--duration", "600")
    with pytest.raises(shmbus.SchemaMismatch) as e:
        shmbus.Subscriber("imu", key=key, schema="struct Other { a: u8 }", wait=20)
    assert "carries frames of another type" in str(e.value)

    sub = shmbus.Subscriber("imu", key=key, wait=20)
    with pytest.raises(shmbus.InvalidArgument):
        sub.wait(timeout=-1)
    sub.close()
    sub.close()  # closing twice is harmless in Python
    with pytest.raises(shmbus.Closed):
        sub.latest()
    with pytest.raises(shmbus.SchemaError) as e:
        shmbus.Publisher("x", schema="struct { oops", key=key)


def test_python_publisher_to_python_subscriber(key):
    decl = "struct Cmd { speed: f32, mode: u8, label: heapless::String<8>, gains: heapless::Vec<f64, 4> }"
    with shmbus.Publisher("cmd", schema=decl, key=key) as pub:
        sub = shmbus.Subscriber("cmd", key=key, schema=decl, wait=5)
        assert sub.latest() is None
        g = pub.publish({"speed": 0.5, "mode": 2, "label": "fast", "gains": [1.0, 2.5]})
        assert g == 1
        s = sub.wait(timeout=5)
        assert s["generation"] == 1
        assert s["value"] == {"speed": 0.5, "mode": 2, "label": "fast", "gains": [1.0, 2.5]}
        assert pub.publish({"speed": float("nan"), "mode": 0, "label": "", "gains": []}) == 2
        assert sub.wait(timeout=5)["value"]["speed"] == "NaN"

        with pytest.raises(shmbus.JsonError) as e:
            pub.publish({"speed": 0.5, "mode": 2, "label": "much too long", "gains": []})
        assert ".label" in str(e.value)
        with pytest.raises(shmbus.JsonError) as e:
            pub.publish({"speed": 0.5, "mode": 256, "label": "", "gains": []})
        assert ".mode" in str(e.value)
        with pytest.raises(shmbus.JsonError):
            pub.publish({"speed": 0.5, "mode": 1, "label": "", "gains": [0, 0, 0, 0, 0]})
        with pytest.raises(shmbus.PublisherActive) as e:
            shmbus.Publisher("cmd", schema=decl, key=key)
        assert "already has a live publisher" in str(e.value)
        with pytest.raises(shmbus.ShmbusError):
            shmbus.Publisher("cmd", schema="struct Cmd { speed: f64 }", key=key)
        sub.close()
    with pytest.raises(shmbus.Closed):
        pub.publish({"speed": 0.5, "mode": 2, "label": "", "gains": []})


def test_python_publisher_to_rust_subscriber(key):
    # The declaration gives the Rust type's schema (fingerprint), so the
    # typed Rust subscriber accepts the topic and decodes every frame.
    with shmbus.Publisher("imu", schema=IMU, key=key) as pub:
        results = {}

        def rust():
            results["r"] = run_rust_subscriber(key, "--count", "20", "--timeout", "20", "--wait", "20")

        t = threading.Thread(target=rust)
        t.start()
        seq = 0
        while t.is_alive() and seq < 100000:
            pub.publish({"seq": seq, "t_us": seq * 1000, "frame_id": "py", "acc": [0, 0, 9.81],
                         "gyro": [0.1, 0.2, 0.3], "temp_c": 21.5})
            seq += 1
            threading.Event().wait(0.002)
        t.join(timeout=60)
        r = results["r"]
        assert r.returncode == 0, r.stdout
        assert "received 20 frames" in r.stdout, r.stdout
        assert "frame_id=py" in r.stdout and "temp_c=21.50" in r.stdout, r.stdout


def test_arguments_ctypes_would_cut_short_are_refused(key):
    """A NUL inside a str ends the C string early, and ctypes cuts ints to
    32 bits: either would silently address another topic or schema."""
    schema = "struct A { x: u8 }"
    pub = shmbus.Publisher("adv_a", schema, key=key)
    try:
        for make in (
            lambda: shmbus.Publisher("adv_a\0other", schema, key=key),
            lambda: shmbus.Subscriber("adv_a\0other", key=key, wait=0),
            lambda: shmbus.Subscriber("adv_a", key=key, wait=0, schema=schema + "\0x"),
            lambda: shmbus.Subscriber("adv_a", bus="b\0c", wait=0),
            lambda: shmbus.key("adv_a\0other"),
        ):
            with pytest.raises(shmbus.InvalidArgument, match="NUL character"):
                make()
        # 2**32 + key would have become `key`; 2**32 the name's own key.
        for bad in (2**32 + key, 2**32, -1):
            with pytest.raises(shmbus.InvalidArgument, match="out of range"):
                shmbus.Subscriber("adv_a", key=bad, wait=0)
        with pytest.raises(shmbus.InvalidArgument, match="out of range"):
            shmbus.Publisher("adv_b", schema, key=key + 1, slots=2**32 + 16)
        with pytest.raises(shmbus.InvalidArgument, match="must be a str"):
            shmbus.Subscriber(5, key=key, wait=0)
        with pytest.raises(shmbus.InvalidArgument, match="timeout"):
            shmbus.Subscriber("adv_a", key=key, wait=float("nan"))
        sub = shmbus.Subscriber("adv_a", key=key, wait=float("inf"))
        with pytest.raises(shmbus.JsonError, match="not JSON"):
            pub.publish({"x": {1, 2}})
        deep = []
        for _ in range(100000):
            deep = [deep]
        with pytest.raises(shmbus.JsonError, match="not JSON"):
            pub.publish({"x": deep})
        with pytest.raises(shmbus.JsonError, match="does not fit in u8"):
            pub.publish({"x": 2**100})
        assert pub.publish({"x": 7}) == 1
        assert sub.latest()["value"] == {"x": 7}
        sub.close()
    finally:
        pub.remove()


def test_bad_arguments_get_short_errors_that_name_them(key):
    """An error about an argument shows it cut short: a huge int is not
    str()-ed (over 4300 digits that raises ValueError about the conversion,
    not about the argument), a 10 kB timeout is not echoed whole, and a str
    with no UTF-8 form (a lone surrogate from os.fsdecode) is InvalidArgument."""
    for bad in (10**5000, -(10**5000), 2**250):
        with pytest.raises(shmbus.InvalidArgument, match="key = -?an int of [0-9]+ bits is out of range") as e:
            shmbus.Subscriber("adv_c", key=bad, wait=0)
        assert len(str(e.value)) < 200
    for bad in ("x" * 10000, [1] * 5000, -(10**5000)):
        with pytest.raises(shmbus.InvalidArgument, match="timeout must be") as e:
            shmbus.Subscriber("adv_c", key=key, wait=bad)
        assert len(str(e.value)) < 200, str(e.value)[:300]
        if isinstance(bad, str):
            # The rule of every shmbus message: the first 40, and the length.
            assert "'%s... (10002 characters)" % ("x" * 39) in str(e.value), str(e.value)
    for make in (
        lambda: shmbus.key("adv\udcffc"),
        lambda: shmbus.Subscriber("adv\udcffc", key=key, wait=0),
        lambda: shmbus.Publisher("adv_c", "struct A { x: u8 }", bus="b\udcff", key=key),
        lambda: shmbus.Publisher("adv_c", "struct A\udcff { x: u8 }", key=key),
    ):
        with pytest.raises(shmbus.InvalidArgument, match=r"is not valid Unicode: '\\udcff' at index"):
            make()


def test_a_bus_no_tool_could_name_is_refused(key):
    """bus="" was the default bus in Python and a bus of its own in C; any
    bus is now checked as the config and --bus check it."""
    # "a/b": keys hash BUS/NAME, so it would share keys with bus "a".
    for bad in ("", "lab bench", "a\x07", "a/b"):
        with pytest.raises(shmbus.InvalidArgument, match="invalid bus"):
            shmbus.key("imu", bus=bad)
        with pytest.raises(shmbus.InvalidArgument, match="invalid bus"):
            shmbus.Subscriber("imu", bus=bad, wait=0)
    assert shmbus.key("imu", bus=None) == shmbus.key("imu", bus="shmbus")
    assert shmbus.key("imu", bus="lab") != shmbus.key("imu")


def test_wait_latest_returns_a_frame_larger_than_the_first_buffer(key):
    """A frame whose JSON is over the 4 KB first buffer: the read is retried
    with a larger buffer, and the retry returns the frame at once instead of
    waiting for another publish (it raised Timeout before)."""
    decl = "struct Big { s: heapless::String<6000> }"
    with shmbus.Publisher("big", schema=decl, key=key) as pub:
        sub = shmbus.Subscriber("big", key=key, wait=5)
        assert pub.publish({"s": "x" * 5000}) == 1
        s = sub.wait_latest(timeout=30)
        assert s["generation"] == 1 and len(s["value"]["s"]) == 5000
        with pytest.raises(shmbus.Timeout):
            sub.wait_latest(timeout=0)
        sub.close()


def test_one_subscriber_read_from_two_threads_pairs_each_value_with_its_frame(key):
    """Every read returns one frame's value with that frame's generation,
    however many threads read one Subscriber (each read's text landed in a
    shared buffer that another thread's read overwrote before it was
    decoded: mismatched values and JSONDecodeError)."""
    decl = "struct Seq { seq: u64, pad: heapless::String<32> }"
    with shmbus.Publisher("seq", schema=decl, key=key) as pub:
        sub = shmbus.Subscriber("seq", key=key, wait=5)
        stop = threading.Event()
        problems = []
        reads = [0, 0]

        def publish():
            g = 0
            while not stop.is_set():
                g += 1
                got = pub.publish({"seq": g, "pad": "p" * (g % 33)})
                if got != g:
                    problems.append(("published", g, got))

        def read(i):
            while not stop.is_set():
                try:
                    s = sub.latest()
                except Exception as e:  # noqa: BLE001 - any exception is the finding
                    problems.append("%s: %s" % (type(e).__name__, e))
                    continue
                if s is not None:
                    reads[i] += 1
                    if s["value"]["seq"] != s["generation"]:
                        problems.append((s["generation"], s["value"]["seq"]))

        threads = [threading.Thread(target=publish)] + [threading.Thread(target=read, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        # Bounded: stops by itself whatever the machine's load.
        wait_until(lambda: min(reads) >= 20000, timeout=20)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert not problems, problems[:5]
        assert min(reads) > 0
        sub.close()


def _inside(thread_ident, function, timeout=30.0):
    """True once thread `thread_ident` runs `function` (a frame of that name
    is on its stack): a wait is then in the C library, or about to be."""

    def found():
        f = sys._current_frames().get(thread_ident)
        while f is not None:
            if f.f_code.co_name == function:
                return True
            f = f.f_back
        return False

    return wait_until(found, timeout)


# A child that waits for an hour in a read and in an open; a helper thread
# sends it SIGINT once each wait is under way. Each wait must end in
# KeyboardInterrupt long before its hour.
_CTRL_C_CHILD = r"""
import signal, sys, threading, time
sys.path[:0] = [%(tests)r]
import shmbus
from test_shmbus import _inside

main = threading.main_thread().ident

def interrupt(function):
    def run():
        assert _inside(main, function)
        time.sleep(0.3)   # into the C call (an early signal passes anyway)
        signal.pthread_kill(main, signal.SIGINT)
    threading.Thread(target=run, daemon=True).start()

pub = shmbus.Publisher("ctrl-c", "struct C { v: u32 }", key=%(key)d)
sub = shmbus.Subscriber("ctrl-c", key=%(key)d, wait=0)
for what in ("wait", "wait_latest"):
    interrupt("_read_locked")
    try:
        getattr(sub, what)(timeout=3600)
        print(what, "returned")
    except KeyboardInterrupt:
        print(what, "interrupted")
# No publisher: the wait for one (the test's key fixture removes the topic).
pub.close()
interrupt("wait_for_publisher")
try:
    sub.wait_for_publisher(timeout=3600)
    print("wait_for_publisher returned")
except KeyboardInterrupt:
    print("wait_for_publisher interrupted")
sub.close()
interrupt("__init__")
try:
    shmbus.Subscriber("ctrl-c-absent", key=%(key)d + 1, wait=3600)
    print("open returned")
except KeyboardInterrupt:
    print("open interrupted")
"""


def test_ctrl_c_interrupts_a_wait_at_once(key):
    """Ctrl-C during `wait()`, `wait_latest()`, `wait_for_publisher()` or a
    Subscriber's wait for its topic raises KeyboardInterrupt then, not when the timeout ends:
    before, the C call slept through the signal (its waits retry on EINTR)
    and Python could raise only once it returned, an hour later here."""
    import subprocess

    code = _CTRL_C_CHILD % {"tests": os.path.dirname(os.path.abspath(__file__)), "key": key}
    try:
        r = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    except subprocess.TimeoutExpired as e:
        pytest.fail("a wait did not end on SIGINT: %s" % e.stdout)
    finally:
        from conftest import remove_key

        remove_key(key + 1)
    assert r.stdout.split("\n")[:4] == [
        "wait interrupted", "wait_latest interrupted", "wait_for_publisher interrupted", "open interrupted",
    ], r.stdout
    assert r.returncode == 0, r.stdout


# A child whose signal handler reads the subscriber that the main thread is
# waiting on. The handler's read raises Reentrant at once; the wait goes on
# and returns the frame published after the signal.
_REENTRANT_CHILD = r"""
import signal, sys, threading, time
sys.path[:0] = [%(tests)r]
import shmbus
from test_shmbus import _inside

main = threading.main_thread().ident
pub = shmbus.Publisher("reentrant", "struct C { v: u32 }", key=%(key)d)
sub = shmbus.Subscriber("reentrant", key=%(key)d, wait=0)
seen = []

def handler(signum, frame):
    try:
        seen.append(("read", sub.latest()))
    except shmbus.Reentrant as e:
        seen.append(("Reentrant", str(e)))

signal.signal(signal.SIGUSR1, handler)

def run():
    assert _inside(main, "_read_locked")
    time.sleep(0.3)
    signal.pthread_kill(main, signal.SIGUSR1)
    time.sleep(0.3)
    pub.publish({"v": 7})

threading.Thread(target=run, daemon=True).start()
got = sub.wait(timeout=60)
print("handler:", seen[0][0])
print("wait:", got["value"]["v"])
print("after:", sub.latest()["value"]["v"])
pub.close()
"""


def test_a_signal_handler_reading_the_waiting_subscriber_raises_not_deadlocks(key):
    """A signal handler that reads the subscriber its thread is waiting on
    gets `Reentrant` at once, and the wait returns the next frame: before,
    the handler waited for ever on the read lock the interrupted wait held
    (a SIGTERM handler doing a last read hung the process)."""
    import subprocess

    code = _REENTRANT_CHILD % {"tests": os.path.dirname(os.path.abspath(__file__)), "key": key}
    try:
        r = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    except subprocess.TimeoutExpired as e:
        pytest.fail("the handler's read or the wait hung: %s" % e.stdout)
    assert r.stdout.split("\n")[:3] == ["handler: Reentrant", "wait: 7", "after: 7"], r.stdout
    assert r.returncode == 0, r.stdout


def test_frames_lost_under_two_reading_threads_are_each_counted_once(key):
    """Two threads reading one Subscriber in order while the publisher
    overruns its 4-slot ring: frames returned plus frames reported missed
    add up to every frame published, once each (the count of a lost run is
    kept on the Subscriber until the next in-order frame carries it, and
    the other thread's reads go on meanwhile). The interpreter switches
    threads every microsecond here, to give a lost update its chance.

    A count that one thread adds after the other thread has taken the last
    frame waits for the next frame, as documented: one more frame,
    published and read once both threads are done, carries it (without it,
    a CI run came out 494 short)."""
    decl = "struct Seq { seq: u64 }"
    total = 40000
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with shmbus.Publisher("seq", schema=decl, key=key, slots=4) as pub:
            sub = shmbus.Subscriber("seq", key=key, wait=5)
            done = threading.Event()
            got = [[], []]
            problems = []

            def publish():
                for g in range(first, total + 1):
                    pub.publish({"seq": g})
                done.set()

            def read(i):
                while True:
                    finished = done.is_set()
                    try:
                        s = sub.next()
                    except Exception as e:  # noqa: BLE001 - any exception is the finding
                        problems.append("%s: %s" % (type(e).__name__, e))
                        continue
                    if s is not None:
                        got[i].append((s["generation"], s["missed"]))
                    elif finished:
                        return

            # One overrun for certain: 8 frames into the 4-slot ring before
            # the readers start (frames 1 to 4 are lost). Whether the
            # threads below overrun it too is up to the scheduler, and
            # `missed > 0` was that luck.
            for g in range(1, 9):
                pub.publish({"seq": g})
            first = 9
            threads = [threading.Thread(target=publish)] + [threading.Thread(target=read, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            assert not any(t.is_alive() for t in threads)
            pub.publish({"seq": total + 1})
            last = sub.next()
            sub.close()
    finally:
        sys.setswitchinterval(old)
    assert problems == []
    assert last is not None and last["generation"] == total + 1, last
    frames = got[0] + got[1] + [(last["generation"], last["missed"])]
    missed = sum(m for _, m in frames)
    assert len({g for g, _ in frames}) == len(frames)
    assert missed > 0, "the ring was never overrun: the test proves nothing"
    assert len(frames) + missed == total + 1, (len(frames), missed)


def test_a_read_from_another_thread_is_not_held_up_by_a_wait(key):
    """While one thread waits on a Subscriber (for ever here), another
    thread's `latest()` and `next()` of it return, as they do in C
    (the C library lets other calls in between a wait's 0.1 s slices):
    before, they waited for the whole wait, here for ever."""
    with shmbus.Publisher("side-read", "struct C { v: u32 }", key=key) as pub:
        pub.publish({"v": 1})
        sub = shmbus.Subscriber("side-read", key=key, wait=0)
        waited = []
        waiter = threading.Thread(target=lambda: waited.append(sub.wait(timeout=float("inf"))), daemon=True)
        waiter.start()
        assert _inside(waiter.ident, "_read_locked")
        side = []

        def read():
            side.append(sub.latest()["value"])
            side.append(sub.next())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(60)
        try:
            assert not reader.is_alive(), "the other thread's read was still held up after 60 s"
            assert waiter.is_alive() and not waited, waited
        finally:
            pub.publish({"v": 2})  # ends the wait (whatever happened above)
            waiter.join(60)
            reader.join(60)
        # latest: frame 1; next: nothing published since the subscriber
        # attached; the wait: frame 2.
        assert side == [{"v": 1}, None], side
        assert waited[0]["value"] == {"v": 2}, waited
        sub.close()
        pub.remove()


def test_close_from_another_thread_ends_a_wait_promptly(key):
    """`close()` while another thread waits returns, and the wait raises
    `Closed`, without waiting for the wait's timeout: before, close()
    blocked until the wait ended (an hour here)."""
    with shmbus.Publisher("close-wait", "struct C { v: u32 }", key=key) as pub:
        sub = shmbus.Subscriber("close-wait", key=key, wait=0)
        got = []

        def wait():
            try:
                got.append(sub.wait(timeout=3600))
            except Exception as e:
                got.append(e)

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        assert _inside(waiter.ident, "_read_locked")
        closer = threading.Thread(target=sub.close, daemon=True)
        closer.start()
        closer.join(60)
        waiter.join(60)
        assert not closer.is_alive(), "close() still blocked after 60 s"
        assert not waiter.is_alive(), "the wait still running after 60 s"
        assert len(got) == 1 and isinstance(got[0], shmbus.Closed), got
        with pytest.raises(shmbus.Closed):
            sub.latest()
        pub.remove()


def test_close_from_another_thread_ends_a_wait_for_the_publisher(key):
    """`close()` while another thread waits for a publisher to come back:
    the wait raises `Closed` within a slice, not at its timeout."""
    pub = shmbus.Publisher("close-wfp", "struct C { v: u32 }", key=key)
    sub = shmbus.Subscriber("close-wfp", key=key, wait=0)
    pub.close()
    got = []

    def wait():
        try:
            got.append(sub.wait_for_publisher(timeout=3600))
        except Exception as e:
            got.append(e)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    assert _inside(waiter.ident, "wait_for_publisher")
    sub.close()
    waiter.join(60)
    assert not waiter.is_alive(), "the wait still running after 60 s"
    assert len(got) == 1 and isinstance(got[0], shmbus.Closed), got


def test_a_fork_child_neither_hangs_on_a_waiting_thread_nor_publishes(key):
    """A process forked while another thread waits: the child's calls on
    that subscriber return (a frame, or an error saying the handle was busy
    at the fork) instead of blocking for ever on a lock held by a thread
    the child does not have; its copy of the publisher does not publish
    (`PublisherActive`, naming the parent); its close at exit leaves the
    parent's topic alone."""
    pub = shmbus.Publisher("fork-wait", "struct C { v: u32 }", key=key)
    sub = shmbus.Subscriber("fork-wait", key=key, wait=0)
    got = []

    def wait():
        try:
            got.append(sub.wait(timeout=20))
        except Exception as e:
            got.append(e)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    assert _inside(waiter.ident, "_read_locked")
    time.sleep(0.2)  # into the C wait (if not, the child reads: passes too)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            try:
                sub.latest()
            except shmbus.ShmbusError as e:
                if "forked" not in str(e):
                    code = 10
            try:
                pub.publish({"v": 7})
                code = code or 11
            except shmbus.PublisherActive as e:
                if str(os.getppid()) not in str(e):
                    code = code or 12
            try:
                pub.remove()
                code = code or 14
            except shmbus.PublisherActive:
                pass
            try:
                sub.close()
            except shmbus.ShmbusError:
                pass
            pub.close()
        except BaseException:
            code = code or 13
        os._exit(code)
    end = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done or time.monotonic() > end:
            break
        time.sleep(0.02)
    if not done:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert done, "the fork child blocked"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    # The parent still publishes, and its waiting thread gets the frame.
    assert pub.publish({"v": 1}) == 1
    waiter.join(60)
    assert len(got) == 1 and not isinstance(got[0], Exception), got
    assert got[0]["value"] == {"v": 1}
    assert sub.status()["publisher_pid"] == os.getpid()
    sub.close()
    pub.remove()


def test_remove_after_close_says_the_topic_was_not_removed(key):
    """`remove()` after `close()` (or after the `with` block closed the
    publisher) raises `Closed` naming the key to remove: before, it returned
    as if the topic were removed, and the segment stayed."""
    with shmbus.Publisher("rm-after-close", "struct C { v: u32 }", key=key) as pub:
        pub.publish({"v": 1})
    with pytest.raises(shmbus.Closed, match="0x%08x" % key):
        pub.remove()
    # The topic is still there, its frame readable.
    with shmbus.Subscriber("rm-after-close", key=key, wait=0) as sub:
        assert sub.latest()["value"] == {"v": 1}
    # A publisher that removed its topic: a second remove() does nothing.
    pub = shmbus.Publisher("rm-after-close", "struct C { v: u32 }", key=key)
    pub.remove()
    pub.remove()
    with pytest.raises(shmbus.NotFound):
        shmbus.Subscriber("rm-after-close", key=key, wait=0)


def test_a_publisher_learns_that_its_topic_or_its_lock_was_removed(key):
    """`check()` raises `Removed` once the topic's segment or its publisher
    lock was removed under the publisher: before, a Python publisher had no
    way to know, and published into a segment no reader could reach."""
    decl = "struct C { v: u32 }"
    pub = shmbus.Publisher("check", decl, key=key)
    pub.check()
    # Its lock removed (`ipcrm -s`), then the fix: close and open again.
    subprocess.run(["ipcrm", "-S", hex(key)], check=True)
    with pytest.raises(shmbus.Removed, match="publisher lock"):
        pub.check()
    pub.close()
    pub = shmbus.Publisher("check", decl, key=key)
    pub.check()
    # Its segment removed (`shmbus rm --force`, `ipcrm -M`, RemoveIPC).
    subprocess.run(["ipcrm", "-M", hex(key)], check=True)
    with pytest.raises(shmbus.Removed, match="was removed under this publisher"):
        pub.check()
    pub.close()
    with shmbus.Publisher("check", decl, key=key) as pub:
        pub.check()
        pub.publish({"v": 2})
        with shmbus.Subscriber("check", key=key, wait=0) as sub:
            assert sub.latest()["value"] == {"v": 2}
    with pytest.raises(shmbus.Closed):
        pub.check()


def _tear(key, generation):
    """Make the slot of frame `generation` odd, as a publisher killed while
    it overwrote that frame with one a lap newer leaves it (docs/LAYOUT.md,
    sections 2 and 5: the slots follow the header, each starting with its
    sequence word)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
    libc.shmat.restype = ctypes.c_void_p
    libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    libc.shmdt.argtypes = [ctypes.c_void_p]
    shmid = libc.shmget(ctypes.c_int32(key).value, 0, 0)
    assert shmid >= 0, ctypes.get_errno()
    base = libc.shmat(shmid, None, 0)
    assert base not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    try:
        header_size, slots, stride = (ctypes.c_uint32.from_address(base + o).value for o in (12, 16, 20))
        seq = ctypes.c_uint32.from_address(base + header_size + (generation & (slots - 1)) * stride)
        seq.value |= 1
    finally:
        libc.shmdt(ctypes.c_void_p(base))


def test_a_frame_its_publisher_left_mid_write_is_lost_once_and_reads_go_on(key):
    """A publisher SIGKILLed while it overwrote the oldest frame of the ring
    leaves that slot mid-write: the frame is lost. `next()` and `wait()` raise
    `ReadError` once, naming it, and then return the frames after it. Before,
    the reader stayed on it: every read raised `ReadError` again, for ever
    while no publisher restarted, and the frames after it were never read."""
    decl = "struct T { seq: u32 }"
    pub = shmbus.Publisher("torn", decl, key=key, slots=4)
    for seq in range(1, 5):
        pub.publish({"seq": seq})
    pub.close()  # no publisher runs: as after the SIGKILL
    _tear(key, 1)
    for how in ("next", "wait"):
        with shmbus.Subscriber("torn", key=key, schema=decl, wait=0) as sub:
            sub.seek_oldest()
            read = sub.next if how == "next" else (lambda: sub.wait(timeout=10))
            with pytest.raises(shmbus.ReadError, match=r"frame 1 of 'torn' is lost: its publisher died"):
                read()
            assert [read()["value"]["seq"] for _ in range(3)] == [2, 3, 4], how
            if how == "next":
                assert sub.next() is None
            else:
                with pytest.raises(shmbus.PublisherGone):
                    sub.wait(timeout=10)


def _libc():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
    libc.shmat.restype = ctypes.c_void_p
    libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    libc.shmdt.argtypes = [ctypes.c_void_p]
    return libc


def test_a_segment_that_is_no_topic_is_an_open_error(key):
    """Another program's memory at the key is `OpenError` (SHMBUS_ERR_OPEN)
    for a subscriber and a publisher, with the library's message; it was a
    bare `ShmbusError`, which a program could only tell by its code."""
    import ctypes

    libc = _libc()
    shmid = libc.shmget(ctypes.c_int32(key).value, 4096, 0o1000 | 0o2000 | 0o600)  # IPC_CREAT | IPC_EXCL
    assert shmid >= 0, ctypes.get_errno()
    base = libc.shmat(shmid, None, 0)
    assert base not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    try:
        ctypes.memmove(base, b"not a topic, another program's memory" * 8, 304)
    finally:
        libc.shmdt(ctypes.c_void_p(base))
    with pytest.raises(shmbus.OpenError, match="is not a shmbus topic") as e:
        shmbus.Subscriber("x", key=key, wait=0)
    assert e.value.code == -13
    with pytest.raises(shmbus.OpenError, match="is not a shmbus topic"):
        shmbus.Publisher("x", "struct T { v: u32 }", key=key)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a private IPC namespace whose kernel.shmmni is 0")
def test_a_full_system_limit_is_a_system_limit_error(key):
    """A publisher that meets a full kernel.shmmni gets `SystemLimit`, which
    names the limit; it was a bare `ShmbusError`. In a forked child with an
    IPC namespace of its own, so the limit of this machine is not touched."""
    import ctypes

    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(0x08000000) != 0:  # CLONE_NEWIPC
                code = 4
            else:
                with open("/proc/sys/kernel/shmmni", "w") as f:
                    f.write("0")
                try:
                    shmbus.Publisher("limit", "struct T { v: u32 }", key=key)
                    code = 1
                except shmbus.SystemLimit as e:
                    code = 0 if "kernel.shmmni" in str(e) and e.code == -23 else 5
                except shmbus.ShmbusError:
                    code = 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), status
    assert os.WEXITSTATUS(status) == 0, {
        1: "the publisher opened", 2: "another ShmbusError", 3: "the child failed", 4: "unshare failed",
        5: "SystemLimit without kernel.shmmni or code -23"}.get(os.WEXITSTATUS(status), status)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the reader runs as another uid (nobody)")
def test_a_reader_shut_out_by_a_mode_change_gets_permission_denied(key):
    """A publisher restarted with a narrower mode (0644 -> 0600) under an
    attached reader of another uid: the reader's waits can no longer read
    the publisher lock, and raise `PermissionDenied` (also a
    `PermissionError`) naming the new mode. Before, a plain `ShmbusError`
    with code -24 (SHMBUS_ERR_SYS, "another system call failed")."""
    decl = "struct P { v: u32 }"
    pub = shmbus.Publisher("shut-out", decl, key=key, mode=0o644)
    pub.publish({"v": 1})
    attached_r, attached_w = os.pipe()
    go_r, go_w = os.pipe()
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            sub = shmbus.Subscriber("shut-out", key=key, wait=0)
            os.write(attached_w, b"A")
            os.read(go_r, 1)
            got = []
            # The frame published after the change is still read (the
            # mapping stays); then each wait says what is denied.
            got.append(repr(sub.wait(timeout=30)["value"]))
            for call in (lambda: sub.wait(timeout=30), lambda: sub.wait_for_publisher(timeout=30)):
                try:
                    call()
                    got.append("no error")
                except shmbus.ShmbusError as e:
                    got.append("%s %d %s %s" % (type(e).__name__, e.code, isinstance(e, PermissionError), e))
            os.write(result_w, "\n".join(got).encode())
            code = 0
        finally:
            os._exit(code)
    try:
        assert os.read(attached_r, 1) == b"A"
        pub.close()
        pub = shmbus.Publisher("shut-out", decl, key=key, mode=0o600)
        pub.publish({"v": 2})
        os.write(go_w, b"G")
        os.close(result_w)
        out = b""
        while True:
            chunk = os.read(result_r, 4096)
            if not chunk:
                break
            out += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        pub.close()
    assert status == 0, status
    lines = out.decode().splitlines()
    assert lines[0] == "{'v': 2}", lines
    for line in lines[1:]:
        assert line.startswith("PermissionDenied -12 True "), line
        assert "mode 600" in line, line
    assert len(lines) == 3, lines


def test_frames_lost_before_a_read_error_are_counted_in_the_next_frame(key):
    """A reader more than a ring behind when its publisher is SIGKILLed mid-write: the
    C library says first how many frames it lost (SHMBUS_MISSED), then that
    the oldest frame left is lost too (the one being overwritten). Python
    raised the ReadError and dropped the count: the frame after it said
    `missed` 0, and the frames lost to the overrun were reported nowhere."""
    decl = "struct T { seq: u32 }"
    # One topic per kind of read: a torn slot stays torn.
    other = next(conftest_keys)
    try:
        for how, k in (("next", key), ("wait", other)):
            pub = shmbus.Publisher("lost-count", decl, key=k, slots=2)
            with shmbus.Subscriber("lost-count", key=k, schema=decl, wait=0) as sub:
                for seq in range(1, 7):
                    pub.publish({"seq": seq})
                pub.close()  # no publisher runs: as after the SIGKILL
                # Frames 1..4 were overwritten; 5 is torn (its publisher was
                # overwriting it with frame 7); 6 is whole.
                _tear(k, 5)
                read = sub.next if how == "next" else (lambda: sub.wait(timeout=10))
                with pytest.raises(shmbus.ReadError, match="frame 5 of 'lost-count' is lost: its publisher died"):
                    read()
                got = read()
                assert (got["value"]["seq"], got["missed"]) == (6, 4), (how, got)
                if how == "next":
                    assert sub.next() is None
                else:
                    with pytest.raises(shmbus.PublisherGone):
                        sub.wait(timeout=10)
    finally:
        remove_key(other)


def test_wait_for_publisher_returns_when_a_publisher_or_its_frames_come_back(key):
    """`wait_for_publisher()`, the one call after `PublisherGone`: it times
    out while nothing comes, returns "alive" when a publisher takes the
    topic again, "no lock" when frames come from a publisher whose lock was
    removed, and raises `Removed` once the segment is gone."""
    decl = "struct C { v: u32 }"
    pub = shmbus.Publisher("wfp", decl, key=key)
    assert pub.info()["created"] is True
    assert pub.info()["locked"] in (True, False, None)
    pub.publish({"v": 1})
    with shmbus.Subscriber("wfp", key=key, wait=0) as sub:
        pub.close()
        with pytest.raises(shmbus.PublisherGone):
            sub.wait(timeout=10)
        with pytest.raises(shmbus.Timeout):
            sub.wait_for_publisher(0.3)
        pub = shmbus.Publisher("wfp", decl, key=key)
        assert pub.info()["created"] is False  # it reopened the segment
        assert sub.wait_for_publisher(30) == "alive"
        # Its lock removed under it (`ipcrm -s`): stopped while nothing is
        # published, back as soon as a frame comes.
        subprocess.run(["ipcrm", "-S", hex(key)], check=True)
        with pytest.raises(shmbus.PublisherGone):
            sub.wait(timeout=10)
        pub.publish({"v": 2})
        assert sub.wait_for_publisher(30) == "no lock"
        assert sub.next()["value"] == {"v": 2}
        pub.close()
        subprocess.run(["ipcrm", "-M", hex(key)], check=True)
        with pytest.raises(shmbus.Removed):
            sub.wait_for_publisher(30)


def _board_config(tmp_path, imu_key, cmd_key):
    path = tmp_path / "board.toml"
    path.write_text(
        'bus = "pytest"\n\n'
        '[[topic]]\nname = "imu"\nkey = 0x%08x\n\n'
        '[[topic]]\nname = "cmd"\nkey = 0x%08x\nslots = 8\nmode = "0600"\nlock = "off"\n' % (imu_key, cmd_key)
    )
    return path


def test_topics_open_by_their_name_in_the_board_config(rust_publisher, key, tmp_path, monkeypatch):
    cmd_key = next(conftest_keys)
    path = _board_config(tmp_path, key, cmd_key)
    try:
        # The Rust publisher's topic, by its config name (a pathlib.Path).
        rust_publisher("--rate", "1000", "--duration", "600")
        with shmbus.Subscriber.from_config("imu", config=path, schema=IMU, wait=30) as sub:
            assert sub.info()["key"] == key
            assert "seq" in sub.wait_latest(timeout=30)["value"]
        with pytest.raises(shmbus.SchemaMismatch) as e:
            shmbus.Subscriber.from_config("imu", config=str(path), schema="struct Other { v: u32 }")
        assert "carries frames of another type" in str(e.value)

        # A Python publisher and subscriber by name: the config's key and slots.
        decl = "struct Cmd { speed: f32 }"
        with shmbus.Publisher.from_config("cmd", decl, config=path) as pub:
            info = pub.info()
            assert (info["key"], info["slots"]) == (cmd_key, 8)
            sub = shmbus.Subscriber.from_config("cmd", config=os.fsencode(str(path)), schema=decl)
            assert pub.publish({"speed": 1.5}) == 1
            assert sub.wait(timeout=30)["value"] == {"speed": 1.5}
            with pytest.raises(shmbus.PublisherActive):
                shmbus.Publisher.from_config("cmd", decl, config=path)
            sub.close()
        # None: the tools' search order, $SHMBUS_CONFIG first.
        monkeypatch.setenv("SHMBUS_CONFIG", str(path))
        pub = shmbus.Publisher.from_config("cmd", decl)
        assert pub.info()["key"] == cmd_key
        pub.remove()
    finally:
        remove_key(cmd_key)


def test_a_bad_config_or_name_is_a_config_error_with_the_tools_message(key, tmp_path):
    path = _board_config(tmp_path, key, key + 1)
    with pytest.raises(shmbus.ConfigError) as e:
        shmbus.Subscriber.from_config("imu", config=tmp_path / "nope.toml")
    assert "nope.toml: cannot read the config" in str(e.value)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[topic]]\nname = "imu"\nslots = 3\n')
    with pytest.raises(shmbus.ConfigError) as e:
        shmbus.Publisher.from_config("imu", IMU, config=bad)
    assert str(e.value).endswith("bad.toml:3:9: slots = 3 must be a power of two from 1 to 65536: use slots = 4")
    with pytest.raises(shmbus.ConfigError) as e:
        shmbus.Subscriber.from_config("imu0", config=path, wait=0)
    assert str(e.value).endswith("no topic `imu0`; the topics are: imu, cmd; did you mean `imu`?")
    with pytest.raises(shmbus.ConfigError):
        shmbus.Publisher.from_config("imu", IMU, config=path, bus="lab bench")
    with pytest.raises(shmbus.InvalidArgument):
        shmbus.Subscriber.from_config("imu", config=42)
    with pytest.raises(shmbus.InvalidArgument):
        shmbus.Subscriber.from_config("imu", config="a\0b")
    # A config error is not "not there yet": the wait does not retry it.
    # (a retry would run into the ffi-test watchdog, not pass).
    with pytest.raises(shmbus.ConfigError):
        shmbus.Subscriber.from_config("gnss", config=path, wait=3600)


@pytest.mark.parametrize("how", ["name", "config"])
def test_ctrl_c_right_after_a_publisher_opened_leaves_no_publisher_behind(key, tmp_path, monkeypatch, how):
    # Ctrl-C lands where Python next checks for signals after the C open
    # returned: the call that frees the schema. Simulated there, at once.
    decl = "struct Cmd { speed: f32 }"
    path = _board_config(tmp_path, key + 1, key)
    real_close = shmbus._schema_close

    def interrupted(h):
        real_close(h)
        raise KeyboardInterrupt

    def open_it():
        if how == "config":
            return shmbus.Publisher.from_config("cmd", decl, config=path)
        return shmbus.Publisher("cmd", schema=decl, key=key)

    monkeypatch.setattr(shmbus, "_schema_close", interrupted)
    with pytest.raises(KeyboardInterrupt):
        open_it()
    monkeypatch.setattr(shmbus, "_schema_close", real_close)
    # Before, the opened handle was lost and still held the topic's lock:
    # every later publisher of the topic in this process was refused.
    pub = open_it()
    assert pub.publish({"speed": 1.0}) == 1
    pub.remove()


def test_config_error_is_exported():
    assert "ConfigError" in shmbus.__all__
    assert issubclass(shmbus.ConfigError, shmbus.ShmbusError)
