"""Profiles: the information horizon is enforced when a profile is built, overrides keep the
profile's value for 0/empty, the paper grid is the authors' launched grid, and the overrides the
training notebook records are what later steps read."""

from __future__ import annotations

import dataclasses
import json

import pytest

from paperlib import paths, profiles
from paperlib.profiles import DEFAULT, PAPER, SMOKE, get_profile


def test_t_max_at_or_above_burn_in_is_refused():
    with pytest.raises(ValueError, match=r"t_max=10 is not below burn_in=10"):
        get_profile("default", t_max=10)
    with pytest.raises(ValueError, match=r"LeNet: t_max=9 is not below burn_in=5"):
        dataclasses.replace(DEFAULT, burn_in=5)
    # every shipped profile satisfies it
    for p in profiles.PROFILES.values():
        assert all(pop.t_max < p.burn_in for pop in p.populations)


@pytest.mark.parametrize("field, value, message", [
    ("workers", -1, "workers=-1"), ("threads", 0, None), ("device", "tpu", "device='tpu'"),
    ("precision", "fp8", "precision='fp8'"), ("n_folds", 1, "n_folds=1"),
])
def test_out_of_range_fields_are_refused(field, value, message):
    if value == 0:  # 0 means "keep the profile's value"
        assert getattr(get_profile("default", **{field: value}), field) == getattr(DEFAULT, field)
        return
    with pytest.raises(ValueError, match=message):
        get_profile("default", **{field: value})


def test_zero_or_empty_override_keeps_the_profiles_value():
    p = get_profile("default", workers=0, epochs=0, t_max=0, device="")
    assert p == DEFAULT
    assert get_profile("default", workers=3).workers == 3
    smoke = get_profile("smoke", epochs=2)  # epochs below t_max lowers t_max
    assert {pop.epochs for pop in smoke.populations} == {2} and {pop.t_max for pop in smoke.populations} == {2}
    with pytest.raises(KeyError, match="no_such_field"):
        get_profile("default", no_such_field=1)


def test_populations_can_be_replaced_and_epochs_then_apply_to_the_new_ones():
    one = DEFAULT.populations[:1]
    p = DEFAULT.with_overrides(populations=one)
    assert p.populations == one and p.archs == [one[0].arch]
    q = DEFAULT.with_overrides(populations=one, epochs=3)
    assert [(pop.arch, pop.epochs, pop.t_max) for pop in q.populations] == [(one[0].arch, 3, min(one[0].t_max, 3))]
    with pytest.raises(ValueError, match="populations is empty"):
        DEFAULT.with_overrides(populations=())


def test_paper_grid_is_the_authors_launched_grid():
    lrs = sorted(m * 10.0 ** e for e in range(-6, 0) for m in (3.0, 3.5))
    for pop in PAPER.populations:
        assert sorted(pop.grid.lrs) == pytest.approx(lrs)
        assert pop.grid.dropouts == tuple(i / 10 for i in range(10))
        assert pop.grid.seeds == (0,) and pop.grid.size == 120
        assert pop.epochs == (120 if pop.model.startswith("resnet") else 50)
    assert PAPER.batch_size == 128 and PAPER.burn_in == 10 and PAPER.patience == 5


def test_default_has_one_run_per_configuration():
    for pop in DEFAULT.populations:
        assert pop.grid.seeds == (0,) and pop.grid.size == 64
        assert len(set(pop.grid.lrs)) == len(pop.grid.lrs)


def test_effective_profile_reads_recorded_overrides(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "results_dir", lambda name: tmp_path / name)
    assert profiles.effective_profile("smoke") == SMOKE
    assert profiles.save_overrides("smoke", {"epochs": 2, "workers": 0, "device": ""}) == {"epochs": 2}
    assert json.loads((tmp_path / "smoke" / "overrides.json").read_text()) == {"epochs": 2}
    eff = profiles.effective_profile("smoke")
    assert {pop.epochs for pop in eff.populations} == {2}
    with pytest.raises(ValueError, match="t_max"):
        profiles.save_overrides("smoke", {"t_max": 12, "epochs": 12})
    (tmp_path / "smoke" / "overrides.json").write_text("{broken")
    with pytest.raises(ValueError, match="overrides.json.*corrupt"):
        profiles.effective_profile("smoke")


def test_the_names_profile_files_reserve_are_the_built_in_profiles():
    # profile_files must not import profiles (it is imported by it), so it keeps its own copy of the names
    from paperlib import profile_files
    assert profile_files.BUILTIN == {p.name for p in (SMOKE, DEFAULT, PAPER)}
