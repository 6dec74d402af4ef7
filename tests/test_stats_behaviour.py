"""Representation <-> behaviour on synthetic cells with a planted layer."""

import numpy as np
import pytest
from stats_frames import N_LAYERS, study_frame

from reprtools import results
from reprtools.stats import behaviour


def test_spearman_rows_is_the_rank_formula_without_ties():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 11)), rng.normal(size=(4, 11))
    n = x.shape[1]
    d = x.argsort(1).argsort(1) - y.argsort(1).argsort(1)
    np.testing.assert_allclose(behaviour._spearman_rows(x, y), 1 - 6 * (d ** 2).sum(1) / (n * (n * n - 1)))


def test_shift_and_change_are_against_the_base():
    df = study_frame(seed=8, planted_layer=1)
    data = behaviour.shift_and_change(df)
    row = data[(data["run"] == "dora-hi-r0.5-s1") & (data["layer"] == 3)].iloc[0]
    ev = df[(df["checkpoint"] == "dora-hi-r0.5-s1") & (df["role"] == "transfer")]["value"].iloc[0]
    base = df[(df["checkpoint"] == "base") & (df["lang"] == "hi")]["value"].iloc[0]
    cka = df[(df["checkpoint"] == "dora-hi-r0.5-s1") & (df["comparison"] == results.SHIFT)
             & (df["layer"] == 3)]["value"].iloc[0]
    assert row["change"] == pytest.approx(ev - base) and row["shift"] == pytest.approx(1 - cka)


def test_the_planted_layer_stands_out():
    table = behaviour.behaviour_table(study_frame(seed=9, planted_layer=2), n_boot=400)
    assert set(table["layer"]) == set(range(N_LAYERS))
    for _, sub in table.groupby("lang"):
        sub = sub.set_index("layer")
        assert sub.loc[2, "rho"] > 0.9 and sub.loc[2, "ci_low"] > 0.5 and sub.loc[2, "p_holm"] < 0.05
        others = sub.drop(index=2)
        assert (others["rho"].abs() < 0.6).all() and (others["p_holm"] > 0.05).all()
        assert (sub["ci_low"] <= sub["rho"]).all() and (sub["rho"] <= sub["ci_high"]).all()
        assert (sub["n_runs"] == 30).all()


def test_no_probe_rows_gives_an_empty_table():
    df = study_frame(seed=10)
    assert behaviour.behaviour_table(df[df["comparison"] != results.SHIFT], n_boot=50).empty


def test_a_constant_score_change_says_why_there_is_no_correlation():
    df = study_frame(seed=15, planted_layer=0)
    ev = (df["comparison"] == results.EVALUATION) & (df["checkpoint"] != "base")
    df.loc[ev, "value"] = df.loc[ev, "lang"].map({"hi": 0.40, "sw": 0.35, "en": 0.60})  # every run as the base
    table = behaviour.behaviour_table(df, n_boot=50)
    assert table["rho"].isna().all() and (table["note"] == "no spread in the score change").all()
