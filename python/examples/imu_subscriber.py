#!/usr/bin/env python3
"""Print IMU samples from a topic as they are published, with their lag and
the topic's staleness: the Python twin of the Rust ``imu-subscriber`` and
the C ``shmbus-c-subscriber`` (same options, same output lines), so it reads
any of the example publishers.

    imu_subscriber.py [--name imu] [--key KEY] [--count 10] [--timeout SECS]
                      [--wait SECS] [--mode next|latest]

``--mode next`` (default) prints every frame in publish order and says when
it fell behind the ring; ``--mode latest`` prints only the newest frame each
time one arrives. Both sleep in the kernel between frames (the module's
blocking waits), never in a polling loop.

Exit 0 after ``--count`` frames; 1 on an error (no topic after ``--wait``
seconds, a topic of another type, no frame within ``--timeout``), with the
library's message; 2 on a bad option; 130 on Ctrl-C, 143 on SIGTERM
(after the summary line).

A publisher that stops (a crash, a restart) or a topic that is removed and
created again (``shmbus rm --force``, ``ipcrm``, systemd-logind's
RemoveIPC) is said on its own line, and the subscriber waits up to
``--wait`` seconds for it to come back, attaching the new segment if there
is one, as a long-running reader on a board should.
"""

import argparse
import contextlib
import math
import os
import signal
import sys

import shmbus

PROG = "imu_subscriber"

# The examples' message type (the Rust `shmbus_examples::Imu`). Given to the
# Subscriber, it makes a topic of another type an error at attach
# (SchemaMismatch), as the typed Rust and C subscribers do.
IMU = (
    "struct Imu { seq: u32, t_us: u64, frame_id: heapless::String<16>, "
    "acc: [f32; 3], gyro: [f32; 3], temp_c: f32 }"
)

# Frames in a row that cannot be read before giving up (one bad frame is
# skipped; a topic whose every frame fails is an error, not a loop).
READ_ERRORS_IN_A_ROW = 100


class Failed(Exception):
    """The subscriber cannot go on: exit 1 with this message."""


class Interrupted(Exception):
    """A signal cut a blocking wait short."""


class Stop:
    """SIGINT (Ctrl-C) and SIGTERM (kill, systemctl stop) ask the program to
    stop. It stops where it can do so cleanly: the signal is noted, and only
    a blocking wait (inside ``with stop.waiting():``) is cut short, so a
    signal never lands half-way through printing a frame and counting it."""

    def __init__(self):
        self.signum = None
        self._in_wait = False
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

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


def key_arg(text):
    """--key: 0x-prefixed hex or decimal, as the Rust examples take it."""
    try:
        k = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError("%s: expected a number such as 0x53001234" % text) from None
    if not 0 <= k <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError("%s: out of range (0 to 0xffffffff)" % text)
    return k


def number_arg(kind=float):
    """An argparse type: a number of ``kind`` >= 0 (NaN and text refused)."""

    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%s: not a number" % text) from None
        if not v >= 0:
            raise argparse.ArgumentTypeError("%s: must be at least 0" % text)
        return v

    return parse


def parse_args(argv):
    ap = argparse.ArgumentParser(prog=PROG, description="Print IMU samples from a topic as they are published.")
    ap.add_argument("--name", default="imu", help="topic name (default imu)")
    ap.add_argument("--key", type=key_arg, help="System V key, 0x... or decimal (default: derived from the name)")
    ap.add_argument("--count", type=number_arg(int), default=10, help="exit 0 after N frames (default 10)")
    ap.add_argument("--timeout", type=number_arg(), default=5.0, help="longest wait for a frame, s (default 5)")
    ap.add_argument("--wait", type=number_arg(), default=10.0,
                    help="longest wait for the topic or its publisher to appear, s (default 10)")
    ap.add_argument("--mode", choices=["next", "latest"], default="next")
    return ap.parse_args(argv)


def attach(a, stop):
    """Attach the topic, waiting up to --wait seconds for its publisher to
    create it. NotFound after the wait, SchemaMismatch for another type."""
    with stop.waiting():
        return shmbus.Subscriber(a.name, key=a.key, schema=IMU, wait=a.wait)


def publisher_text(status):
    p = status["publisher"]
    if p == "alive":
        return "publisher pid %d alive" % status["publisher_pid"]
    if p in ("not running", "no lock"):
        return "publisher not running"
    return "publisher status unknown"


