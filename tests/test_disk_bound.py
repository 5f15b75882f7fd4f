"""The suite's disk bound: the sampler of conftest keeps the peak of the temporary folder."""

from __future__ import annotations

from pathlib import Path

from conftest import DISK_BOUND, DiskSampler, tree_bytes


def test_sampler_keeps_the_peak_after_files_are_deleted(tmp_path: Path):
    folder = tmp_path / "store"
    (folder / "run").mkdir(parents=True)
    sampler = DiskSampler(folder)
    (folder / "run" / "snap_000.pt").write_bytes(b"\0" * 3000)
    (folder / "run" / "snap_001.pt").write_bytes(b"\0" * 2000)
    assert sampler.sample() == 5000 == tree_bytes(folder)
    (folder / "run" / "snap_000.pt").unlink()
    assert sampler.sample() == 2000 and sampler.peak == 5000


def test_the_test_run_is_sampled_under_the_bound(disk_bound: DiskSampler):
    """The sampler runs on pytest's temporary folder (conftest fails the whole run over the bound)."""
    assert disk_bound.is_alive() and disk_bound.root.is_dir()
    assert disk_bound.sample() <= DISK_BOUND and disk_bound.peak <= DISK_BOUND
