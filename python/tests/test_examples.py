"""The Python examples (python/examples/imu_publisher.py, imu_subscriber.py)
as a user runs them: processes talking to each other and to the Rust
examples both ways, read by the same checks as the Rust examples' own test
(crates/shmbus-examples/tests/imu.rs), and carrying on when their topic is
removed under them.

Every process is killed at the end of its test, also when it fails, and
everything at the test's key is removed (the `key` fixture). No assertion
is on a time: each wait has a generous watchdog.
"""

import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

import shmbus
from conftest import C_EXAMPLES, EXAMPLES, remove_key

HERE = os.path.dirname(os.path.abspath(__file__))
PY_EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")
WATCHDOG = 90.0

# The program of each example, in each language.
PROGRAMS = {
    ("python", "publisher"): [sys.executable, os.path.join(PY_EXAMPLES, "imu_publisher.py")],
    ("python", "subscriber"): [sys.executable, os.path.join(PY_EXAMPLES, "imu_subscriber.py")],
    ("rust", "publisher"): [os.path.join(EXAMPLES, "imu-publisher")],
    ("rust", "subscriber"): [os.path.join(EXAMPLES, "imu-subscriber")],
    ("c", "subscriber"): [os.path.join(C_EXAMPLES, "shmbus-c-subscriber")],
    ("c", "publisher"): [os.path.join(C_EXAMPLES, "shmbus-c-publisher")],
}

IMU = (
    "struct Imu { seq: u32, t_us: u64, frame_id: heapless::String<16>, "
    "acc: [f32; 3], gyro: [f32; 3], temp_c: f32 }"
)


class Lines:
    """A child's output, line by line, read on a thread of its own."""

    def __init__(self, who, stream):
        self.who = who
        self.q = queue.Queue()
        self.seen = []
        self.ended = threading.Event()

        def pump():
            for line in stream:
                self.q.put(line.rstrip("\n"))
            self.ended.set()
            self.q.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def next_where(self, what, want):
        """The next line for which ``want`` holds, within the watchdog."""
        end = time.monotonic() + WATCHDOG
        while True:
            try:
                line = self.q.get(timeout=max(end - time.monotonic(), 0.01))
            except queue.Empty:
                line = None
                self.q.put(None)
            if line is None:
                self.q.put(None)  # the end stays the end for the next call
                pytest.fail("no line %s from %s; it said:\n%s" % (what, self.who, "\n".join(self.seen)))
            self.seen.append(line)
            if want(line):
                return line

    def next_with(self, text):
        return self.next_where("with %r" % text, lambda l: text in l)

    def frame_after(self, after):
        """The next ``frame gen=G ...`` line with G above ``after``: G."""
        line = self.next_where("of a frame after generation %d" % after,
                               lambda l: l.startswith("frame ") and int(field(l, "gen")) > after)
        return int(field(line, "gen"))

    def rest(self):
        """Everything until the child closes its output (watchdog)."""
        assert self.ended.wait(WATCHDOG), "%s did not end; it said:\n%s" % (self.who, "\n".join(self.seen))
        while True:
            line = self.q.get()
            if line is None:
                self.q.put(None)
                return "".join(l + "\n" for l in self.seen)
            self.seen.append(line)


@pytest.fixture
def run():
    """Start an example: run(language, role, key, *args) -> Popen with
    ``.out`` and ``.err`` (Lines). All are killed after the test."""
    started = []

    def start(lang, role, key, *args, name="imu", default_signals=False):
        p = subprocess.Popen(
            PROGRAMS[(lang, role)] + ["--name", name, "--key", "0x%08x" % key, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=default_stop_signals if default_signals else None,
        )
        started.append(p)
        p.out = Lines("%s %s (stdout)" % (lang, role), p.stdout)
        p.err = Lines("%s %s (stderr)" % (lang, role), p.stderr)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=60)


def field(line, key):
    for kv in line.split():
        if kv.startswith(key + "="):
            return kv[len(key) + 1:]
    raise AssertionError("no %s= in %r" % (key, line))


