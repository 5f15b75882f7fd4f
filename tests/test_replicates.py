"""Population replicates: their seeds, the reuse of replicate 0's runs, Table 2 and its marks across
replicates on a hand-computed case, the noise floor, and the verify sample across replicates."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from paperlib import files, paths
from paperlib.profile_types import Grid, replicate_seed
from paperlib.profiles import SMOKE, get_profile
from paperlib.report import readings, render, replicates, tables
from paperlib.train import populations
from paperlib.train import trainer as train
from paperlib.train.store import spec_key

from conftest import write_result


# --------------------------------------------------------------------------- seeds and keys
def test_replicate_seeds_are_distinct_from_replicate_0_and_deterministic():
    p = get_profile("smoke", replicates=3)
    r0, r1, r2 = p.replicate_profiles()
    assert r0 is p and r0.name == "smoke" and r1.name == "smoke/r1" and r2.name == "smoke/r2"
    for pop0, pop1, pop2 in zip(r0.populations, r1.populations, r2.populations):
        assert pop0.grid.seeds == SMOKE.population(pop0.arch).grid.seeds  # replicate 0: today's seeds
        s0, s1, s2 = set(pop0.grid.seeds), set(pop1.grid.seeds), set(pop2.grid.seeds)
        assert len(s1) == len(s2) == len(s0) and not (s0 & s1) and not (s0 & s2) and not (s1 & s2)
        assert pop1.grid.lrs == pop0.grid.lrs and pop1.grid.dropouts == pop0.grid.dropouts  # the same grid otherwise
    # deterministic: the documented rule, computed here independently, and the same on a second call
    expected = int.from_bytes(hashlib.sha256(b"paperlib-replicate:1:0").digest()[:4], "big") % 2**31
    assert replicate_seed(0, 1) == expected == get_profile("smoke", replicates=3).replicate(1).populations[0].grid.seeds[0]
    assert replicate_seed(7, 0) == 7
    with pytest.raises(ValueError, match="replicate 3 is not in 0..2"):
        p.replicate(3)
    with pytest.raises(ValueError, match="replicates=0 must be >= 1"):
        dataclasses.replace(SMOKE, replicates=0)


def test_replicate_0_has_todays_run_keys_and_the_others_new_ones():
    keys = lambda prof: {spec_key(s) for _, s in train.profile_specs(prof)}  # noqa: E731
    p = get_profile("smoke", replicates=2)
    assert keys(p.replicate(0)) == keys(SMOKE)
    assert not keys(p.replicate(1)) & keys(SMOKE)
    assert len(keys(p.replicate(1))) == len(keys(SMOKE))


def test_a_replicate_shares_the_store_and_has_its_own_results():
    assert paths.runs_dir("smoke/r1") == paths.runs_dir("smoke")
    assert paths.results_dir("smoke/r1") == paths.results_dir("smoke") / "r1"


def test_default_and_smoke_profiles_name_their_replicates():
    assert get_profile("default").replicates == 2 and SMOKE.replicates == 1
    assert get_profile("default").with_overrides(replicates=2).replicates == 2


def _tiny(replicates: int):
    pop = dataclasses.replace(SMOKE.populations[0], grid=Grid(lrs=(1e-2,), dropouts=(0.0,), seeds=(0,)),
                              epochs=1, t_max=1)
    return get_profile("smoke", populations=(pop,), workers=1, replicates=replicates, device="cpu")


def test_replicate_0_reuses_the_stored_runs_without_training(tmp_results, monkeypatch):
    populations.train_profile(_tiny(1))  # today's population, one network
    calls = []
    real = populations.train_run

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(populations, "train_run", counting)
    p = _tiny(2)
    runs0 = populations.train_profile(p.replicate(0))
    assert calls == [] and set(runs0.attrs["training"]["actions"].values()) == {"skipped"}
    runs1 = populations.train_profile(p.replicate(1))
    assert len(calls) == 1 and calls[0]["seed"] == replicate_seed(0, 1)
    assert (paths.results_dir("smoke") / "r1" / "runs.csv").exists()
    assert set(runs1["key"]).isdisjoint(runs0["key"])
    pooled = tables.write_table1_pooled(p)
    assert int(pooled["n_networks"].iloc[0]) == 2
    assert "2 population replicate(s)" in (paths.results_dir("smoke") / "table1_pooled.md").read_text()


# --------------------------------------------------------------------------- Table 2 across replicates
SIZES = ";".join(["40/10"] * 5)
DEG = [0.9, 0.9, 0.9, 0.9, 0.8]
FOLDS = {  # replicate -> feature set -> per-fold accuracies of one fold seed (5 folds)
    0: {"deg": DEG, "B_Wl": [0.5, 0.6, 0.5, 0.6, 0.5], "B_What": [0.95, 0.95, 0.95, 0.95, 0.9],
        "B_Wprime": [0.5, 0.6, 0.5, 0.6, 0.5]},
    1: {"deg": DEG, "B_Wl": [0.5, 0.9, 0.2, 1.0, 0.6], "B_What": [0.85, 0.85, 0.85, 0.85, 0.7],
        "B_Wprime": [0.6, 0.5, 0.6, 0.5, 0.5]},
}


def _q1(rep: int) -> pd.DataFrame:
    rows = []
    for fs, acc in FOLDS[rep].items():
        rows.append({"dataset": "digits", "arch": "LeNet", "feature_set": fs, "mode": "plain", "classifier": "svm",
                     "t": 2, "fold_seed": 0, "accuracy": float(np.mean(acc)), "spearman": 0.0, "threshold": 30.0,
                     "n_networks": 16, "n_high": 8, "single_class": False,
                     "fold_accuracy": ";".join(str(a) for a in acc), "fold_sizes": SIZES})
    return pd.DataFrame(rows)


def _p_by_hand(a, b):
    """Corrected resampled t-test (Nadeau & Bengio, 2003) of a - b, 5 folds, n_test/n_train = 10/40."""
    d = np.subtract(a, b)
    t = d.mean() / np.sqrt((1 / len(d) + 10 / 40) * d.var(ddof=1))
    return 2 * st.t.sf(abs(t), len(d) - 1)


def test_hand_case_per_replicate_p_values():
    p = get_profile("smoke", populations=SMOKE.populations[:1])
    for rep in (0, 1):
        t2 = tables.table2_frame(p, _q1(rep)).set_index("feature_set")
        for b in ("B_Wl", "B_What", "B_Wprime"):
            assert t2.loc["deg", f"vs_{b}_p"] == pytest.approx(_p_by_hand(DEG, FOLDS[rep][b]))
    # the case: B_Wl significant in replicate 0 only; B_What significant in both but in opposite
    # directions; B_Wprime significant and above in both
    assert _p_by_hand(DEG, FOLDS[0]["B_Wl"]) < 0.05 < _p_by_hand(DEG, FOLDS[1]["B_Wl"])
    assert _p_by_hand(DEG, FOLDS[0]["B_What"]) < 0.05 and _p_by_hand(DEG, FOLDS[1]["B_What"]) < 0.05
    assert _p_by_hand(DEG, FOLDS[0]["B_Wprime"]) < 0.05 and _p_by_hand(DEG, FOLDS[1]["B_Wprime"]) < 0.05


def test_marks_hold_only_in_every_replicate_and_the_two_spreads(tmp_results):
    p = get_profile("smoke", populations=SMOKE.populations[:1], replicates=2)
    write_result(paths.results_dir("smoke") / "q1.csv", _q1(0))
    write_result(paths.results_dir("smoke") / "r1" / "q1.csv", _q1(1))
    t2 = tables.write_table2(p).set_index("feature_set")
    deg = t2.loc["deg"]
    # B_Wl: significant in replicate 0, not in replicate 1 -> no mark; B_What: opposite signs -> none
    assert render.significance_marks(deg) == ">W'"
    assert deg["vs_B_Wl_p"] == pytest.approx(max(_p_by_hand(DEG, FOLDS[0]["B_Wl"]), _p_by_hand(DEG, FOLDS[1]["B_Wl"])))
    assert not deg["vs_B_What_agree"] and deg["vs_B_Wprime_agree"]
    assert deg["vs_B_Wprime_diff"] == pytest.approx(np.mean([np.mean(np.subtract(DEG, FOLDS[r]["B_Wprime"]))
                                                              for r in (0, 1)]))
    # each cell: the mean over replicates; the replicate spread apart from the fold spread
    wl = t2.loc["B_Wl"]
    m0, m1 = np.mean(FOLDS[0]["B_Wl"]), np.mean(FOLDS[1]["B_Wl"])
    assert wl["accuracy_mean"] == pytest.approx((m0 + m1) / 2)
    assert wl["replicate_std"] == pytest.approx(np.std([m0, m1], ddof=1))
    assert wl["accuracy_std"] == 0.0 and wl["n_replicates"] == 2  # one fold seed per replicate
    md = (paths.results_dir("smoke") / "table2.md").read_text()
    assert "(rep. ± " in md and "in every population replicate" in md
    # the readings use only marks that hold
    rows = t2.reset_index()
    assert readings._sig(rows[rows["feature_set"] == "deg"].iloc[0], "B_Wl") == 0
    assert readings._sig(rows[rows["feature_set"] == "deg"].iloc[0], "B_Wprime") == 1
    # the noise floor, by hand: cells move by |m0 - m1| per feature set
    nf = files.read_table("smoke", "noise_floor.csv").iloc[0]
    moved = [abs(np.mean(FOLDS[0][f]) - np.mean(FOLDS[1][f])) for f in FOLDS[0]]
    assert nf["n_cell_differences"] == 4
    assert nf["cell_noise_median"] == pytest.approx(np.median(moved))
    assert nf["cell_noise_max"] == pytest.approx(max(moved))
    assert nf["n_marked"] == 1 and nf["marked_effect_min"] == pytest.approx(deg["vs_B_Wprime_diff"])
    diffs = [abs(np.mean(np.subtract(DEG, FOLDS[0][b])) - np.mean(np.subtract(DEG, FOLDS[1][b])))
             for b in ("B_Wl", "B_What", "B_Wprime")]
    assert nf["diff_noise_max"] == pytest.approx(max(diffs))
    assert (paths.results_dir("smoke") / "noise_floor.md").exists()
    assert files.read_metrics("smoke")["noise_floor"]["per_arch"]["LeNet"]["cell_noise_max"] == pytest.approx(
        max(moved), abs=1e-4)


def test_one_replicate_is_the_single_test(tmp_results):
    p = get_profile("smoke", populations=SMOKE.populations[:1])
    write_result(paths.results_dir("smoke") / "q1.csv", _q1(0))
    t2 = tables.write_table2(p).set_index("feature_set")
    assert render.significance_marks(t2.loc["deg"]) == ">Wl <What >W'"
    assert np.isnan(t2.loc["deg", "replicate_std"])
    nf = files.read_table("smoke", "noise_floor.csv").iloc[0]
    assert nf["n_cell_differences"] == 0 and np.isnan(nf["cell_noise_median"])


# --------------------------------------------------------------------------- make verify samples every replicate
def test_verify_sample_spreads_over_replicates():
    from paperlib.verify import sample

    runs = pd.DataFrame({"arch": ["A"] * 8 + ["B"] * 8, "key": [f"k{i}" for i in range(16)],
                         "replicate": [0, 1] * 8})
    keys = sample(runs, 3, seed=1)
    rep = dict(zip(runs["key"], runs["replicate"]))
    per = pd.Series([rep[k] for k in keys]).value_counts().to_dict()
    assert len(keys) == 6 and per == {0: 3, 1: 3}  # 2 + 1 for A, 1 + 2 for B
    assert sample(runs, 3, seed=1) == keys
    one = runs.drop(columns="replicate")
    assert len(sample(one, 3, seed=1)) == 6


# --------------------------------------------------------------------------- early stopping across replicates
def _es(regret_graph: float, saved_graph: float) -> pd.DataFrame:
    rows = [("none", 0.0, 0.0), ("graph", saved_graph, regret_graph), ("curve", 30.0, 0.5)]
    return pd.DataFrame([{"arch": "LeNet", "pruner": p, "saved_pct": s, "regret_mean": r, "high_stopped_mean": 0.1,
                          "n_high": 8, "n_networks": 16, "n_folds": 3} for p, s, r in rows])


def test_early_stopping_reading_holds_only_in_every_replicate():
    a, b = _es(0.2, 60.0), _es(3.0, 50.0)  # graph within 1 point in replicate 0 only
    comb = replicates.early_stopping_across([a, b]).set_index("pruner")
    assert comb.loc["graph", "saved_pct"] == pytest.approx(55.0)
    assert comb.loc["graph", "saved_pct_rep_std"] == pytest.approx(np.std([60.0, 50.0], ddof=1))
    assert comb.loc["graph", "regret_worst"] == pytest.approx(3.0)
    text = replicates.early_stopping_reading([a, b])
    assert "- LeNet: learning curve saves the most compute" in text  # graph saves more but fails replicate 1
    assert "graph signatures saves the most" in replicates.early_stopping_reading([a, _es(0.9, 50.0)])


def test_the_readme_shows_the_noise_floor_beside_the_marked_effects(monkeypatch, tmp_path):
    import pandas as pd
    from paperlib import files as pfiles
    from paperlib.report import blocks

    nf = pd.DataFrame([{"dataset": "digits", "arch": "VGG", "n_replicates": 2, "n_cell_differences": 20,
                        "cell_noise_median": 0.0191, "cell_noise_max": 0.088, "diff_noise_median": 0.02,
                        "diff_noise_max": 0.1, "n_marked": 0, "marked_effect_min": float("nan"),
                        "marked_effect_median": float("nan")}])
    monkeypatch.setattr(pfiles, "read_table_or_none", lambda profile, name: nf if name == "noise_floor.csv" else None)
    lines = blocks.noise_floor_at_a_glance("default", tmp_path)
    assert "| VGG on digits | 0.019 / 0.088 | 0.020 / 0.100 | 0 | – |" in lines
    monkeypatch.setattr(pfiles, "read_table_or_none", lambda profile, name: nf.assign(n_replicates=1))
    assert blocks.noise_floor_at_a_glance("default", tmp_path) == []