def wait_for_publisher(sub, a, received, stop):
    """The publisher stopped: the same segment carries its frames once it
    (or a restart of it) runs again. Returns when it is alive, when a frame
    comes anyway (a publisher whose lock alone was removed still publishes),
    or when the topic was removed (the next read says Removed); Failed after
    --wait s."""
    print("the publisher is not running; waiting up to %.1f s for it to come back" % a.wait)
    try:
        with stop.waiting():
            sub.wait_for_publisher(a.wait)
    except shmbus.Removed:
        return
    except shmbus.Timeout:
        raise Failed("after %d frames: the publisher did not come back within %.1f s" % (received, a.wait)) from None


def print_frame(sub, s):
    v = s["value"]
    # Lag: publish to now, for this frame. Staleness: how old the topic's
    # newest frame is (what a control loop checks before trusting a value).
    st = sub.status()
    stale_us = math.nan if st["age_ns"] is None else st["age_ns"] / 1e3
    print(
        "frame gen=%d seq=%d t_us=%d frame_id=%s acc=[%.3f %.3f %.3f] gyro=[%.4f %.4f %.4f] temp_c=%.2f "
        "lag_us=%.0f stale_us=%.0f behind=%d"
        % (s["generation"], v["seq"], v["t_us"], v["frame_id"], *v["acc"], *v["gyro"], v["temp_c"],
           s["age_ns"] / 1e3, stale_us, max(st["generation"] - s["generation"], 0))
    )


def read(a, counts, stop):
    """Read and print until --count frames or a signal; ``counts``
    (received, missed, skipped) is kept up to date for the summary line.
    Interrupted if a signal cut a wait short."""
    sub = attach(a, stop)
    try:
        print("subscribed to '%s' at key 0x%08x: %d slots, frame capacity %d bytes, %s" % (
            a.name, sub.info()["key"], sub.info()["slots"], sub.info()["frame_capacity"], publisher_text(sub.status())))
        errors_in_a_row = 0
        while counts["received"] < a.count and stop.signum is None:
            try:
                # Sleeps in the kernel until a frame is published (or the
                # timeout); a frame a signal cuts off here is not printed
                # and not counted.
                with stop.waiting():
                    s = sub.wait(a.timeout) if a.mode == "next" else sub.wait_latest(a.timeout)
            except shmbus.ReadError as e:
                # One frame that cannot be read (it does not decode as Imu:
                # a typeless tool published a value the type cannot hold):
                # say so and read on; the read moved past it.
                counts["skipped"] += 1
                errors_in_a_row += 1
                print("skipped: %s" % e)
                if errors_in_a_row >= READ_ERRORS_IN_A_ROW:
                    raise Failed("after %d frames: %d frames in a row could not be read" % (
                        counts["received"], errors_in_a_row)) from None
                continue
            except shmbus.PublisherGone:
                wait_for_publisher(sub, a, counts["received"], stop)
                continue
            except shmbus.Removed:
                # The segment was removed: this handle never sees a new
                # frame. Attach the topic again once its publisher has
                # created it, and read the new segment from its first frame
                # still in the ring (its generations start again from 1).
                print("the topic was removed; waiting up to %.1f s for it to be created again" % a.wait)
                sub.close()
                try:
                    sub = attach(a, stop)
                except shmbus.ShmbusError as e:
                    raise Failed("after %d frames: %s" % (counts["received"], e)) from None
                sub.seek_oldest()
                print("attached the topic again")
                continue
            except shmbus.ShmbusError as e:
                # Timeout (no frame within --timeout), and anything else.
                raise Failed("after %d frames: %s" % (counts["received"], e)) from None
            errors_in_a_row = 0
            if s["missed"]:
                # An in-order reader that fell more than a ring behind: the
                # frames lost just before this one, announced, never hidden.
                counts["missed"] += s["missed"]
                print("missed %d frames (fell behind the ring)" % s["missed"])
            counts["received"] += 1
            print_frame(sub, s)
    finally:
        sub.close()


def summary(counts):
    line = "received %d frames, missed %d" % (counts["received"], counts["missed"])
    if counts["skipped"]:
        line += ", skipped %d" % counts["skipped"]
    print(line)


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    sys.stdout.reconfigure(line_buffering=True)  # each line at once, also into a pipe
    stop = Stop()
    counts = {"received": 0, "missed": 0, "skipped": 0}
    try:
        try:
            read(a, counts, stop)
        except Interrupted:
            pass  # Ctrl-C or SIGTERM during a wait: the summary, then exit
        summary(counts)
        return stop.exit_code()
    except (Failed, shmbus.ShmbusError) as e:
        # The library's message says what is wrong and what to do (e.g. "no
        # topic ... start its publisher first").
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader of our output went away (| head): stop quietly, and
        # keep Python from complaining again when it flushes at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