def finished(p):
    """Wait (watchdog) for ``p`` to exit: (exit code, stdout, stderr)."""
    out, err = p.out.rest(), p.err.rest()
    return p.wait(timeout=WATCHDOG), out, err


def check_frames(out, count, fresh=True):
    """What imu.rs checks of a subscriber's output: ``count`` frames, in
    order, every gap announced by a "missed N" line, the summary line's
    numbers; and every value is the one the publisher's sample ``seq``
    carries (Imu::simulate), so nothing was invented or mixed up. On a
    ``fresh`` topic, sample n is generation n + 1."""
    frames = [l for l in out.splitlines() if l.startswith("frame ")]
    assert len(frames) == count, out
    expect, missed = None, 0
    for l in out.splitlines():
        if l.startswith("missed "):
            n = int(l.split()[1])
            missed += n
            expect = None if expect is None else expect + n
        elif l.startswith("frame "):
            gen, seq = int(field(l, "gen")), int(field(l, "seq"))
            if fresh:
                assert gen == seq + 1, l
            if expect is not None:
                assert gen == expect, "out of order or an unannounced gap: %s\n%s" % (l, out)
            expect = gen + 1
            assert field(l, "frame_id") == "imu_link", l
            acc = l.split("acc=[")[1].split("]")[0].split()
            gyro = l.split("gyro=[")[1].split("]")[0].split()
            phase = seq * 0.05
            assert abs(float(acc[0]) - 0.3 * math.sin(phase)) <= 0.0011, l
            assert abs(float(acc[1]) - 0.3 * math.cos(phase)) <= 0.0011, l
            assert acc[2] == "9.810", l
            assert abs(float(gyro[0]) - 0.02 * math.cos(phase)) <= 0.00011, l
            assert abs(float(gyro[1]) + 0.02 * math.sin(phase)) <= 0.00011, l
            assert abs(float(field(l, "temp_c")) - (35.0 + (seq % 100) * 0.01)) <= 0.0051, l
            assert float(field(l, "lag_us")) >= 0, l
    assert out.endswith("received %d frames, missed %d\n" % (count, missed)), out


PAIRS = [("python", "python"), ("python", "rust"), ("rust", "python")]


@pytest.mark.parametrize("publisher,subscriber", PAIRS)
def test_the_subscriber_prints_the_publishers_frames_in_order(run, key, publisher, subscriber):
    count = 40
    # The subscriber first: it waits for the topic to appear.
    sub = run(subscriber, "subscriber", key, "--count", str(count), "--wait", "60", "--timeout", "30")
    pub = run(publisher, "publisher", key, "--rate", "200", "--duration", "120")
    rc, out, err = finished(sub)
    assert rc == 0, "%s\n%s" % (out, err)
    assert out.startswith("subscribed to 'imu' at key 0x%08x: 16 slots, frame capacity 60 bytes, " % key), out
    check_frames(out, count)
    first = pub.out.next_with("publishing")
    assert first.startswith("publishing 'imu' at key 0x%08x (shmid " % key), first
    # A new topic: created, not reopened.
    assert first.endswith(", 200 Hz, frame capacity 60 bytes"), first


@pytest.mark.parametrize("publisher", ["python", "rust"])
def test_a_publisher_says_when_it_reopened_a_topic(run, key, publisher):
    """The first line ends ", reopened" when the publisher took over the
    segment a previous publisher left (its frames go on from there), as in
    Rust and C."""
    for n, says in ((1, ""), (2, ", reopened")):
        p = run(publisher, "publisher", key, "--rate", "200", "--count", "3")
        first = p.out.next_with("publishing")
        assert first.endswith("frame capacity 60 bytes" + says), "run %d: %s" % (n, first)
        assert p.wait(timeout=WATCHDOG) == 0, p.err.rest()


def test_latest_mode_prints_only_new_frames(run, key):
    sub = run("python", "subscriber", key, "--count", "20", "--mode", "latest", "--wait", "60", "--timeout", "30")
    run("rust", "publisher", key, "--rate", "200", "--duration", "120")
    rc, out, err = finished(sub)
    assert rc == 0, "%s\n%s" % (out, err)
    gens = [int(field(l, "gen")) for l in out.splitlines() if l.startswith("frame ")]
    assert len(gens) == 20 and gens == sorted(set(gens)), out
    assert out.endswith("received 20 frames, missed 0\n"), out


