"""A small synthetic results frame for the report tests: base + 2 checkpoints, 3 languages, 5 layers, every
comparison kind, some values with intervals; values drawn from a seeded generator inside each measure's bounds."""

from __future__ import annotations

import itertools

import numpy as np

from reprtools.results import frame

LANGS = ("en", "hi", "bn")
CHECKPOINTS = (("lora_hi_10", "lora"), ("dora-hi-10", "dora"))  # an underscore name tests LaTeX escaping
MODELS = (("base", "base"), *CHECKPOINTS)
N_LAYERS = 5
SHIFT_METRICS = ("cka_linear", "cka_linear_debiased", "cka_rbf", "cosine_same_sentence")
SEPARABILITY_METRICS = ("silhouette", "probe_accuracy", "davies_bouldin", "fisher_ratio")
N_SENTENCES = 20


def _row(**kw) -> dict:
    return {"method": "", "reference": "", "lang": "", "lang_b": "", **kw}


def _interval(rng, value: float, rows: list, half: float | None = None, **kw) -> dict:
    """A row with a symmetric interval half the time."""
    if half is None and rng.random() < 0.5:
        half = 0.01 + 0.02 * rng.random()
    ci = {} if half is None else {"ci_low": value - half, "ci_high": value + half, "interval": "bootstrap"}
    rows.append(_row(value=value, **ci, **kw))
    return rows[-1]


def shift_rows(rng, rows: list) -> None:
    for (ck, method), layer, lang, metric in itertools.product(CHECKPOINTS, range(N_LAYERS), LANGS, SHIFT_METRICS):
        value = 1 - 0.3 * rng.random() * (layer + 1) / N_LAYERS
        _interval(rng, value, rows, checkpoint=ck, method=method, comparison="shift", reference="base",
                  layer=layer, lang=lang, metric=metric)
    (a, ma), (b, _) = CHECKPOINTS
    for layer, lang in itertools.product(range(N_LAYERS), LANGS):
        rows.append(_row(checkpoint=a, method=ma, comparison="checkpoints", reference=b, layer=layer, lang=lang,
                         metric="cka_linear_debiased", value=rng.uniform(0.7, 1.0)))
        rows.append(_row(checkpoint="lora_hi_10_s1", method="lora", comparison="seeds", reference=a,
                         layer=layer, lang=lang, metric="cka_linear_debiased", value=rng.uniform(0.8, 1.0)))


def crosslingual_rows(rng, rows: list) -> None:
    for (ck, method), layer in itertools.product(MODELS, range(N_LAYERS)):
        base = dict(checkpoint=ck, method=method, comparison="crosslingual", layer=layer, n=N_SENTENCES)
        for a, b in itertools.permutations(LANGS, 2):  # directed: both directions, different values
            rows.append(_row(**base, lang=a, lang_b=b, metric="retrieval_top1", value=rng.uniform(0, 1),
                             chance=1 / N_SENTENCES))
        for a, b in itertools.combinations(LANGS, 2):  # symmetric: one direction
            par, non = rng.uniform(0.6, 0.95), rng.uniform(0.5, 0.9)
            for metric, value in (("cosine_parallel", par), ("cosine_nonparallel", non), ("cosine_gap", par - non),
                                  ("cka_linear_debiased", rng.uniform(0.3, 0.9))):
                rows.append(_row(**base, lang=a, lang_b=b, metric=metric, value=value))


def separability_rows(rng, rows: list) -> None:
    ranges = {"silhouette": (-0.2, 0.4), "probe_accuracy": (0.5, 1.0), "davies_bouldin": (0.5, 3.0),
              "fisher_ratio": (0.5, 5.0)}
    for (ck, method), layer, metric in itertools.product(MODELS, range(N_LAYERS), SEPARABILITY_METRICS):
        rows.append(_row(checkpoint=ck, method=method, comparison="separability", layer=layer,
                         lang="+".join(LANGS), metric=metric, value=rng.uniform(*ranges[metric]),
                         chance=1 / len(LANGS) if metric == "probe_accuracy" else np.nan))


def seed_rows(rng, rows: list) -> None:
    floors = {"lora": 0.05, "dora": 0.08}
    for method, layer in itertools.product(floors, range(N_LAYERS)):
        v = floors[method] * (1 + layer / N_LAYERS)
        rows.append(_row(method=method, comparison="seed_floor", layer=layer, lang="+".join(LANGS),
                         metric="dissimilarity", value=v, ci_low=v - 0.02, ci_high=v + 0.02, interval="seed-pairs"))
    for layer in range(N_LAYERS):
        v = 0.05 + 0.06 * layer
        rows.append(_row(method="lora", reference="dora", comparison="methods", layer=layer, lang="+".join(LANGS),
                         metric="dissimilarity", value=v, ci_low=v - 0.01, ci_high=v + 0.015,
                         interval="seed-pairs"))
        rows.append(_row(method="lora", reference="dora", comparison="methods", layer=layer, lang="+".join(LANGS),
                         metric="exceeds_seed_floor",
                         value=float(v - 0.01 > max(f * (1 + layer / N_LAYERS) + 0.02 for f in floors.values()))))


def other_rows(rng, rows: list) -> None:
    for ck, method in MODELS:  # numbers without a layer: task scores, weight changes
        rows.append(_row(checkpoint=ck, method=method, comparison="evaluation", task="xnli", role="transfer",
                         lang="hi", metric="accuracy", value=rng.uniform(0.3, 0.6), chance=1 / 3))
    rows.append(_row(checkpoint="lora_hi_10", method="lora", comparison="weights", module="q_proj", layer=2,
                     metric="delta_norm", value=0.42))


def synthetic_frame(seed: int = 0):
    rng = np.random.default_rng(seed)
    rows: list = []
    for build in (shift_rows, crosslingual_rows, separability_rows, seed_rows, other_rows):
        build(rng, rows)
    return frame(rows)


def layer_cka_matrices(n: int = N_LAYERS) -> dict[str, np.ndarray]:
    """What the probe writes to layer_cka.npz: ``{estimator}:{name}`` -> matrix."""
    idx = np.arange(n)
    near = np.exp(-np.abs(np.subtract.outer(idx, idx)) / 3.0)
    return {"cka_linear:base": near, "cka_linear_debiased:base": near ** 2,
            "cka_linear:lora_hi_10_vs_base": near ** 0.5, "cka_linear_debiased:lora_hi_10_vs_base": near ** 3 - 0.02}
