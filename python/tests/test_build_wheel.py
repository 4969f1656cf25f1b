"""python/build_wheel.py bundles only a library of the wheel's platform.

PYTHON.md builds the host wheel from target/ffi/host and says to use
`--plat linux_armv7l` "with the armv7 library": given the host's library
with that tag, build_wheel.py wrote a wheel that pip installs on the board
and whose `import shmbus` then fails there (wrong ELF class). Now it refuses
(exit 2, no wheel), as it refuses a file that is no shared library.
These tests give it ELF headers only: no library needs to be built.
"""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "build_wheel.py"


def elf(cls, machine, e_type=3):
    """A 64-byte ELF header: little-endian, `cls` 1 (32-bit) or 2 (64-bit)."""
    head = b"\x7fELF" + bytes([cls, 1, 1]) + bytes(9)
    head += e_type.to_bytes(2, "little") + machine.to_bytes(2, "little")
    return head + bytes(64 - len(head))


X86_64, ARM, AARCH64 = elf(2, 62), elf(1, 40), elf(2, 183)


def build(tmp_path, data, plat):
    lib = tmp_path / "libshmbus.so.0.1.0"
    lib.write_bytes(data)
    out = tmp_path / "wheels"
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--lib", str(lib), "--version", "0.1.0", "--plat", plat, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    wheels = sorted(p.name for p in out.glob("*.whl")) if out.exists() else []
    return r, wheels


@pytest.mark.parametrize(
    "data,plat",
    [(X86_64, "linux_x86_64"), (ARM, "linux_armv7l"), (AARCH64, "linux_aarch64")],
)
def test_a_library_of_the_platform_makes_its_wheel(tmp_path, data, plat):
    r, wheels = build(tmp_path, data, plat)
    assert r.returncode == 0, r.stderr
    assert wheels == ["shmbus-0.1.0-py3-none-%s.whl" % plat]


@pytest.mark.parametrize(
    "data,plat,says",
    [
        (X86_64, "linux_armv7l", "built for x86-64; --plat linux_armv7l needs 32-bit ARM"),
        (ARM, "linux_x86_64", "built for 32-bit ARM; --plat linux_x86_64 needs x86-64"),
        (AARCH64, "linux_armv7l", "built for AArch64; --plat linux_armv7l needs 32-bit ARM"),
        (X86_64, "linux_aarch64", "built for x86-64; --plat linux_aarch64 needs AArch64"),
        (b"!<arch>\n" + bytes(64), "linux_x86_64", "not an ELF file"),
        (elf(2, 62, e_type=2), "linux_x86_64", "not a little-endian shared library"),
        (X86_64, "win32", "--plat win32: not one of"),
    ],
)
def test_a_library_of_another_platform_is_refused(tmp_path, data, plat, says):
    r, wheels = build(tmp_path, data, plat)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert says in r.stderr, r.stderr
    assert "no wheel written" in r.stderr, r.stderr
    assert wheels == []