def removal_lines(lang):
    """What each publisher says when its segment, then its lock, goes."""
    if lang == "rust":
        return "the topic 'imu' was removed while publishing", "the publisher lock of the topic 'imu' was removed"
    return "topic 'imu' (key 0x", "the publisher lock of topic 'imu' (key 0x"


@pytest.mark.parametrize("publisher,subscriber", PAIRS)
def test_the_examples_carry_on_when_the_topic_is_removed_under_them(run, key, publisher, subscriber):
    """As imu.rs: `ipcrm -m` under a running publisher and subscriber (a
    new segment at the same key), then `ipcrm -s` (the lock alone). The
    publisher says so each time and opens the topic again; the subscriber,
    started before, says so, attaches the new segment and reads on."""
    pub = run(publisher, "publisher", key, "--rate", "200", "--duration", "240")
    said = pub.err
    reader = run(subscriber, "subscriber", key, "--count", "1000000000", "--wait", "60", "--timeout", "30")
    read = reader.out
    read.frame_after(0)
    read.frame_after(0)
    # (frames are being published: the topic and its lock are there)
    with shmbus.Subscriber("imu", key=key, schema=IMU, wait=60) as sub:
        old = sub.info()["shmid"]
        pid = sub.status()["publisher_pid"]
    assert pid == pub.pid, (pid, pub.pid)

    # 1. The segment goes (`ipcrm -m`): a new one at the same key, read on.
    subprocess.run(["ipcrm", "-m", str(old)], check=True)
    segment_said, lock_said = removal_lines(publisher)
    line = said.next_with("removed")
    assert segment_said in line and "lock" not in line, "\n".join(said.seen)
    said.next_with("publishing 'imu' again at key 0x%08x" % key)
    sub = shmbus.Subscriber("imu", key=key, schema=IMU, wait=0)
    try:
        new = sub.info()["shmid"]
        assert new != old, "\n".join(said.seen)
        assert sub.status()["publisher_pid"] == pid
        read.next_with("the topic was removed; waiting up to 60.0 s for it to be created again")
        read.next_with("attached the topic again")
        # Its generations start again from 1 on the new segment.
        r2 = read.frame_after(0)
        read.frame_after(r2)

        # 2. The lock alone goes (`ipcrm -s`): readers see no publisher and
        # a second one could start; the publisher takes a lock again.
        subprocess.run(["ipcrm", "-S", "0x%08x" % key], check=True)
        line = said.next_with("removed")
        assert lock_said in line, "\n".join(said.seen)
        said.next_with("publishing 'imu' again at key 0x%08x" % key)
        st = sub.status()
        assert st["publisher"] == "alive" and st["publisher_pid"] == pid, st
        assert not st["removed"], st
        assert sub.info()["shmid"] == new  # the same segment
        # The subscriber reads on: a frame published after the lock came back.
        g3 = sub.wait_latest(timeout=60)["generation"]
        read.frame_after(g3)
        assert reader.poll() is None, "the subscriber ended:\n" + "\n".join(read.seen)
    finally:
        sub.close()
    # Nothing in what it printed is out of order, unannounced or invented,
    # on either segment (the generations start again on the new one, the
    # publisher's samples go on: so not seq + 1 there).
    reader.kill()
    reader.wait(timeout=WATCHDOG)
    before, after = read.rest().split("attached the topic again\n")
    for part, fresh in ((before.split("the topic was removed")[0], True), (after, False)):
        lines = [l for l in part.splitlines() if l.startswith(("frame ", "missed "))]
        frames = sum(l.startswith("frame ") for l in lines)
        missed = sum(int(l.split()[1]) for l in lines if l.startswith("missed "))
        check_frames("\n".join(lines) + "\nreceived %d frames, missed %d\n" % (frames, missed), frames, fresh)


