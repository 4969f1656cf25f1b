#!/usr/bin/env python3
"""Publish simulated IMU samples on a topic at a fixed rate: the Python twin
of the Rust ``imu-publisher`` and the C ``shmbus-c-publisher`` (same
message, same values, same options), so any of them can feed any of the
subscribers.

    imu_publisher.py [--name imu] [--key KEY] [--slots 16] [--rate 100]
                     [--count N | --duration SECS] [--remove true]

``--count 0`` and no ``--duration`` publish until stopped (Ctrl-C,
SIGTERM or SIGHUP: the frame being published is finished, the summary
line printed, then exit 130, 143 or 129; the last frame stays readable
unless ``--remove true``). A signal this program was started with ignored
(``nohup``'s SIGHUP, a background job's SIGINT) stays ignored. Exit 1 on an error (the topic has
another type, another publisher is alive, ...) with the library's message;
exit 2 on a bad option.

Twice a second it asks ``Publisher.check()`` whether its topic was removed
under it (``shmbus rm --force``, ``ipcrm``, or systemd-logind's RemoveIPC at
the user's logout) or its publisher lock was (``ipcrm -s``) and, if so,
says so and opens the topic again (a new segment, or a new lock on the same
one), as a restart would. Without that look, a long-running publisher keeps
writing into a segment no reader can find.

Two terminals (either side may be the Rust or C example):

    python3 imu_publisher.py --rate 1000
    python3 imu_subscriber.py --count 10
"""

import argparse
import contextlib
import math
import signal
import sys
import time

import shmbus

PROG = "imu_publisher"

# The examples' message type, declared as the Rust `shmbus_examples::Imu`
# is: the same declaration gives the same schema fingerprint, so the Rust
# and C subscribers (which expect that type) accept this topic.
IMU = (
    "struct Imu { seq: u32, t_us: u64, frame_id: heapless::String<16>, "
    "acc: [f32; 3], gyro: [f32; 3], temp_c: f32 }"
)

# How often to ask whether the topic (or its lock) was removed: two system
# calls each time, so not at every publish.
CHECK_EVERY = 0.5


def simulate(seq, t_us):
    """One sample of a board rocking slowly on a table (Imu::simulate in
    Rust): deterministic in ``seq``, so a test can tell what was sent."""
    phase = seq * 0.05
    return {
        "seq": seq,
        "t_us": t_us,
        "frame_id": "imu_link",
        "acc": [0.3 * math.sin(phase), 0.3 * math.cos(phase), 9.81],
        "gyro": [0.02 * math.cos(phase), -0.02 * math.sin(phase), 0.0],
        "temp_c": 35.0 + (seq % 100) * 0.01,
    }


def key_arg(text):
    """--key: 0x-prefixed hex or decimal, as the Rust examples take it."""
    try:
        k = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError("%s: expected a number such as 0x53001234" % text) from None
    if not 0 <= k <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError("%s: out of range (0 to 0xffffffff)" % text)
    return k


def number_arg(low, high=math.inf, kind=float, low_open=False):
    """An argparse type: a number of ``kind`` in [low, high] (or (low, high]
    with low_open); NaN and text are refused with a message naming them."""

    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%s: not a number" % text) from None
        if not (low < v if low_open else low <= v) or not v <= high:
            raise argparse.ArgumentTypeError(
                "%s: must be %s %g%s" % (text, "more than" if low_open else "at least", low,
                                         "" if high == math.inf else " and at most %g" % high)
            )
        return v

    return parse


class Interrupted(Exception):
    """A signal cut a blocking wait short."""


class Stop:
    """SIGINT (Ctrl-C), SIGTERM (kill, systemctl stop) and SIGHUP (the
    terminal or ssh session went away) ask the program to stop. It stops
    where it can do so cleanly: the signal is noted, and only a blocking
    wait (inside ``with stop.waiting():``) is cut short, so a signal never
    lands half-way through a publish and its count, or a close. Left at its
    default action, SIGHUP would end the process inside ``publish()`` (a
    call into the C library, where Python runs no handler), with the slot
    mid-write: every in-order reader would get "publisher died mid-publish"
    until the next start. A signal that was ignored when the program
    started stays ignored: who started it asked for that."""

    def __init__(self):
        self.signum = None
        self._in_wait = False
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(s) is not signal.SIG_IGN:
                signal.signal(s, self._on_signal)

    def _on_signal(self, signum, frame):
        self.signum = signum
        if self._in_wait:
            raise Interrupted()

    @contextlib.contextmanager
    def waiting(self):
        self._in_wait = True  # first, so a signal from here on cuts the wait
        try:
            if self.signum is not None:
                raise Interrupted()
            yield
        finally:
            self._in_wait = False

    def exit_code(self):
        """0, or 128 + the signal's number, as a shell reports a signal."""
        return 0 if self.signum is None else 128 + self.signum


