"""Fixtures: live Rust publishers (the shmbus-examples binaries) on keys
that no other test uses, removed after each test even when it fails.

The tests run inside a private IPC namespace (ci/ffi-test.sh runs pytest
under `unshare --ipc`), so fixed 0x79...... keys meet nothing else.
"""

import itertools
import os
import subprocess
import time

import pytest

EXAMPLES = os.environ.get("SHMBUS_EXAMPLES_DIR", "target/release")
# The C examples, as ci/ffi-test.sh builds them.
C_EXAMPLES = os.environ.get("SHMBUS_C_EXAMPLES_DIR", "target/ffi/host/bin")
_keys = itertools.count(0x79100000 + (os.getpid() & 0xFFF) * 16)


def remove_key(key):
    for flag in ("-M", "-S"):
        subprocess.run(["ipcrm", flag, hex(key)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def key():
    """A fresh key; whatever is created at it is removed afterwards."""
    k = next(_keys)
    yield k
    remove_key(k)


class RustPublisher:
    def __init__(self, key, *args):
        exe = os.path.join(EXAMPLES, "imu-publisher")
        self.key = key
        self.proc = subprocess.Popen(
            [exe, "--name", "imu", "--key", hex(key), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture
def rust_publisher(key):
    """Start `imu-publisher` (Rust) on a fresh key: rust_publisher(*args)."""
    started = []

    def start(*args):
        p = RustPublisher(key, *args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def run_rust_subscriber(key, *args, timeout=120):
    exe = os.path.join(EXAMPLES, "imu-subscriber")
    return subprocess.run(
        [exe, "--name", "imu", "--key", hex(key), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        text=True,
    )


def wait_until(cond, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False