def test_the_subscriber_waits_for_a_publisher_that_restarts(run, key):
    """A publisher that stops (here: ends its count) and starts again on the
    same topic: the subscriber says so, waits, and reads on in order (the
    generations go on; the new run's samples start again from 0)."""
    sub = run("python", "subscriber", key, "--count", "30", "--wait", "60", "--timeout", "30")
    first = run("python", "publisher", key, "--rate", "200", "--count", "20")
    assert first.wait(timeout=WATCHDOG) == 0, first.err.rest()
    sub.out.next_with("the publisher is not running; waiting up to 60.0 s for it to come back")
    second = run("rust", "publisher", key, "--rate", "200", "--duration", "120")
    rc, out, err = finished(sub)
    assert rc == 0, "%s\n%s" % (out, err)
    gens = [int(field(l, "gen")) for l in out.splitlines() if l.startswith("frame ")]
    # Every generation from the first printed on, except what a "missed"
    # line announced.
    missed = sum(int(l.split()[1]) for l in out.splitlines() if l.startswith("missed "))
    assert gens == sorted(gens) and gens[-1] - gens[0] + 1 == len(gens) + missed, out
    assert second.poll() is None


def test_a_missing_topic_a_wrong_type_and_a_bad_option_are_clear_errors(run, key):
    # No topic after --wait: exit 1 with the library's message.
    p = run("python", "subscriber", key, "--wait", "0.2")
    rc, out, err = finished(p)
    assert rc == 1 and "start its publisher first" in err, err
    assert err.startswith("imu_subscriber: ") and "Traceback" not in err, err
    # A topic of another type: refused at attach, for the subscriber and
    # for a publisher.
    # (a topic another type's publisher left: its last frame stays)
    with shmbus.Publisher("imu", "struct Other { a: u8 }", key=key) as other:
        other.publish({"a": 1})
    for role, args, says in (
        ("subscriber", ["--wait", "5"], "carries frames of another type"),
        ("publisher", ["--count", "1"], "remove the old topic first (`shmbus rm 0x%08x`" % key),
    ):
        rc, out, err = finished(run("python", role, key, *args))
        assert rc == 1, (role, out, err)
        assert err.startswith("imu_%s: " % role) and says in err and "Traceback" not in err, (role, err)
    remove_key(key)
    # A second publisher while one is alive.
    with shmbus.Publisher("imu", IMU, key=key):
        rc, out, err = finished(run("python", "publisher", key, "--count", "1"))
        assert rc == 1 and "already has a live publisher" in err and "Traceback" not in err, err
    # Bad options: exit 2, naming the option.
    for role, args, says in [
        ("subscriber", ["--count", "ten"], "--count"),
        ("subscriber", ["--wait", "-1"], "--wait"),
        ("subscriber", ["--mode", "oldest"], "--mode"),
        ("subscriber", ["--bogus", "1"], "--bogus"),
        ("publisher", ["--rate", "0"], "--rate"),
        ("publisher", ["--rate", "nan"], "--rate"),
        ("publisher", ["--remove", "yes"], "--remove"),
    ]:
        rc, out, err = finished(run("python", role, key, *args))
        assert rc == 2 and says in err and "Traceback" not in err, (role, args, err)
    p = subprocess.run(PROGRAMS[("python", "subscriber")] + ["--key", "0x1234abcd5"], capture_output=True, text=True,
                       timeout=WATCHDOG)
    assert p.returncode == 2 and "out of range" in p.stderr, p.stderr


