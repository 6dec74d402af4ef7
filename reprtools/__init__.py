"""reprtools: train the five PEFT adapters under one controlled multilingual setup, and probe what they change.

The calls a researcher makes by hand, importable from the package itself (loaded on first use, so
``import reprtools`` stays fast)::

    import reprtools as rt
    lm = rt.load_model("tiny-llama")                        # model + tokenizer
    sentences = rt.load_parallel("demo", "en,hi", 24)        # {lang: [sentence, ...]}, row i parallel
    reps = rt.capture_layers(lm.model, lm.tokenizer, sentences["en"])   # (layers, sentences, hidden)
    rt.measures.cka_linear_debiased(reps[1], reps[2])        # any measure on arrays
    df = rt.probe_checkpoints(["runs/x"], langs="en,hi")     # the results frame (reprtools.results)
    scores = rt.evaluate_checkpoints(rt.EvalOptions(["runs/x"], data="xnli:DIR", langs="en,hi")).scores
    w = rt.weight_changes(["runs/x"])                        # weight-update measures, same schema
    fig = rt.layer_heatmap(df, "cka_linear_debiased")        # a paper figure from the frame
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

from reprtools.errors import ReprtoolsError  # noqa: E402

_LAZY = {
    "load_model": ("reprtools.models", "load_model"),
    "load_parallel": ("reprtools.data", "load_parallel"),
    "load_examples": ("reprtools.data", "load_examples"),
    "capture_layers": ("reprtools.capture", "capture"),
    "train_adapter": ("reprtools.train", "train"),
    "TrainOptions": ("reprtools.train", "TrainOptions"),
    "probe_checkpoints": ("reprtools.probe", "probe_checkpoints"),
    "ProbeOptions": ("reprtools.probe", "ProbeOptions"),
    "evaluate_checkpoints": ("reprtools.evaluate", "evaluate"),
    "EvalOptions": ("reprtools.evaluate", "EvalOptions"),
    "weight_changes": ("reprtools.weights", "weights"),
    "read_results": ("reprtools.results", "read_results"),
    "layer_heatmap": ("reprtools.report", "layer_heatmap"),
    "draw_all": ("reprtools.report", "draw_all"),
}
_MODULES = ("measures", "results", "report")
# Functions are exported under names no submodule has: importing ``reprtools.train`` would otherwise replace a
# function ``reprtools.train`` with the module.

__all__ = ["ReprtoolsError", "__version__", *_LAZY, *_MODULES]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
    elif name in _MODULES:
        value = importlib.import_module(f"reprtools.{name}")
    else:
        raise AttributeError(f"module 'reprtools' has no attribute '{name}'")
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
