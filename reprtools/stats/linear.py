"""The study's linear model per family (model, task, format, metric, role):

    score ~ C(method, Treatment("lora")) * C(ratio) + C(lang)

fitted by OLS (statsmodels formula API) with LoRA as the reference method and the target language as a fixed
effect (three languages are too few for a random effect); standard errors are clustered by training run
(``cov_type="cluster"``, statsmodels' small-sample correction), because a ratio-0 run serves every target
language of its task and so appears in several cells.  A design with one ratio or one language drops that term.
Each coefficient's minimum detectable value is (z_{1-alpha/2} + z_0.8) x its SE.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

from reprtools.stats.power import mde_coefficient
from reprtools.stats.scores import REFERENCE, families

if TYPE_CHECKING:
    import pandas as pd


def formula(data: "pd.DataFrame", reference: str = REFERENCE) -> str:
    """The model formula for ``data``: terms with a single level are left out."""
    method = f'C(method, Treatment("{reference}"))'
    ratio = data["ratio"].nunique() > 1
    rhs = f"{method} * C(ratio)" if ratio else method
    if data["lang"].nunique() > 1:
        rhs += " + C(lang)"
    return f"value ~ {rhs}"


def fit(data: "pd.DataFrame", reference: str = REFERENCE):
    """The fitted statsmodels results of :func:`formula` on ``data``, SEs clustered by ``run``; ``None`` when the
    model is saturated (no residual degrees of freedom: as many coefficients as observations, e.g. one seed per
    cell) or there are fewer than two runs to cluster by -- statsmodels' cluster correction divides by zero there."""
    import statsmodels.formula.api as smf

    groups = data["run"].astype("category").cat.codes.to_numpy()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        model = smf.ols(formula(data, reference), data=data)
        if model.df_resid < 1 or len(set(groups)) < 2:
            return None
        return model.fit(cov_type="cluster", cov_kwds={"groups": groups})


def _term_label(term: str, reference: str) -> str:
    return (term.replace(f'C(method, Treatment("{reference}"))[T.', "method[")
            .replace("C(ratio)[T.", "ratio[").replace("C(lang)[T.", "lang["))


def linear_table(scores: "pd.DataFrame", alpha: float = 0.05, reference: str = REFERENCE) -> "pd.DataFrame":
    """Per family: every coefficient with its clustered SE, p, (1 - alpha) interval and minimum detectable
    value; families with fewer observations than coefficients + 1, or fewer than two methods, are left out."""
    import pandas as pd

    rows = []
    for fam, sub in families(scores):
        data = sub[["value", "method", "ratio", "lang", "run"]].dropna().copy()
        if data["method"].nunique() < 2 or reference not in set(data["method"]):
            continue
        data["ratio"] = data["ratio"].map(lambda r: f"{r:g}")
        res = fit(data, reference)
        if res is None or res.df_resid < 1:
            continue
        ci = res.conf_int(alpha)
        for term in res.params.index:
            se = float(res.bse[term])
            rows.append({**fam, "term": _term_label(term, reference), "estimate": float(res.params[term]),
                         "se_cluster": se, "p": float(res.pvalues[term]), "ci_low": float(ci.loc[term, 0]),
                         "ci_high": float(ci.loc[term, 1]), "mde": mde_coefficient(se, alpha) if se > 0 else math.nan,
                         "n_obs": int(res.nobs), "n_runs": int(data["run"].nunique()),
                         "formula": formula(data, reference)})
    return pd.DataFrame(rows)
