#!/usr/bin/env python3
"""Build the shmbus wheel: the pure-Python module plus libshmbus.so.0.

    python3 python/build_wheel.py --lib target/ffi/host/lib/libshmbus.so.0.1.0 \\
        --version 0.1.0 --plat linux_x86_64 --out target/ffi/wheels

The wheel is tagged py3-none-PLAT (the module is pure Python; the bundled
library is for one architecture: linux_x86_64, linux_armv7l, linux_aarch64),
so `pip install shmbus-*.whl` gives a working `import shmbus` in one step,
with no compiler on the board. Standard library only: no build backend to
download.
"""

import argparse
import base64
import hashlib
import os
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))

# The platform tags a wheel can be built for, with what the ELF header of
# their library says: (EI_CLASS: 1 = 32-bit, 2 = 64-bit; e_machine).
PLATFORMS = {
    "linux_x86_64": (2, 62, "x86-64"),
    "linux_armv7l": (1, 40, "32-bit ARM"),
    "linux_aarch64": (2, 183, "AArch64"),
}
MACHINES = {(c, m): what for c, m, what in PLATFORMS.values()}


def check_library(data, lib, plat):
    """Refuse a library that is not a little-endian shared object of `plat`'s
    architecture: such a wheel installs, and then `import shmbus` fails on
    the board (ctypes: wrong ELF class, or cannot open shared object)."""
    if plat not in PLATFORMS:
        return "--plat %s: not one of %s" % (plat, ", ".join(sorted(PLATFORMS)))
    if len(data) < 20 or data[:4] != b"\x7fELF":
        return "--lib %s: not an ELF file (give libshmbus.so.0.VERSION, not the .a or a link's text)" % lib
    cls, endian = data[4], data[5]
    e_type = int.from_bytes(data[16:18], "little")
    machine = int.from_bytes(data[18:20], "little")
    if endian != 1 or e_type != 3:
        return "--lib %s: not a little-endian shared library (ELF type %d)" % (lib, e_type)
    want_cls, want_machine, want = PLATFORMS[plat]
    if (cls, machine) != (want_cls, want_machine):
        have = MACHINES.get((cls, machine), "ELF class %d, machine %d" % (cls, machine))
        hint = " (ci/ffi-install.sh PREFIX armv7 builds it)" if plat == "linux_armv7l" else ""
        return "--lib %s is built for %s; --plat %s needs %s%s" % (lib, have, plat, want, hint)
    return None


def digest(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", required=True, help="libshmbus.so to bundle")
    ap.add_argument("--version", required=True)
    ap.add_argument("--plat", required=True, help="platform tag, e.g. linux_x86_64 or linux_armv7l")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    name = "shmbus"
    dist = "%s-%s.dist-info" % (name, a.version)
    files = []
    with open(os.path.join(HERE, "shmbus", "__init__.py"), "rb") as f:
        files.append(("shmbus/__init__.py", f.read()))
    with open(a.lib, "rb") as f:
        lib = f.read()
    problem = check_library(lib, a.lib, a.plat)
    if problem:
        ap.exit(2, "build_wheel.py: %s; no wheel written\n" % problem)
    files.append(("shmbus/_lib/libshmbus.so.0", lib))
    metadata = (
        "Metadata-Version: 2.1\n"
        "Name: %s\n"
        "Version: %s\n"
        "Summary: shmbus telemetry bus (System V shared memory) for Python, over libshmbus\n"
        "Requires-Python: >=3.7\n"
        "License: MIT OR Apache-2.0\n" % (name, a.version)
    )
    wheel = (
        "Wheel-Version: 1.0\n"
        "Generator: shmbus build_wheel.py\n"
        "Root-Is-Purelib: false\n"
        "Tag: py3-none-%s\n" % a.plat
    )
    files.append((dist + "/METADATA", metadata.encode()))
    files.append((dist + "/WHEEL", wheel.encode()))
    record = "".join("%s,%s,%d\n" % (p, digest(d), len(d)) for p, d in files) + dist + "/RECORD,,\n"
    files.append((dist + "/RECORD", record.encode()))

    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "%s-%s-py3-none-%s.whl" % (name, a.version, a.plat))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for p, d in files:
            info = zipfile.ZipInfo(p, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if p.endswith(".so.0") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, d)
    print(path)


if __name__ == "__main__":
    main()
