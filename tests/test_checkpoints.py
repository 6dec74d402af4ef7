"""Which checkpoints differ only in seed: read from run.json, robust to the options a newer reprtools adds."""

import json

import pytest

from reprtools.checkpoints import cross_seed_pairs, is_seed_pair, read_checkpoints, seed_groups
from reprtools.errors import ReprtoolsError


def _run(root, name, method="lora", seed=0, training=None, **options):
    run = root / name
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "use_dora": method == "dora", "base_model_name_or_path": "/models/base"}))
    opts = {"output_dir": str(run), "method": method, "model": "tiny-llama", "lang": "hi", "ratio": 0.1,
            "seed": seed, "rank": 8, "progress": False, **options}
    (run / "run.json").write_text(json.dumps({
        "method": method, "seed": seed, "options": opts,
        "training": training or {"batch_size": 4, "gradient_accumulation": 1, "world_size": 1}}))
    return run


def test_runs_that_differ_only_in_seed_form_a_group_across_versions(tmp_path):
    # an older run.json lacks options added later (at their default) and has gradient_accumulation=1 where a
    # newer one writes None; both trained the same thing
    old = _run(tmp_path, "lora-s0", seed=0, gradient_accumulation=1)
    new = _run(tmp_path, "lora-s1", seed=1, gradient_accumulation=None, target_modules="all-linear",
               report_to="none", training={"per_device_batch_size": 4, "gradient_accumulation": 1, "world_size": 1})
    a, b = read_checkpoints([old, new])
    assert is_seed_pair(a, b)
    assert {m: [c.name for c in v] for m, v in seed_groups([a, b]).items()} == {"lora": ["lora-s0", "lora-s1"]}


@pytest.mark.parametrize("change", [
    {"ratio": 0.5}, {"lang": "bn"}, {"rank": 16}, {"target_modules": "q_proj,v_proj"}, {"learning_rate": 1e-3},
])
def test_a_difference_in_what_is_learned_breaks_the_group(tmp_path, change):
    a, b = read_checkpoints([_run(tmp_path, "a", seed=0), _run(tmp_path, "b", seed=1, **change)])
    assert not is_seed_pair(a, b) and seed_groups([a, b]) == {}


def test_the_same_global_batch_by_other_means_is_the_same_setting(tmp_path):
    one = _run(tmp_path, "one", seed=0, training={"batch_size": 8, "gradient_accumulation": 1, "world_size": 1})
    two = _run(tmp_path, "two", seed=1, training={"per_device_batch_size": 2, "gradient_accumulation": 2,
                                                  "world_size": 2})
    other = _run(tmp_path, "three", seed=2, training={"batch_size": 4, "gradient_accumulation": 1, "world_size": 1})
    a, b, c = read_checkpoints([one, two, other])
    assert is_seed_pair(a, b) and not is_seed_pair(a, c)


def test_same_seed_runs_and_bare_adapters_are_never_seed_pairs(tmp_path):
    a, b = read_checkpoints([_run(tmp_path, "a", seed=3), _run(tmp_path, "b", seed=3)])
    assert not is_seed_pair(a, b)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "/models/base"}))
    (ck,) = read_checkpoints([bare])
    assert ck.seed is None and ck.seed_group() is None and ck.run_columns()["seed"] is None


def test_cross_seed_pairs_leave_out_equal_seeds(tmp_path):
    lora = read_checkpoints([_run(tmp_path, f"l{s}", seed=s) for s in (0, 1)])
    dora = read_checkpoints([_run(tmp_path, f"d{s}", method="dora", seed=s) for s in (0, 1)])
    assert {(x.name, y.name) for x, y in cross_seed_pairs(lora, dora)} == {("l0", "d1"), ("l1", "d0")}


def test_a_broken_run_json_is_a_one_line_error(tmp_path):
    run = _run(tmp_path, "x")
    (run / "run.json").write_text("{not json")
    with pytest.raises(ReprtoolsError, match="not valid JSON"):
        read_checkpoints([run])
