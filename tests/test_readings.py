"""The readings say in words what the result files support, and change when the files do."""

from __future__ import annotations

import pandas as pd

from paperlib import paths
from paperlib.report import readings, tables
from paperlib.profiles import get_profile
from paperlib.report.published import claim
from conftest import write_result


def _q1(deg_folds: str, lc_folds: str) -> pd.DataFrame:
    sizes = "20/10;20/10;20/10"
    rows = []
    for fs, folds, single in [("deg", deg_folds, False), ("evec", deg_folds, False),
                              ("learning-curve", lc_folds, False), ("B_Wl", "0.5;0.5;0.5", True),
                              ("B_What", "0.55;0.5;0.5", False), ("B_Wprime", "0.5;0.55;0.5", False),
                              ("learning-curve+deg", deg_folds, False)]:
        for seed in (0, 1):
            accs = [float(a) for a in folds.split(";")]
            rows.append({"dataset": "digits", "arch": "LeNet", "feature_set": fs, "mode": "plain", "classifier": "svm",
                         "t": 3, "fold_seed": seed, "accuracy": sum(accs) / 3, "balanced_accuracy": 0.7,
                         "majority_accuracy": 0.6, "single_class": single, "spearman": 0.1, "threshold": 30.0,
                         "n_networks": 30, "n_high": 12, "n_decided": 2, "fold_accuracy": folds,
                         "fold_sizes": sizes})
    return pd.DataFrame(rows)


def test_q1_reading_follows_the_paired_tests(tmp_results):
    out = paths.ensure(paths.results_dir("smoke"))
    write_result(out / "q1.csv", _q1("0.9;0.95;0.9", "0.7;0.7;0.75"))
    tables.write_table2(get_profile("smoke"))
    text = readings.q1_reading("smoke")
    assert "Single-class predictors (not results): 1 cell(s): LeNet/SVM/B_Wl" in text
    assert "'Ours beats the learning curve' (a baseline the paper left out) holds in all 1" in text
    assert f"\"{claim('q1_baselines')}\" holds in all 1" in text
    # the same run with a learning curve as good as ours: the claim no longer holds
    write_result(out / "q1.csv", _q1("0.9;0.95;0.9", "0.9;0.95;0.9"))
    tables.write_table2(get_profile("smoke"))
    text = readings.q1_reading("smoke")
    assert "'Ours beats the learning curve' (a baseline the paper left out) does not hold in any of the 1" in text
    assert "learning curve + Ours significantly above the learning curve alone) does not hold" in text


def test_q2_reading_does_not_count_a_single_class_predictor(tmp_results):
    out = paths.ensure(paths.results_dir("smoke"))
    rows = []
    for fs, acc, single in [("deg", 0.72, True), ("deg-sa", 0.85, False), ("evec", 0.5, False)]:
        for seed in (0, 1):
            rows.append({"transfer": "deeper", "train_archs": "ResNet-8", "test_arch": "ResNet-14", "feature_set": fs,
                         "mode": "plain", "classifier": "svm", "t": 3, "seed": seed, "accuracy": acc,
                         "balanced_accuracy": 0.5 if single else 0.8, "majority_accuracy": 0.72,
                         "single_class": single, "spearman": 0.0})
    write_result(out / "q2.csv", pd.DataFrame(rows))
    text = readings.q2_reading("smoke")
    assert "[single class in 2/2 seeds: not a result] not above chance" in text
    assert "Our size-aware signatures (our addition) are above chance: holds in all 1" in text
    assert f"\"{claim('q2_older')}\": does not hold in any of the 2" in text