def test_ctrl_c_and_sigterm_end_the_examples_cleanly(run, key):
    # A subscriber reading a publisher with no end: Ctrl-C ends it with its
    # summary line, which counts what it printed.
    pub = run("python", "publisher", key, "--rate", "200")
    sub = run("python", "subscriber", key, "--count", "1000000000", "--wait", "60", "--timeout", "30")
    sub.out.frame_after(0)
    sub.send_signal(signal.SIGINT)
    rc, out, err = finished(sub)
    frames = sum(l.startswith("frame ") for l in out.splitlines())
    assert rc == 130 and err == "", (out, err)
    assert out.splitlines()[-1].startswith("received %d frames, missed " % frames), out
    # The publisher: Ctrl-C stops it; the last frame stays.
    pub.out.next_with("publishing 'imu'")
    with shmbus.Subscriber("imu", key=key, schema=IMU, wait=60) as s:
        s.wait(timeout=60)
        pub.send_signal(signal.SIGINT)
        rc, out, err = finished(pub)
        assert rc == 130 and err == "", (out, err)
        n = int(out.split("published ")[1].split()[0])
        assert s.latest()["value"]["seq"] == n - 1, out
    # SIGTERM (systemctl stop) with --remove true: the topic goes.
    pub = run("python", "publisher", key, "--rate", "200", "--remove", "true")
    pub.out.next_with("publishing 'imu'")
    with shmbus.Subscriber("imu", key=key, schema=IMU, wait=60) as s:
        s.wait(timeout=60)
        pub.send_signal(signal.SIGTERM)
        rc, out, err = finished(pub)
        assert rc == 143 and out.endswith("removed the topic\n") and err == "", (out, err)
        assert s.status()["removed"]
    with pytest.raises(shmbus.NotFound):
        shmbus.Subscriber("imu", key=key, wait=0)


@pytest.mark.parametrize("subscriber", ["python", "rust", "c"])
def test_a_waiting_subscriber_reads_on_when_frames_come_without_a_lock(run, key, subscriber):
    """A publisher whose lock alone was removed (`ipcrm -s`) and that never
    takes a new one (a program that does not call check()) still publishes.
    Its frames come 4 a second here, so between two of them a wait's
    liveness check (every 100 ms) finds no frame since the previous check
    and says PublisherGone. The subscriber then waits for the publisher to
    come back; it must read on at the next frame, not give up after
    --wait s while frames keep coming (it waited for a live lock only)."""
    with shmbus.Publisher("imu", IMU, key=key) as pub:
        pub.publish({"seq": 0, "t_us": 0, "frame_id": "imu_link",
                     "acc": [0.0, 0.3, 9.81], "gyro": [0.02, 0.0, 0.0], "temp_c": 35.0})
        subprocess.run(["ipcrm", "-S", hex(key)], check=True)
        sub = run(subscriber, "subscriber", key, "--count", "12", "--wait", "3", "--timeout", "60")
        sub.out.next_with("subscribed to 'imu'")
        # Bounded: 12 frames are due after about 3 s; stop at 240 (60 s).
        seq = 1
        while sub.poll() is None and seq <= 240:
            phase = seq * 0.05
            pub.publish({"seq": seq, "t_us": seq, "frame_id": "imu_link",
                         "acc": [0.3 * math.sin(phase), 0.3 * math.cos(phase), 9.81],
                         "gyro": [0.02 * math.cos(phase), -0.02 * math.sin(phase), 0.0],
                         "temp_c": 35.0 + (seq % 100) * 0.01})
            seq += 1
            time.sleep(0.25)
        rc, out, err = finished(sub)
    assert rc == 0, "%s\n%s" % (out, err)
    assert "the publisher is not running; waiting up to 3.0 s" in out, out
    assert out.endswith("received 12 frames, missed 0\n"), out
    gens = [int(field(l, "gen")) for l in out.splitlines() if l.startswith("frame ")]
    assert gens == list(range(gens[0], gens[0] + 12)), out


def default_stop_signals():
    """In a child before its exec: SIGTERM, SIGINT and SIGHUP at their
    default action, whatever this test run inherited (an ignored signal
    stays ignored across exec: `nohup` ignores SIGHUP, a non-interactive
    shell's `&` SIGINT)."""
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


def wait_stopped(pid):
    """Until process ``pid`` is stopped (``T`` or ``t`` in /proc), within the watchdog."""
    end = time.monotonic() + WATCHDOG
    while True:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t"):
            return
        assert state not in ("Z", "X"), "process %d exited before it stopped" % pid
        assert time.monotonic() < end, "process %d did not stop" % pid
        time.sleep(0.0005)


