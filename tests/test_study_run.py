"""The tiny study end to end on the local executor (each run a worker subprocess), the base scored once by its own
step, the statistics written at the end, a second run that redoes nothing, a failed step that is recorded while the rest goes on, --retry-failed, and a killed training that resumes
from its Trainer checkpoint."""

import json
import os
import shutil

import numpy as np
import pytest

from reprtools import results
from reprtools.representations import is_cached, load_representations, save_representations
from reprtools.study.plan import make_plan, write_jobs
from reprtools.study.spec import read_spec
from reprtools.study.steps import (
    DONE, FAILED, INTERRUPTED, PENDING, RUNNING, WAITING, halve_representations, read_manifest, run_job, run_lock,
    run_status,
)
from reprtools_cli.main import main
from study_files import TINY_SPEC, write_study


SPEC = TINY_SPEC + 'keep_representations = "float16"\n\n[stats]\nmargin = 0.03\n'


def _study(root, text=SPEC):
    """A study folder with very short XNLI items in en and sw."""
    return write_study(root, text)


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    os.environ["REPRTOOLS_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """The tiny study run as two shards, one after the other; the states after the first shard."""
    path = _study(tmp_path_factory.mktemp("study"))
    main_ok(["study", str(path), "--shard", "2/2"])
    plan = make_plan(read_spec(path))
    after_first = [run_status(r.dir, r.job())["train"] for r in plan.runs]
    main_ok(["study", str(path), "--shard", "1/2"])
    return path, after_first


@pytest.fixture(scope="module")
def finished(sharded):
    return sharded[0]


def test_a_shard_runs_only_its_runs(sharded):
    assert sharded[1] == [PENDING, DONE]


def main_ok(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0


def test_tiny_study_end_to_end(finished):
    plan = make_plan(read_spec(finished))
    assert len(plan.runs) == 2
    for run in plan.runs:
        assert run_status(run.dir, run.job()) == {"train": DONE, "eval": DONE, "base": DONE, "probe": DONE}
        assert (run.dir / "train" / "adapter" / "adapter_config.json").is_file()
        assert not (run.dir / "train" / "checkpoints").exists()  # a finished run keeps no Trainer checkpoints
        probe_dir = run.dir / f"probe-{run.probe['key']}"
        assert (probe_dir / "metrics.csv").is_file()
        kept = sorted((probe_dir / "representations").glob("*/*.safetensors"))  # base and run, en and sw
        assert len(kept) == 4 and all(load_representations(p).dtype == np.float16 for p in kept)
        train = read_manifest(run.dir, "train")
        assert train["key"] == run.key and train["error"] is None and train["wall_time_s"] > 0
        assert train["reprtools_version"]
    # the base is scored once, by the first run whose training was done, on every language; its folder keeps it alone
    assert len({r.base["key"] for r in plan.runs}) == 1
    base = plan.dir / "base" / plan.runs[0].base["key"]
    assert read_manifest(base, "base")["status"] == DONE
    assert read_manifest(base, "base")["scored_with"] in {r.key for r in plan.runs}
    assert sorted(p.name for p in (base / "eval" / "items").iterdir()) == ["base"]
    base_scores = results.read_results(base / "eval" / "scores.csv")
    assert set(base_scores["checkpoint"]) == {"base"} and set(base_scores["lang"]) == {"sw", "en"}
    for run in plan.runs:  # the runs' evals score their adapter only
        own = results.read_results(run.dir / f"eval-{run.eval['key']}" / "scores.csv")
        assert set(own["checkpoint"]) == {"train"}
    df = results.read_results(plan.dir / "results.csv")  # the schema reader accepts it
    import pandas as pd

    full = pd.read_csv(plan.dir / "results.csv", keep_default_na=False)
    assert list(full.columns[:len(results.COLUMNS)]) == list(results.COLUMNS)
    assert set(full["run_key"]) == {r.key for r in plan.runs} | {""}
    assert set(full["step"]) == {"eval", "base", "probe"}
    base_rows = df[df["checkpoint"] == "base"]
    assert len(base_rows) == 2 and set(base_rows["model"]) == {"tiny-llama"}  # once, with its model
    assert (base_rows["value"].to_numpy() == base_scores.set_index("lang").loc[base_rows["lang"], "value"].to_numpy()).all()
    # reprtools stats ran at the end, with the file's [stats] margin
    assert "equivalence margin = 0.03" in (plan.dir / "stats" / "notes.md").read_text(encoding="utf-8")
    runs = df[df["checkpoint"] != "base"]
    assert set(runs["checkpoint"]) == {r.key for r in plan.runs}  # named by run key
    assert set(runs["ratio"]) == {0.0, 0.5} and set(runs["target_lang"]) == {"sw"} and set(runs["seed"]) == {0}
    scores = runs[runs["comparison"] == results.EVALUATION]
    assert set(scores["lang"]) == {"sw", "en"} and (scores["n"] == 4).all()
    assert set(scores.loc[scores["lang"] == "sw", "role"]) == {"transfer"}
    # the accuracy in results.csv is the eval step's own number, copied unchanged
    run = plan.runs[1]
    own = results.read_results(run.dir / f"eval-{run.eval['key']}" / "scores.csv")
    mine = scores[scores["checkpoint"] == run.key].set_index("lang")["value"]
    assert own[own["checkpoint"] == "train"].set_index("lang")["value"].to_dict() == mine.to_dict()


def test_second_run_redoes_nothing_and_collect_rebuilds(finished, capsys):
    plan = make_plan(read_spec(finished))
    stamps = {p: p.stat().st_mtime_ns for d in [*(r.dir for r in plan.runs), plan.dir / "base" / plan.runs[0].base["key"]]
              for p in d.iterdir() if p.suffix in (".json", ".log")}
    before = (plan.dir / "results.csv").read_text(encoding="utf-8")
    main_ok(["study", str(finished)])
    after = {p: p.stat().st_mtime_ns for p in stamps}
    assert after == stamps  # no worker started, no manifest or job rewritten
    (plan.dir / "results.csv").unlink()
    main_ok(["study", str(finished), "--collect"])
    assert (plan.dir / "results.csv").read_text(encoding="utf-8") == before
    capsys.readouterr()
    main_ok(["study", str(finished), "--status"])
    assert "2 done" in capsys.readouterr().out


def test_dry_run_prints_the_plan(finished, capsys):
    main_ok(["study", str(finished), "--dry-run"])
    out = capsys.readouterr().out
    assert "2 cells from 2 training runs" in out and "0 cells to run, 2 done" in out
    assert "nothing left to train" in out  # trained runs add no training compute


def _in_process_plan(root, **edits):
    text = SPEC.replace("[eval]\n", "[eval]\nenabled = false\n").replace("[probe]\n", "[probe]\nenabled = false\n")
    for old, new in edits.items():
        text = text.replace(old, new)
    plan = make_plan(read_spec(_study(root, text)))
    write_jobs(plan)
    return plan


def test_failed_step_is_recorded_and_the_rest_goes_on(tmp_path):
    plan = _in_process_plan(tmp_path)
    broken, fine = plan.runs
    job = json.loads((broken.dir / "job.json").read_text())
    job["train"]["max_length"] = 8  # too short for the prompt: training refuses it
    (broken.dir / "job.json").write_text(json.dumps(job))
    for run in plan.runs:
        run_job(run.dir)
    manifest = read_manifest(broken.dir, "train")
    assert manifest["status"] == FAILED and "max_length 8 is too small" in manifest["error"]
    assert "\n" not in manifest["error"]
    assert run_status(fine.dir, fine.job())["train"] == DONE
    assert run_job(broken.dir)["train"] == FAILED  # skipped, not retried
    assert read_manifest(broken.dir, "train")["started"] == manifest["started"]
    write_jobs(plan)  # the fixed job
    assert run_job(broken.dir, retry_failed=True)["train"] == DONE


def test_eval_waits_for_its_training(tmp_path):
    plan = _in_process_plan(tmp_path)
    job = dict(plan.runs[0].job(), eval={"key": "e", "options": {}, "format": "instruct"})
    assert run_status(plan.runs[0].dir, job)["eval"] == WAITING


def test_killed_training_resumes_from_its_checkpoint(tmp_path):
    from reprtools.train import TrainOptions, train

    plan = _in_process_plan(tmp_path, **{"max_steps = 2": "max_steps = 2\nsave_steps = 1"})
    run = plan.runs[0]
    out = run.dir / "train"
    # a run killed after its first step: a Trainer checkpoint, no adapter, no run.json, a manifest left running
    train(TrainOptions(output_dir=str(out), progress=False, **run.train))
    shutil.rmtree(out / "checkpoints" / "checkpoint-2")
    shutil.rmtree(out / "adapter")
    (out / "run.json").unlink()
    (run.dir / "train.json").write_text(json.dumps({"step": "train", "key": run.key, "status": RUNNING}))
    assert run_status(run.dir, run.job())["train"] == INTERRUPTED  # no worker holds the run
    assert run_job(run.dir)["train"] == DONE
    assert read_manifest(run.dir, "train")["resumed"] is True
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["training"]["resumed_from"].endswith("checkpoint-1")
    assert not (out / "checkpoints").exists()


def test_a_signalled_training_checkpoints_and_the_next_attempt_resumes(tmp_path, monkeypatch):
    """SIGTERM during training (a Slurm time limit): the worker writes a checkpoint at that step and exits 75, the
    step is left interrupted, not failed; the next worker resumes from that checkpoint."""
    import signal

    from reprtools.study import worker
    from reprtools.trainer import STOPPED_EXIT_CODE, CheckpointOnSignal

    plan = _in_process_plan(tmp_path, **{"max_steps = 2": "max_steps = 4\nsave_steps = 1000"})
    run = plan.runs[0]
    original = CheckpointOnSignal.on_step_end

    def signalled_at_step_2(self, args, state, control, **kwargs):  # the signal arrives during step 2
        if state.global_step == 2 and self.received is None:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, args, state, control, **kwargs)

    monkeypatch.setattr(CheckpointOnSignal, "on_step_end", signalled_at_step_2)
    assert worker.main([str(run.dir)]) == STOPPED_EXIT_CODE
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is gone with the training
    assert run_status(run.dir, run.job())["train"] == INTERRUPTED
    assert [p.name for p in (run.dir / "train" / "checkpoints").iterdir()] == ["checkpoint-2"]
    monkeypatch.setattr(CheckpointOnSignal, "on_step_end", original)
    assert worker.main([str(run.dir)]) == 0
    assert read_manifest(run.dir, "train")["resumed"] is True
    manifest = json.loads((run.dir / "train" / "run.json").read_text())
    assert manifest["training"]["resumed_from"].endswith("checkpoint-2") and manifest["training"]["steps_done"] == 4


def test_a_run_is_worked_on_by_one_worker_at_a_time(tmp_path):
    run = _in_process_plan(tmp_path).runs[0]
    with run_lock(run.dir) as held:
        assert held
        with run_lock(run.dir) as again:
            assert not again
        (run.dir / "train.json").write_text(json.dumps({"step": "train", "key": run.key, "status": RUNNING}))
        assert run_job(run.dir)["train"] == RUNNING  # another worker has it: nothing done here
        assert not (run.dir / "train").exists()
    (run.dir / "train.json").unlink()
    assert run_status(run.dir, run.job())["train"] == PENDING


def test_a_finished_training_keeps_only_its_adapter(tmp_path):
    plan = _in_process_plan(tmp_path, **{'methods = ["lora"]': 'methods = ["pissa"]',
                                         "max_steps = 2": "max_steps = 2\nsave_steps = 1"})
    run = plan.runs[0]
    assert run_job(run.dir)["train"] == DONE
    assert sorted(p.name for p in (run.dir / "train").iterdir()) == ["adapter", "run.json"]


def test_representations_kept_in_float16(tmp_path):
    rng = np.random.default_rng(0)
    layers = rng.normal(scale=3.0, size=(3, 5, 7)).astype(np.float32)
    path = tmp_path / "representations" / "base" / "en.safetensors"
    save_representations(path, layers, "KEY")
    assert halve_representations(tmp_path / "representations") == 1
    back = load_representations(path)
    assert back.dtype == np.float16 and back.shape == layers.shape
    assert np.array_equal(back, layers.astype(np.float16))  # IEEE round to nearest, as numpy does
    assert not is_cached(path, "KEY")  # a later probe captures again rather than reuse halved vectors
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        assert f.metadata() == {"reprtools_key_float32": "KEY", "layers": "3", "stored_dtype": "float16"}
    assert halve_representations(tmp_path / "representations") == 0  # already halved: left alone


def test_stats_at_the_end_only_with_scores_and_a_failure_is_one_line(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import reprtools.stats.run
    from reprtools.study import study_stats
    from reprtools.study.spec import StatsSettings

    plan = SimpleNamespace(dir=tmp_path, spec=SimpleNamespace(stats=StatsSettings(margin=0.04, alpha=0.1)))
    called, said = [], []
    done = reprtools.stats.run.StatsResult(out_dir=tmp_path / "stats", verdicts={"equivalent": 2})
    monkeypatch.setattr(reprtools.stats.run, "run_stats", lambda *a, **k: called.append((a, k)) or done)
    assert study_stats(plan, said.append) is None and not called  # no results.csv yet
    results.write_results(results.frame([{"checkpoint": "K", "comparison": results.SHIFT, "value": 0.5}]),
                          tmp_path / "results.csv")
    assert study_stats(plan, said.append) is None and not called  # probe rows only: nothing to test
    results.write_results(results.frame([{"checkpoint": "K", "comparison": results.EVALUATION, "value": 0.5}]),
                          tmp_path / "results.csv")
    assert study_stats(plan, said.append) is done and said == [f"stats in {tmp_path / 'stats'} (verdicts: 2 equivalent)"]
    assert called == [((tmp_path,), {"margin": 0.04, "alpha": 0.1})]

    def boom(*a, **k):
        raise ValueError("no variance\nat all")

    monkeypatch.setattr(reprtools.stats.run, "run_stats", boom)
    said.clear()
    assert study_stats(plan, said.append) is None
    assert len(said) == 1 and said[0].startswith("stats failed (ValueError: no variance)") and "\n" not in said[0]


def test_the_shared_base_step_is_left_to_the_worker_that_holds_it(tmp_path):
    from reprtools.study import worker
    from reprtools.study.steps import OFF, base_dir

    run = _in_process_plan(tmp_path).runs[0]
    job = dict(run.job(), base={"key": "B", "options": {}, "format": "instruct"})
    (run.dir / "job.json").write_text(json.dumps(job))
    (run.dir / "train.json").write_text(json.dumps({"step": "train", "key": run.key, "status": DONE}))
    where = base_dir(run.dir, "B")
    assert where == plan_dir(run) / "base" / "B"
    assert run_status(run.dir, job)["base"] == PENDING
    with run_lock(where) as held:  # another run's worker is scoring the base
        assert held
        (where / "base.json").write_text(json.dumps({"step": "base", "key": "B", "status": RUNNING}))
        assert run_job(run.dir) == {"train": DONE, "eval": OFF, "base": RUNNING, "probe": OFF}
        assert worker.main([str(run.dir)]) == 0  # this run's own steps are done
    assert read_manifest(where, "base")["status"] == RUNNING  # untouched here
    assert run_status(run.dir, job)["base"] == INTERRUPTED  # its worker died: the next one takes it up


def plan_dir(run):
    return run.dir.parent.parent
