"""The clustered linear model against numpy least squares and a hand cluster-robust sandwich."""

import numpy as np
import pytest
from stats_frames import study_frame

from reprtools.stats import linear, scores


def _transfer():
    sc = scores.cell_scores(study_frame(seed=7, shifts={"vera": 0.03}))
    data = sc[sc["role"] == "transfer"][["value", "method", "ratio", "lang", "run"]].copy()
    data["ratio"] = data["ratio"].map(lambda r: f"{r:g}")
    return sc, data


def _design(data):
    methods = ["dora", "vera", "adalora", "pissa"]
    m = np.stack([(data["method"] == x).to_numpy(float) for x in methods], axis=1)
    r = (data["ratio"] == "0.5").to_numpy(float)[:, None]
    lang = (data["lang"] == "sw").to_numpy(float)[:, None]
    return np.hstack([np.ones((len(data), 1)), m, r, lang, m * r])


def test_estimates_are_least_squares_and_ses_the_clustered_sandwich():
    _, data = _transfer()
    res = linear.fit(data)
    x, y = _design(data), data["value"].to_numpy(float)
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    names = ["Intercept"] + [f'C(method, Treatment("lora"))[T.{m}]' for m in ("dora", "vera", "adalora", "pissa")]
    names += ["C(ratio)[T.0.5]", "C(lang)[T.sw]"]
    names += [f'C(method, Treatment("lora"))[T.{m}]:C(ratio)[T.0.5]' for m in ("dora", "vera", "adalora", "pissa")]
    np.testing.assert_allclose(res.params[names].to_numpy(), beta, atol=1e-10)
    u = y - x @ beta
    bread = np.linalg.inv(x.T @ x)
    runs = data["run"].to_numpy()
    meat = sum(np.outer(x[runs == g].T @ u[runs == g], x[runs == g].T @ u[runs == g]) for g in np.unique(runs))
    n, k, g = len(y), x.shape[1], len(np.unique(runs))
    cov = bread @ meat @ bread * g / (g - 1) * (n - 1) / (n - k)  # Stata's small-sample factor, as statsmodels
    np.testing.assert_allclose(res.bse[names].to_numpy(), np.sqrt(np.diag(cov)), rtol=1e-8)


def test_table_has_lora_as_reference_and_finds_the_planted_shift():
    sc, _ = _transfer()
    table = linear.linear_table(sc)
    tr = table[table["role"] == "transfer"].set_index("term")
    assert "method[lora]" not in tr.index and "method[vera]" in tr.index
    assert tr.loc["method[vera]", "estimate"] == pytest.approx(0.03, abs=0.02)
    assert (tr["n_runs"] == 45).all() and (tr["n_obs"] == 60).all()  # 15 ratio-0 runs serve both languages


def test_single_ratio_and_language_drop_their_terms():
    sc, data = _transfer()
    one = data[(data["ratio"] == "0.5") & (data["lang"] == "hi")]
    assert linear.formula(one) == 'value ~ C(method, Treatment("lora"))'
    assert linear.formula(data) == 'value ~ C(method, Treatment("lora")) * C(ratio) + C(lang)'


def test_a_saturated_model_is_left_out_not_a_crash():
    """One seed per cell (the CPU demo study): as many coefficients as observations, no residual degrees of freedom
    -- statsmodels' cluster correction would divide by zero; the family is left out instead."""
    import pandas as pd

    from reprtools.stats.linear import fit

    data = pd.DataFrame({"value": [0.40, 0.35, 0.45, 0.30], "method": ["lora", "lora", "dora", "dora"],
                         "ratio": ["0", "0.5", "0", "0.5"], "lang": ["sw"] * 4, "run": ["a", "b", "c", "d"]})
    assert fit(data) is None