class Caught:
    """Child ``pid`` held at the first moment ``at()`` is true, as
    ``shmbus_testkit::Caught::when`` holds one (crates/shmbus-testkit):
    traced (``ptrace`` seize) and run one instruction at a time, ``at()``
    checked after each, so a window of a few instructions (a publish's odd
    sequence) is caught on its first pass. Stopping it with SIGSTOP at
    random moments was not deterministic: a stop is taken at the next
    return to user space, most often the end of a system call, and on one
    CI machine a million tries never landed inside the window. Where the
    child cannot be traced (Yama's ptrace_scope 2 or 3, no single step on
    the kernel), it falls back to those samples, letting the child run
    for a random time of up to a millisecond between two (taken back to
    back, they starved it: see docs/RELIABILITY.md), at most 100,000 or
    150 s."""

    PTRACE_SINGLESTEP, PTRACE_DETACH = 9, 17
    PTRACE_SEIZE, PTRACE_INTERRUPT = 0x4206, 0x4207
    PTRACE_O_EXITKILL = 0x100000
    WALL = 0x40000000
    MAX_STEPS, MAX_SAMPLES = 20_000_000, 100_000
    SAMPLING, RUN_BETWEEN = 150.0, 0.001  # seconds

    def __init__(self, pid, at):
        import ctypes

        self.pid, self.traced, self.tries = pid, False, 0
        libc = ctypes.CDLL(None, use_errno=True)
        self._ptrace = libc.ptrace
        self._ptrace.restype = ctypes.c_long
        self._ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        if self._ptrace(self.PTRACE_SEIZE, pid, None, self.PTRACE_O_EXITKILL) == 0:
            self.traced = True
            try:
                if self._step_until(at):
                    return
            except BaseException:
                self.release()
                raise
            self.release()  # no single step here: sample instead
        import random

        end, self.tries = time.monotonic() + self.SAMPLING, 0
        while self.tries < self.MAX_SAMPLES and time.monotonic() < end:
            self.tries += 1
            os.kill(pid, signal.SIGSTOP)
            wait_stopped(pid)
            if at():
                return
            os.kill(pid, signal.SIGCONT)
            time.sleep(random.uniform(0, self.RUN_BETWEEN))
        raise AssertionError("never caught: %d SIGSTOP samples (not traceable here)" % self.tries)

    def _call(self, req, data=None):
        import ctypes

        if self._ptrace(req, self.pid, None, data) != 0:
            return ctypes.get_errno()
        return 0

    def _step_until(self, at):
        """True once held where ``at()`` holds; False if this kernel cannot
        single-step (the first step fails)."""
        assert self._call(self.PTRACE_INTERRUPT) == 0, "PTRACE_INTERRUPT failed"
        inject = 0
        while True:
            _, status = os.waitpid(self.pid, self.WALL)
            assert os.WIFSTOPPED(status), "process %d ended while traced (status %#x)" % (self.pid, status)
            sig = os.WSTOPSIG(status)
            # A signal for the process (not the step's SIGTRAP, not the
            # interrupt's event stop) is passed on with the next step, and
            # is never a stop to hold it at: detaching there loses it.
            inject = sig if sig != signal.SIGTRAP and status >> 16 == 0 else 0
            if not inject and at():
                return True
            assert self.tries < self.MAX_STEPS, "never caught in %d single steps" % self.MAX_STEPS
            self.tries += 1
            err = self._call(self.PTRACE_SINGLESTEP, inject)
            if err:
                assert self.tries == 1, "PTRACE_SINGLESTEP: %s" % os.strerror(err)
                return False

    def how(self):
        return "after %d %s" % (self.tries, "single steps" if self.traced else "SIGSTOP samples")

    def release(self):
        """Let it go on: detached (traced) or continued (SIGSTOP)."""
        if self.traced:
            self._call(self.PTRACE_DETACH)
            self.traced = False
        else:
            os.kill(self.pid, signal.SIGCONT)

    def signal_and_go(self, sig):
        """Send ``sig``, then let it go on: it takes the signal right where
        it was held."""
        os.kill(self.pid, sig)
        how = self.how()
        self.release()
        return how


