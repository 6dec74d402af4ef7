"""The plan: cells, stable training keys from the training settings only, one shared ratio-0 run per
(model, task, method, seed), eval and probe keys of their own, and the dry run's compute estimate."""

import hashlib
import json
import textwrap

import pytest

import reprtools
from reprtools.errors import ReprtoolsError
from reprtools.study.plan import (
    make_plan, parameter_count, parse_shard, settings_key, shard_runs, train_tokens,
)
from reprtools.study.spec import read_spec

SPEC = """
[study]
name = "p"
models = ["tiny-llama"]
methods = ["lora", "dora"]
ratios = [0, 0.1, 0.5]
seeds = [0, 1]
num_examples = 20

[[tasks]]
name = "demo"
data = "demo"
langs = ["hi", "sw"]

[train]
max_steps = 3
save_steps = 50

[eval]
enabled = false

[probe]
data = "demo"
max_sentences = 8
"""


def _plan(tmp_path, old="", new="", name="s.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(SPEC.replace(old, new, 1)), encoding="utf-8")
    return make_plan(read_spec(path))


def _keys(plan):
    return {(r.method, r.ratio, r.seed, r.targets): r.key for r in plan.runs}


def test_cells_and_ratio_zero_sharing(tmp_path):
    plan = _plan(tmp_path)
    assert len(plan.cells) == 2 * 3 * 2 * 2  # methods x ratios x seeds x languages
    # ratio 0: one run per (method, seed) serving both languages; ratio > 0: one run per language
    assert len(plan.runs) == 2 * 2 * (1 + 2 * 2)
    zero = [r for r in plan.runs if r.ratio == 0]
    assert all(r.targets == ("hi", "sw") and [c.lang for c in r.cells] == ["hi", "sw"] for r in zero)
    assert all(len(r.cells) == 1 and r.targets == (r.cells[0].lang,) for r in plan.runs if r.ratio > 0)
    assert {c.run_key for c in plan.cells} == {r.key for r in plan.runs}
    assert all(r.dir == plan.dir / "runs" / r.key for r in plan.runs)
    # the ratio-0 run probes every language it serves
    assert zero[0].probe["options"]["langs"] == ["en", "hi", "sw"]


def test_key_is_the_sha256_of_the_sorted_settings():
    settings = {"b": 1, "a": [0.5, "x"]}
    expected = hashlib.sha256(b'{"a":[0.5,"x"],"b":1}').hexdigest()[:16]
    assert settings_key(settings) == expected == settings_key(dict(reversed(list(settings.items()))))


def test_keys_stable_and_from_training_settings_only(tmp_path, monkeypatch):
    keys = _keys(_plan(tmp_path))
    assert len(set(keys.values())) == len(keys)
    assert _keys(_plan(tmp_path, name="again.toml")) == keys  # another file, same settings
    monkeypatch.setattr(reprtools, "__version__", "99.0")
    assert _keys(_plan(tmp_path)) == keys  # the version is recorded, not keyed
    # bookkeeping, probe and eval settings do not retrain, nor does writing out a default
    assert _keys(_plan(tmp_path, "max_steps = 3", "max_steps = 3\nrank = 8\ngradient_checkpointing = false")) == keys
    assert _keys(_plan(tmp_path, "save_steps = 50", "save_steps = 7")) == keys
    assert _keys(_plan(tmp_path, "max_sentences = 8", "max_sentences = 9")) == keys
    # what is learned does
    changed = _keys(_plan(tmp_path, "max_steps = 3", "max_steps = 4"))
    assert not set(changed.values()) & set(keys.values())
    # a third target language adds its runs and leaves the others' keys alone (ratio 0 included)
    more = _plan(tmp_path, 'langs = ["hi", "sw"]', 'langs = ["hi", "sw", "bn"]')
    assert set(keys.values()) < {r.key for r in more.runs}


def test_eval_and_probe_keys_reuse_the_adapter(tmp_path, shared_data):
    xnli = f'name = "xnli"\ndata = "xnli:{shared_data / "xnli"}"'
    base = SPEC.replace('name = "demo"\ndata = "demo"', xnli).replace("enabled = false", "limit = 4")
    (tmp_path / "a.toml").write_text(base, encoding="utf-8")
    (tmp_path / "b.toml").write_text(base.replace("limit = 4", 'limit = 4\nlangs = ["target", "en", "ur"]'),
                                     encoding="utf-8")
    a, b = (make_plan(read_spec(tmp_path / n)) for n in ("a.toml", "b.toml"))
    assert [r.key for r in a.runs] == [r.key for r in b.runs]  # same adapters
    assert all(x.eval["key"] != y.eval["key"] for x, y in zip(a.runs, b.runs))  # a new eval step each
    assert [r.probe["key"] for r in a.runs] == [r.probe["key"] for r in b.runs]
    assert b.runs[0].eval["options"]["langs"] == ["hi", "sw", "en", "ur"]


def test_job_is_what_the_worker_needs(tmp_path):
    run = _plan(tmp_path).runs[0]
    job = json.loads(json.dumps(run.job()))
    assert job["train"]["lang"] == "hi" and job["train"]["ratio"] == 0.0  # ratio 0: any target, no examples of it
    assert job["eval"] is None and job["probe"]["key"]
    from reprtools.train import TrainOptions

    TrainOptions(output_dir="x", **job["train"]).validate()  # every key is a TrainOptions field


def test_compute_estimate_from_the_model_config(tmp_path):
    from reprtools.models import load_model

    params = parameter_count("tiny-llama")
    assert params == load_model("tiny-llama").model.num_parameters()  # the meta-device count is the real one
    run = _plan(tmp_path).runs[0]
    assert train_tokens(run, None) == 3 * 4 * 256  # max_steps x batch x max_length
    assert parameter_count("no/such-model-offline") is None


def test_train_settings_defaults_are_reprtools_trains():
    """Keys leave defaults out, and the job passes every [train] option: both need the same defaults."""
    from dataclasses import asdict, fields

    from reprtools.study.spec import TrainSettings
    from reprtools.train import TrainOptions

    defaults = {f.name: f.default for f in fields(TrainOptions)}
    assert asdict(TrainSettings()) == {k: defaults[k] for k in asdict(TrainSettings())}


def test_shards_split_the_runs(tmp_path):
    runs = _plan(tmp_path).runs
    parts = [shard_runs(runs, parse_shard(f"{i}/3")) for i in (1, 2, 3)]
    assert sorted(r.key for part in parts for r in part) == sorted(r.key for r in runs)  # each run once
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert shard_runs(runs, parse_shard(None)) == runs
    for bad in ("0/2", "3/2", "1", "a/b", "1/0"):
        with pytest.raises(ReprtoolsError, match="--shard takes I/N"):
            parse_shard(bad)


BASE_SPEC = """
[study]
name = "b"
models = ["tiny-llama", "tiny-gemma"]
methods = ["lora", "dora"]
ratios = [0, 0.5]
seeds = [0, 1]

[[tasks]]
name = "xnli"
data = "xnli:xnli"
langs = ["hi", "sw"]

[eval]
langs = ["target", "en"]
limit = 4

[probe]
enabled = false
"""


def _base_plan(tmp_path, old="", new=""):
    path = tmp_path / "b.toml"
    path.write_text(BASE_SPEC.replace(old, new, 1), encoding="utf-8")
    return make_plan(read_spec(path, check_data=False))


def test_the_base_is_one_step_per_model_and_task(tmp_path):
    plan = _base_plan(tmp_path)
    by_model = {}
    for run in plan.runs:
        by_model.setdefault(run.model, {}).setdefault(run.base["key"], set()).add(run.key)
        # the very options of the run's eval (so the base is scored on its items), keyed without the run
        assert run.base["options"] == run.eval["options"] and run.base["format"] == run.eval["format"] == "instruct"
        assert run.base["options"]["langs"] == [*run.targets, "en"] and run.job()["base"] == run.base
    # per model: one base step for the ratio-0 runs (scored on hi and sw) and one per target of the others,
    # each shared by every method and seed
    assert {m: sorted(len(runs) for runs in k.values()) for m, k in by_model.items()} == \
        {"tiny-llama": [4, 4, 4], "tiny-gemma": [4, 4, 4]}
    assert not set(by_model["tiny-llama"]) & set(by_model["tiny-gemma"])
    keys = set(by_model["tiny-llama"])
    # keyed by what changes the base's scores, not by the runs' methods, ratios or seeds
    assert {r.base["key"] for r in _base_plan(tmp_path, 'methods = ["lora", "dora"]', 'methods = ["lora"]').runs
            if r.model == "tiny-llama"} == keys
    for old, new in (("limit = 4", "limit = 5"), ("limit = 4", "limit = 4\nformat = \"harness\""),
                     ("limit = 4", "limit = 4\nbootstrap = 10"), ('langs = ["target", "en"]', 'langs = ["target"]')):
        assert not {r.base["key"] for r in _base_plan(tmp_path, old, new).runs} & keys
    assert all(r.base is None for r in _base_plan(tmp_path, "[eval]\n", "[eval]\nenabled = false\n").runs)


def test_each_run_gets_its_models_resources_and_no_key_changes(tmp_path):
    two = SPEC.replace('models = ["tiny-llama"]', 'models = ["tiny-llama", "tiny-qwen"]')
    plans = []
    for name, extra in (("a.toml", '[resources]\ngpus = 1\ntime = "02:00:00"\n[resources.models."tiny-qwen"]\n'
                                   'gpus = 2\nmem = "8G"\n'), ("b.toml", "")):
        (tmp_path / name).write_text(textwrap.dedent(two) + extra, encoding="utf-8")
        plans.append(make_plan(read_spec(tmp_path / name)))
    plan = plans[0]
    by_model = {m: {r.resources for r in plan.runs if r.model == m} for m in ("tiny-llama", "tiny-qwen")}
    (llama,), (qwen,) = by_model["tiny-llama"], by_model["tiny-qwen"]
    assert (llama.gpus, llama.mem, llama.time) == (1, "32G", "02:00:00")  # 32G: the default [resources] mem
    assert (qwen.gpus, qwen.mem, qwen.time) == (2, "8G", "02:00:00")
    assert all("resources" not in r.job() for r in plan.runs)  # the worker does not need them
    # resources are not keyed: the same study without them plans the very same runs
    assert [r.key for r in plans[1].runs] == [r.key for r in plan.runs]


def test_dry_run_lists_resources_per_model_only_where_they_differ(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from reprtools.study import plan as plan_module
    from reprtools_cli.study import study

    monkeypatch.setattr(plan_module, "parameter_count", lambda model: None)  # no model configs needed here
    two = textwrap.dedent(SPEC.replace('models = ["tiny-llama"]', 'models = ["tiny-llama", "tiny-qwen"]'))
    (tmp_path / "same.toml").write_text(two + '[resources]\ngpus = 2\n', encoding="utf-8")
    (tmp_path / "diff.toml").write_text(two + '[resources.models."tiny-qwen"]\ngpus = 2\ntime = "01:00:00"\n',
                                        encoding="utf-8")
    same = CliRunner().invoke(study, [str(tmp_path / "same.toml"), "--dry-run"])
    assert same.exit_code == 0, same.output
    assert "resources per run" not in same.output
    diff = CliRunner().invoke(study, [str(tmp_path / "diff.toml"), "--dry-run"])
    assert diff.exit_code == 0, diff.output
    assert "tiny-llama: gpus 1, cpus 4, mem 32G, time 04:00:00" in diff.output  # the defaults
    assert "tiny-qwen: gpus 2, cpus 4, mem 32G, time 01:00:00" in diff.output
