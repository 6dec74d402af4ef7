"""results.csv for a ratio-0 run that serves several target languages: each cell gets its own language's and
English's scores, its language as the transfer role, and the run's probe rows, with the cell's settings; the base
model's rows come once per base step, with their model filled, so the statistics can tell whose base they are."""

import json

from reprtools import results
from reprtools.study.collect import _cell_rows, cell_state, collect
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
    assert sorted(out["lang"]) == ["en", "sw"]  # no hi rows in the sw cell; no base rows (the base step's)
    run = out[out["checkpoint"] == "KEY"].set_index("lang")
    assert run.loc["sw", "role"] == "transfer" and run.loc["en", "role"] == "retention"
    assert (run["target_lang"] == "sw").all() and (run["seed"] == 3).all() and (run["model"] == "tiny-llama").all()
    assert run.loc["sw", "value"] == 0.5  # the number itself is the eval step's
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
    assert cell_state({"train": "done", "eval": "done", "base": "failed", "probe": "done"}) == "failed"


def _write_base(plan, model, value):
    """A finished base step for ``model`` whose base scores ``value`` in every language."""
    from reprtools.study.steps import base_dir

    run = next(r for r in plan.runs if r.model == model)
    where = base_dir(run.dir, run.base["key"])
    (where / "eval").mkdir(parents=True)
    (where / "base.json").write_text(json.dumps({"step": "base", "key": run.base["key"], "status": "done"}))
    rows = [{"checkpoint": "base", "method": "base", "comparison": results.EVALUATION, "task": "xnli",
             "format": "instruct", "lang": lang, "metric": "accuracy", "role": "reference", "value": value, "n": 4}
            for lang in ("hi", "en")]
    results.write_results(results.frame(rows), where / "eval" / "scores.csv")


def test_base_rows_carry_their_model_once_per_base_step(tmp_path):
    from reprtools.stats.scores import base_scores
    from reprtools.study.plan import make_plan
    from reprtools.study.spec import read_spec

    (tmp_path / "s.toml").write_text("""
[study]
name = "two"
models = ["tiny-llama", "tiny-gemma"]
ratios = [0.5]
seeds = [0, 1]
[[tasks]]
name = "xnli"
data = "xnli:xnli"
langs = ["hi"]
[probe]
enabled = false
""", encoding="utf-8")
    plan = make_plan(read_spec(tmp_path / "s.toml", check_data=False))
    _write_base(plan, "tiny-llama", 0.25)
    _write_base(plan, "tiny-gemma", 0.75)
    df = collect(plan)
    base = df[df["checkpoint"] == "base"]
    assert len(base) == 4  # two languages x two models, not repeated per cell (four runs)
    assert set(base["step"]) == {"base"} and (base["run_key"] == "").all() and (base["study_task"] == "xnli").all()
    assert base.groupby("model")["value"].unique().map(list).to_dict() == {"tiny-gemma": [0.75], "tiny-llama": [0.25]}
    assert (base["target_lang"] == "").all() and base["seed"].isna().all()  # the base has no run settings
    attributed = base_scores(df, ["tiny-llama", "tiny-gemma"]).set_index(["model", "eval_lang"])["base_value"]
    assert attributed.to_dict() == {("tiny-gemma", "en"): 0.75, ("tiny-gemma", "hi"): 0.75,
                                    ("tiny-llama", "en"): 0.25, ("tiny-llama", "hi"): 0.25}
