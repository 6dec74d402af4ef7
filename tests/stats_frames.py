"""A synthetic study results frame (the reprtools results schema) for the stats tests: one model, one task,
target languages x ratios x seeds x methods, transfer and retention scores, base scores and probe shift rows.
Ratio-0 runs serve every target language (one run, several cells), as in a real study."""

import numpy as np

from reprtools import results

METHODS = ("lora", "dora", "vera", "adalora", "pissa")
LANGS = ("hi", "sw")
RATIOS = (0.0, 0.5)
N_LAYERS = 4


def run_name(method, lang, ratio, seed):
    return f"{method}-r0-s{seed}" if ratio == 0 else f"{method}-{lang}-r{ratio:g}-s{seed}"


def study_frame(seed=0, shifts=None, noise=0.01, seeds=(0, 1, 2), planted_layer=None, methods=METHODS):
    """Rows of a study: ``shifts`` maps method -> added score (default 0 for all); ``noise`` is the SD of each
    run's own deviation of its transfer and of its retention score (a number, or a dict method -> SD); with
    ``planted_layer`` the probe shift of that layer tracks the run's transfer gain over the base and the other
    layers are noise."""
    rng = np.random.default_rng(seed)
    shifts = shifts or {}
    base = {"hi": 0.40, "sw": 0.35, "en": 0.60}
    rows = [{"checkpoint": "base", "method": "base", "comparison": results.EVALUATION, "task": "xnli",
             "format": "instruct", "role": "reference", "lang": lang, "metric": "accuracy", "value": v, "n": 500}
            for lang, v in base.items()]
    runs = {}
    for method in methods:
        for lang in LANGS:
            for ratio in RATIOS:
                for s in seeds:
                    name = run_name(method, lang, ratio, s)
                    if name not in runs:
                        sd = noise[method] if isinstance(noise, dict) else noise
                        runs[name] = (rng.normal(0, sd), rng.normal(0, sd))
                    dev_t, dev_r = runs[name]
                    gain = 0.05 + 0.1 * ratio + shifts.get(method, 0.0) + dev_t
                    settings = {"checkpoint": name, "method": method, "model": "tiny", "target_lang": lang,
                                "ratio": ratio, "seed": s}
                    for role, el, value in (("transfer", lang, base[lang] + gain),
                                            ("retention", "en", base["en"] - 0.02 * ratio + dev_r)):
                        rows.append({**settings, "comparison": results.EVALUATION, "reference": "base",
                                     "task": "xnli", "format": "instruct", "role": role, "lang": el,
                                     "metric": "accuracy", "value": value, "n": 500})
                    for layer in range(N_LAYERS):
                        shift = rng.uniform(0.0, 0.2)
                        if layer == planted_layer:
                            shift = 2.0 * gain + rng.normal(0, 0.002)
                        rows.append({**settings, "comparison": results.SHIFT, "reference": "base", "layer": layer,
                                     "lang": lang, "metric": "cka_linear_debiased", "value": 1.0 - shift})
    return results.frame(rows)