def stopped_mid_frame(run, lang, key, sig):
    """Start the ``lang`` example publisher as fast as it goes (most of its
    time is spent publishing), hold it (``Caught``) at the first moment a
    slot is mid-write (odd sequence, read through a read-only mapping as
    section 5 of docs/LAYOUT.md reads it), send ``sig`` right there and
    let it go. Returns (exit code, stdout, stderr, slots left odd, how it
    was caught)."""
    from test_spec_cleanroom import Topic as RawTopic, u32

    pub = run(lang, "publisher", key, "--rate", "1000000", "--duration", "300", default_signals=True)
    pub.out.next_with("publishing 'imu'")
    t = RawTopic(key)
    try:
        slots = [t.base + t.header_size + i * t.slot_stride for i in range(t.slot_count)]

        def odd():
            return sum(u32(s) & 1 for s in slots)

        how = Caught(pub.pid, lambda: odd() == 1).signal_and_go(sig)
        rc, out, err = finished(pub)
        return rc, out, err, odd(), how
    finally:
        t.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_never_ends_the_python_publisher_in_the_middle_of_a_frame(run, key, sig):
    """The Python example publisher, held (``Caught``) at the first moment a
    slot is mid-write and sent SIGTERM, SIGINT or SIGHUP there: it finishes
    that frame, prints its summary and exits 128 + the signal, with no slot
    left odd and its last frame the one the summary counts. Before, SIGHUP
    (a closed terminal or ssh session) kept its default action and ended it
    inside the publish, leaving the slot mid-write."""
    rc, out, err, odd, how = stopped_mid_frame(run, "python", key, sig)
    assert rc == 128 + sig and err == "", (sig.name, rc, out, err)
    assert odd == 0, "%s ended the publisher in the middle of a frame (caught %s)" % (sig.name, how)
    n = int(out.split("published ")[1].split()[0])
    with shmbus.Subscriber("imu", key=key, schema=IMU, wait=0) as s:
        assert s.latest()["value"]["seq"] == n - 1, out


def test_a_stop_signal_started_ignored_stays_ignored_by_the_python_publisher(run, key):
    """Started under ``nohup`` (SIGHUP ignored), the Python publisher keeps
    it ignored and runs on; SIGTERM still stops it."""

    def ignore_hup():
        default_stop_signals()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    pub = subprocess.Popen(
        PROGRAMS[("python", "publisher")] + ["--name", "imu", "--key", "0x%08x" % key, "--rate", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignore_hup,
    )
    try:
        pub.out = Lines("python publisher (stdout)", pub.stdout)
        pub.err = Lines("python publisher (stderr)", pub.stderr)
        pub.out.next_with("publishing 'imu'")
        with shmbus.Subscriber("imu", key=key, schema=IMU, wait=60) as s:
            s.wait(timeout=60)
            pub.send_signal(signal.SIGHUP)
            # Still publishing after the SIGHUP: the newest frame once
            # `kill` returned, then a newer one, published after it (a
            # fatal signal ends the process before its next instruction).
            s.wait_latest(timeout=60)
            s.wait_latest(timeout=60)
            assert pub.poll() is None, "SIGHUP ended a publisher started with it ignored"
        pub.send_signal(signal.SIGTERM)
        rc, out, err = finished(pub)
        assert rc == 143 and err == "", (rc, out, err)
    finally:
        if pub.poll() is None:
            pub.kill()
        pub.wait(timeout=60)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_never_ends_the_c_publisher_in_the_middle_of_a_frame(run, key, sig):
    """SIGTERM (systemctl stop), Ctrl-C and SIGHUP end the C example
    publisher between two frames. Held at the first moment a slot is
    mid-write and sent the signal there (``stopped_mid_frame``), it must
    die of that signal and leave no slot odd. Before, it died with the
    slot mid-write, and every in-order reader got "publisher died
    mid-publish" for it until the next start repaired it."""
    rc, out, err, odd, how = stopped_mid_frame(run, "c", key, sig)
    assert rc == -sig, (rc, out, err)
    assert odd == 0, "%s ended the publisher in the middle of a frame (caught %s)" % (sig.name, how)
