"""The suite's disk bound: the sampler of conftest keeps the peak of the temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import DiskSampler, tree_bytes


def test_sampler_keeps_the_peak_after_files_are_deleted(tmp_path: Path):
    folder = tmp_path / "store"
    (folder / "run").mkdir(parents=True)
    sampler = DiskSampler(folder)
    (folder / "run" / "snap_000.pt").write_bytes(b"\0" * 3000)
    (folder / "run" / "snap_001.pt").write_bytes(b"\0" * 2000)
    assert sampler.sample() == 5000 == tree_bytes(folder)
    (folder / "run" / "snap_000.pt").unlink()
    assert sampler.sample() == 2000 and sampler.peak == 5000


def test_the_bound_covers_both_workers_and_fails_the_run(tmp_path: Path):
    """A pytest run on two xdist workers, each test writing 3 MB, with a bound of 4 MB: the main
    process sees both workers' folders (6 MB at the peak), says so, and the run fails."""
    (tmp_path / "conftest.py").write_text((Path(__file__).parent / "conftest.py").read_text())
    (tmp_path / "test_big.py").write_text(
        "def test_a(tmp_path):\n    (tmp_path / 'f').write_bytes(b'\\0' * 3_000_000)\n"
        "def test_b(tmp_path):\n    (tmp_path / 'f').write_bytes(b'\\0' * 3_000_000)\n")
    env = {**os.environ, "PAPERLIB_TEST_DISK_BOUND": "4000000"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider",
                           "--basetemp", str(tmp_path / "base"), str(tmp_path / "test_big.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert "2 passed" in out, out[-3000:]
    assert "peak disk use of the temporary folder: 6 MB (bound 4 MB)" in out, out[-3000:]
    assert proc.returncode == 1 and "over the bound of 4 MB" in out, out[-3000:]
