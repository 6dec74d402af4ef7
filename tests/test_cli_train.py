"""The CLI's contract for bad input: one line on stderr, a non-zero exit, no traceback, nothing written."""

import json

import pytest

from reprtools_cli.main import main


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("REPRTOOLS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def assert_one_line_error(code, err, *needles):
    assert code not in (0, None)
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("reprtools: error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in errors[0], errors[0]


def _jsonl(path, rows):
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


GOOD = [json.dumps({"instruction": f"Say {i}.", "input": "", "output": f"{i}.", "lang": lang})
        for i, lang in enumerate(["en"] * 6 + ["sw"] * 3)]


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--method", "qlora"], ["unknown method 'qlora'", "lora, dora, vera, adalora, pissa"]),
        (["--model", "no-such-model"], ["unknown model 'no-such-model'", "offline"]),
        (["--model", "./missing-dir"], ["model directory not found"]),
        (["--lang", "xx"], ["xx"]),
        (["--lang", "en"], ["other than en"]),
        (["--ratio", "1.5"], ["--ratio must be in [0, 1]"]),
        (["--ratio", "-0.1"], ["--ratio must be in [0, 1]"]),
        (["--rank", "0"], ["--rank must be a positive integer"]),
        (["--rank", "-4"], ["--rank must be a positive integer"]),
        (["--data", "missing.jsonl"], ["missing.jsonl"]),
        (["--data", "tydiqa:/no/such/dir"], ["/no/such/dir"]),
        (["--lang", "te", "--data", "demo:nope"], ["demo"]),
        (["--max-steps", "0"], ["--max-steps must be positive"]),
        (["--match-budget", "most"], ["--match-budget must be a method name"]),  # checked once the model is loaded
        (["--overwrite", "--resume"], ["contradict"]),
        (["--global-batch-size", "6"], ["--global-batch-size 6 is not a multiple of --batch-size 4"]),
        (["--global-batch-size", "8", "--gradient-accumulation", "2"], ["leave out --gradient-accumulation"]),
        (["--target-modules", " , "], ["--target-modules is empty"]),
        (["--target-modules", "q_proj,nope_proj"], ["no module named nope_proj", "q_proj, up_proj, v_proj"]),  # once the model is loaded
        (["--report-to", "mlflow"], ["--report-to", "mlflow"]),
        (["--bogus-flag"], ["bogus-flag"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, args, needles):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", "tiny-llama", "-o", str(out), *args)
    assert_one_line_error(code, err, *needles)
    assert not out.exists()


def test_malformed_jsonl_line_is_named(capsys, tmp_path):
    data = _jsonl(tmp_path / "bad.jsonl", GOOD[:3] + ["{not json"] + GOOD[3:])
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", "tiny-llama", "--data", str(data), "--lang", "sw", "-o", str(out))
    assert_one_line_error(code, err, "line 4")
    assert not out.exists()


def test_target_language_missing_from_data(capsys, tmp_path):
    data = _jsonl(tmp_path / "d.jsonl", GOOD)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", "tiny-llama", "--data", str(data), "--lang", "hi", "-o", str(out))
    assert_one_line_error(code, err, "'hi'", "en, sw")
    assert not out.exists()


def test_too_few_examples_for_the_mix(capsys, tmp_path):
    data = _jsonl(tmp_path / "d.jsonl", GOOD)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", "tiny-llama", "--data", str(data), "--lang", "sw",
                           "--ratio", "0.5", "-n", "100", "-o", str(out))
    assert_one_line_error(code, err, "--num-examples")
    assert not out.exists()


def test_jsonl_run_then_refuses_to_overwrite_a_finished_run(capsys, tmp_path):
    data = _jsonl(tmp_path / "d.jsonl", GOOD)
    out = tmp_path / "run"
    args = ["train", "--model", "tiny-llama", "--data", f"jsonl:{data}", "--lang", "sw", "--ratio", "0.5",
            "-n", "6", "--max-steps", "2", "-q", "-o", str(out)]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "trained lora" in stdout
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["data"]["counts"] == {"en": 3, "sw": 3}
    before = (out / "run.json").read_bytes()

    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, "already holds a finished run", "--overwrite")
    assert (out / "run.json").read_bytes() == before

    code, _, err = run_cli(capsys, *args, "--overwrite", "--seed", "1")
    assert code == 0, err
    assert json.loads((out / "run.json").read_text())["seed"] == 1


def test_unfinished_run_needs_resume_or_overwrite(capsys, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    code, _, err = run_cli(capsys, "train", "--model", "tiny-llama", "-o", str(out))
    assert_one_line_error(code, err, "unfinished run", "--resume")


def test_budget_command_on_llama_config(capsys):
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "examples" / "configs" / "llama-3.1-8b.json"
    code, out, err = run_cli(capsys, "budget", "--model", str(config), "--methods", "lora", "--json")
    assert code == 0, err
    row = json.loads(out)["rows"][0]
    assert row["trainable"] == 20_971_520
    assert round(row["percent"], 2) == 0.26


def test_budget_bad_method(capsys):
    code, _, err = run_cli(capsys, "budget", "--model", "tiny-llama", "--methods", "lora,ia3")
    assert_one_line_error(code, err, "unknown method 'ia3'")


def test_report_to_without_its_package_names_the_pip_install(capsys, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else find_spec(name, *a))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", "tiny-llama", "-o", str(out), "--report-to", "tensorboard")
    assert_one_line_error(code, err, "--report-to tensorboard needs the tensorboard package: pip install tensorboard")
    assert not out.exists()


def test_train_help_shows_a_single_percent_sign(capsys):
    code, out, _ = run_cli(capsys, "train", "--help")
    assert code == 0
    assert "PCT% of the base" in " ".join(out.split()) and "%%" not in out


def test_budget_follows_target_modules(capsys):
    code, out, err = run_cli(capsys, "budget", "--model", "tiny-llama", "--methods", "lora", "--target-modules",
                             "q_proj,v_proj", "--json")
    assert code == 0, err
    report = json.loads(out)
    # tiny-llama: hidden 64, q_proj 64 -> 64, v_proj 64 -> 2 kv heads x 16 = 32; rank 8 x (in + out), 2 blocks
    assert report["rows"][0]["trainable"] == 8 * ((64 + 64) + (64 + 32)) * 2
    assert report["target_modules"] == ["q_proj", "v_proj"]
