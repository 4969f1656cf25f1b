"""The Python samples of docs/PYTHON.md and README.md run as a reader types them.

Each ```python block (also one indented under a list item) is run in a fresh
interpreter against a live Rust `imu-publisher`: a renamed method, a changed
argument, a key that is not in a dict, or a sample that needs a name it never
defines fails here instead of in the reader's terminal. Two things are changed
before a sample runs, and only these: a wait's `timeout=1.0` becomes 60 s (a
busy machine may hold the 1 kHz publisher back longer than a second), and
`/etc/shmbus/board.toml` becomes a config written for the test. The publisher
is running and has published before a sample starts, so no sample races it.

The samples use the default bus's keys (`imu`, `cmd`): like every test here,
they run inside ci/ffi-test.sh's private IPC namespace, and every key is
removed afterwards, also when a test fails.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import shmbus
from conftest import RustPublisher, remove_key, wait_until
from conftest import _keys as conftest_keys

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)


def python_blocks(path):
    """The ```python blocks of a markdown file, dedented, in order."""
    out = []
    for m in BLOCK.finditer(path.read_text()):
        indent = len(m.group(1))
        out.append("".join(line[indent:] + "\n" for line in m.group(2).splitlines()))
    return out


def run_sample(code, tmp_path, **env):
    code = code.replace("timeout=1.0", "timeout=60.0")
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )


def start_imu(key):
    """A Rust publisher at `key` that has published at least one frame."""
    pub = RustPublisher(key, "--rate", "1000", "--duration", "600")
    with shmbus.Subscriber("imu", key=key, wait=60) as sub:
        assert wait_until(lambda: sub.latest() is not None, timeout=60), "the publisher published nothing"
    return pub


def assert_ran(result, sample):
    assert result.returncode == 0, "the sample failed:\n%s\n--- stderr:\n%s" % (sample, result.stderr)


def test_every_sample_is_python():
    for doc, at_least in (("docs/PYTHON.md", 2), ("README.md", 1)):
        blocks = python_blocks(ROOT / doc)
        assert len(blocks) >= at_least, doc
        for b in blocks:
            compile(b, doc, "exec")


def test_the_use_sample_of_python_md_runs(tmp_path):
    imu, cmd = shmbus.key("imu"), shmbus.key("cmd")
    sample = python_blocks(ROOT / "docs/PYTHON.md")[0]
    assert 'shmbus.Subscriber("imu"' in sample and 'shmbus.Publisher("cmd"' in sample, sample
    pub = start_imu(imu)
    try:
        r = run_sample(sample, tmp_path)
        assert_ran(r, sample)
        # print(s["generation"], s["real_ns"], s["value"]["acc"])
        m = re.fullmatch(r"(\d+) (\d+) \[([^\]]*)\]\n", r.stdout)
        assert m, r.stdout
        assert len(m.group(3).split(",")) == 3, r.stdout
        assert int(m.group(1)) >= 1
    finally:
        pub.stop()
        remove_key(imu)
        remove_key(cmd)


def test_the_from_config_sample_of_python_md_runs(tmp_path):
    imu, cmd = next(conftest_keys), next(conftest_keys)
    sample = python_blocks(ROOT / "docs/PYTHON.md")[1]
    assert "/etc/shmbus/board.toml" in sample, sample
    config = tmp_path / "board.toml"
    config.write_text(
        'bus = "docs"\n\n[[topic]]\nname = "imu"\nkey = 0x%08x\n\n'
        '[[topic]]\nname = "cmd"\nkey = 0x%08x\nlock = "off"\n' % (imu, cmd)
    )
    code = "import shmbus\n" + sample.replace("/etc/shmbus/board.toml", str(config))
    code += 'assert sub.wait_latest(timeout=1.0)["value"]["frame_id"] == "imu_link"\n'
    code += "assert pub.info()['key'] == %d\npub.remove()\n" % cmd
    pub = start_imu(imu)
    try:
        assert_ran(run_sample(code, tmp_path, SHMBUS_CONFIG=str(config)), code)
    finally:
        pub.stop()
        remove_key(imu)
        remove_key(cmd)


def test_the_readme_sample_runs(tmp_path):
    imu, cmd = shmbus.key("imu"), shmbus.key("cmd")
    sample = python_blocks(ROOT / "README.md")[0]
    code = sample + 'assert s["generation"] >= 1 and "acc" in s["value"], s\n'
    pub = start_imu(imu)
    try:
        assert_ran(run_sample(code, tmp_path), code)
    finally:
        pub.stop()
        remove_key(imu)
        remove_key(cmd)