def parse_args(argv):
    ap = argparse.ArgumentParser(prog=PROG, description="Publish simulated IMU samples at a fixed rate.")
    ap.add_argument("--name", default="imu", help="topic name (default imu)")
    ap.add_argument("--key", type=key_arg, help="System V key, 0x... or decimal (default: derived from the name)")
    ap.add_argument("--slots", type=number_arg(1, 0xFFFFFFFF, int), help="ring slots (default 16)")
    ap.add_argument("--rate", type=number_arg(0, 1e6, low_open=True), default=100.0, help="samples a second")
    ap.add_argument("--count", type=number_arg(0, kind=int), default=0, help="stop after N samples (0: no limit)")
    ap.add_argument("--duration", type=number_arg(0), default=0.0, help="stop after SECS (0: no limit)")
    ap.add_argument("--remove", choices=["true", "false"], default="false", help="remove the topic when done")
    return ap.parse_args(argv)


def open_topic(a):
    """The one publisher of the topic: creates it, or reopens the one a
    previous publisher of the same type left."""
    return shmbus.Publisher(a.name, IMU, key=a.key, slots=a.slots)


def hz(rate):
    """A rate as the Rust example prints it: 100, not 100.0."""
    return "%d" % rate if rate == int(rate) else "%s" % rate


def publish(a, pub, stop):
    """Publish until --count, --duration or a signal. Returns the publisher
    (a new one if the topic was opened again), the frames published and the
    seconds it took."""
    period = 1.0 / a.rate
    start = time.monotonic()
    end = start + a.duration if a.duration > 0 else math.inf
    last_check = start
    seq = 0
    while (a.count == 0 or seq < a.count) and time.monotonic() < end and stop.signum is None:
        if time.monotonic() - last_check >= CHECK_EVERY:
            last_check = time.monotonic()
            try:
                pub.check()
            except shmbus.Removed as e:
                # The library's message says what was removed (the segment,
                # or the publisher lock alone) and how.
                print("%s: %s" % (PROG, e), file=sys.stderr, flush=True)
                # Closed first, then opened again: a new segment (or a new
                # lock on the same one), as a restart would.
                pub.close()
                pub = open_topic(a)
                info = pub.info()
                print(
                    "%s: publishing '%s' again at key 0x%08x (shmid %d)" % (PROG, info["name"], info["key"], info["shmid"]),
                    file=sys.stderr,
                    flush=True,
                )
        pub.publish(simulate(seq & 0xFFFFFFFF, time.monotonic_ns() // 1000))
        seq += 1
        # Absolute deadlines: the rate does not drift with the publish cost.
        # A sleep, never a spin (the board has one core); a signal ends it.
        delay = start + seq * period - time.monotonic()
        if delay > 0:
            try:
                with stop.waiting():
                    time.sleep(delay)
            except Interrupted:
                break
    return pub, seq, time.monotonic() - start


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    sys.stdout.reconfigure(line_buffering=True)  # each line at once, also into a pipe
    stop = Stop()
    pub = None
    try:
        pub = open_topic(a)
        info = pub.info()
        print(
            "publishing '%s' at key 0x%08x (shmid %d), %s Hz, frame capacity %d bytes%s"
            % (info["name"], info["key"], info["shmid"], hz(a.rate), info["frame_capacity"],
               "" if info["created"] else ", reopened")
        )
        pub, seq, took = publish(a, pub, stop)
        print("published %d frames in %.3f s" % (seq, took))
        if a.remove == "true":
            pub.remove()
            print("removed the topic")
        else:
            pub.close()  # the last frame stays readable
        return stop.exit_code()
    except shmbus.ShmbusError as e:
        # The library's message says what is wrong and what to do.
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return 1
    finally:
        if pub is not None:
            pub.close()  # nothing if closed or removed already


if __name__ == "__main__":
    sys.exit(main())
