"""results.csv for a ratio-0 run that serves several target languages: each cell gets its own language's and
English's scores, its language as the transfer role, and the run's probe rows, with the cell's settings."""

from reprtools import results
from reprtools.study.collect import _cell_rows, cell_state
from reprtools.study.plan import Cell


def _eval_frame():
    rows = []
    for name in ("base", "KEY"):
        for lang in ("hi", "sw", "en"):
            rows.append({"checkpoint": name, "method": "base" if name == "base" else "lora",
                         "comparison": results.EVALUATION, "task": "xnli", "lang": lang, "metric": "accuracy",
                         "role": "reference" if name == "base" else ("retention" if lang == "en" else "transfer"),
                         "value": {"hi": 0.4, "sw": 0.5, "en": 0.6}[lang], "n": 4,
                         "target_lang": "" if name == "base" else "hi", "ratio": None if name == "base" else 0.0})
    return results.frame(rows)


def test_ratio_zero_run_is_split_into_its_cells():
    df = _eval_frame()
    df.loc[(df["checkpoint"] == "KEY") & (df["lang"] == "sw"), "role"] = "other"  # as eval labels a non-target
    cell = Cell("tiny-llama", "xnli", "lora", "sw", 0.0, 3, "KEY")
    out = _cell_rows(cell, "eval", df)
    assert sorted(out["lang"]) == ["en", "en", "sw", "sw"]  # no hi rows in the sw cell
    run = out[out["checkpoint"] == "KEY"].set_index("lang")
    assert run.loc["sw", "role"] == "transfer" and run.loc["en", "role"] == "retention"
    assert (run["target_lang"] == "sw").all() and (run["seed"] == 3).all() and (run["model"] == "tiny-llama").all()
    assert run.loc["sw", "value"] == 0.5  # the number itself is the eval step's
    base = out[out["checkpoint"] == "base"]
    assert (base["target_lang"] == "").all() and base["seed"].isna().all()  # the base has no run settings
    assert (out["study_task"] == "xnli").all()


def test_probe_rows_are_kept_whole():
    df = results.frame([{"checkpoint": "KEY", "comparison": results.SHIFT, "reference": "base", "lang": lang,
                         "layer": 1, "metric": "cka_linear", "value": 0.9} for lang in ("en", "hi", "sw")])
    out = _cell_rows(Cell("m", "xnli", "lora", "hi", 0.0, 0, "KEY"), "probe", df)
    assert list(out["lang"]) == ["en", "hi", "sw"] and (out["target_lang"] == "hi").all()


def test_cell_state():
    assert cell_state({"train": "done", "eval": "done", "probe": "off"}) == "done"
    assert cell_state({"train": "done", "eval": "failed", "probe": "interrupted"}) == "failed"
    assert cell_state({"train": "interrupted", "eval": "waiting", "probe": "waiting"}) == "interrupted"
    assert cell_state({"train": "pending", "eval": "waiting", "probe": "off"}) == "pending"
