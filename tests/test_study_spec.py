"""The study file: what it reads (defaults, relative paths), and each refusal before anything runs, one line each."""

import textwrap
from pathlib import Path

import pytest

from reprtools.errors import ReprtoolsError
from reprtools.study.spec import expand_langs, read_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "study"

BASE = """
[study]
name = "t"
models = ["tiny-llama"]
methods = ["lora"]
ratios = [0, 0.5]
seeds = [0]
num_examples = 16

[[tasks]]
name = "demo"
data = "demo"
langs = ["hi"]

[eval]
enabled = false

[probe]
data = "demo"
max_sentences = 8
"""


def _write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _refused(tmp_path, text) -> str:
    with pytest.raises(ReprtoolsError) as info:
        read_spec(_write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message and message.startswith("s.toml")
    return message


def test_reads_defaults_and_resolves_paths_against_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    spec = read_spec(_write(tmp_path / "sub", BASE.replace('name = "t"', 'name = "t"\noutput_dir = "../out"')))
    assert spec.output_dir == (tmp_path / "out").resolve()
    assert spec.ratios == (0.0, 0.5) and spec.seeds == (0,) and spec.methods == ("lora",)
    assert spec.train.rank == 8 and spec.train.max_steps is None  # the defaults of reprtools train
    assert spec.eval.enabled is False and spec.probe.enabled is True
    (tmp_path / "sub" / "m").mkdir()
    models = read_spec(_write(tmp_path / "sub", BASE.replace('"tiny-llama"', '"tiny-llama", "./m", "org/name"')))
    assert models.models == ("tiny-llama", str(tmp_path / "sub" / "m"), "org/name")
    default_out = read_spec(_write(tmp_path, BASE))
    assert default_out.output_dir == (tmp_path / "study-t").resolve()


def test_relative_data_path_is_read_from_the_files_folder(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.jsonl").write_text("".join(
        f'{{"id": "{lang}-{i}", "lang": "{lang}", "instruction": "Say", "input": "{i}", "output": "{i}"}}\n'
        for lang in ("en", "hi") for i in range(20)), encoding="utf-8")
    spec = read_spec(_write(tmp_path, BASE.replace('data = "demo"\nlangs', 'data = "jsonl:data/x.jsonl"\nlangs')))
    assert spec.tasks[0].data == f"jsonl:{data / 'x.jsonl'}"


@pytest.mark.parametrize("old,new,expected", [
    ('seeds = [0]', 'seeds = [0]\nsedes = [1]', "unknown key 'sedes' in [study]"),
    ('[eval]', '[evaluation]', "unknown key 'evaluation'"),
    ('enabled = false', 'enabled = false\nlimt = 3', "unknown key 'limt' in [eval]"),
    ('langs = ["hi"]', 'langs = ["hi"]\nsplit = "dev"', "unknown key 'split' in [[tasks]]"),
    ('max_sentences = 8', 'max_sentences = 8\nlayers = 3', "unknown key 'layers' in [probe]"),
    ('methods = ["lora"]', 'methods = ["lora", "qlora"]', "unknown method 'qlora'"),
    ('ratios = [0, 0.5]', 'ratios = [0, 1.5]', "ratios holds 1.5"),
    ('ratios = [0, 0.5]', 'ratios = [0, 0]', "lists a value twice"),
    ('langs = ["hi"]', 'langs = ["xh"]', "no 'xh' examples in demo"),
    ('langs = ["hi"]', 'langs = ["en"]', "lists 'en' as a target"),
    ('num_examples = 16', 'num_examples = 400', "a mix of 400 at ratio 0.0 needs 0 'hi' and 400 'en'"),
    ('seeds = [0]', 'seeds = ["zero"]', "study.seeds must be an integer"),
    ('num_examples = 16', 'num_examples = 16\n[train]\nrank = 0', "train.rank must be positive"),
    ('num_examples = 16', 'num_examples = 16\n[train]\nglobal_batch_size = 6', "is not a multiple of --batch-size 4"),
    ('num_examples = 16', 'num_examples = 16\n[train]\nalpha = "x"', "train.alpha must be a number"),
    ('[eval]\nenabled = false', '[eval]\nenabled = true', "reprtools eval cannot score task 'demo'"),
    ('[eval]\nenabled = false', '[eval]\nenabled = false\nformat = "chat"', "unknown eval.format 'chat'"),
    ('max_sentences = 8', 'max_sentences = 8\nlangs = ["en", "target", "zz"]', "zz"),
])
def test_each_refusal_is_one_line(tmp_path, old, new, expected):
    assert old in BASE
    assert expected in _refused(tmp_path, BASE.replace(old, new, 1))


def test_missing_pieces_and_bad_toml(tmp_path):
    assert "needs a name" in _refused(tmp_path, BASE.replace('name = "t"\n', ""))
    assert "[[tasks]]" in _refused(tmp_path, BASE.split("[[tasks]]")[0])
    assert "not valid TOML" in str(pytest.raises(ReprtoolsError, read_spec, _write(tmp_path, "[study\n")).value)
    with pytest.raises(ReprtoolsError, match="study file not found"):
        read_spec(tmp_path / "nope.toml")


def test_target_expands_in_eval_and_probe_langs():
    assert expand_langs(("target", "en"), ("sw", "hi")) == ["sw", "hi", "en"]
    assert expand_langs(("en", "target", "en"), ("hi",)) == ["en", "hi"]


def test_shipped_study_files_parse(shared_data):
    for name in ("tiny.toml", "gemma-demo.toml"):
        spec = read_spec(EXAMPLES / name)
        assert spec.tasks and spec.methods


def test_reference_grid_parses_without_reading_data():
    spec = read_spec(EXAMPLES / "which-lora.toml", check_data=False) if _evaluable("tydiqa") else None
    if spec is None:
        pytest.skip("reprtools eval does not score tydiqa yet")
    assert len(spec.methods) == 5 and spec.ratios == (0.0, 0.01, 0.1, 0.5) and len(spec.seeds) == 3


def _evaluable(task: str) -> bool:
    from reprtools.evaluate import TASKS

    return task in TASKS


def test_stats_table(tmp_path):
    assert read_spec(_write(tmp_path, BASE)).stats.margin == 0.02  # issue 11's default: 2 points
    spec = read_spec(_write(tmp_path, BASE + "\n[stats]\nmargin = 0.05\nalpha = 0.1\n"))
    assert (spec.stats.margin, spec.stats.alpha) == (0.05, 0.1)
    for table, words in (("margin = 0", "stats.margin must be positive"),
                         ("margin = -0.01", "stats.margin must be positive"),
                         ("alpha = 0", "stats.alpha must lie between 0 and 0.5"),
                         ("alpha = 0.5", "stats.alpha must lie between 0 and 0.5"),
                         ('alpha = "0.05"', "stats.alpha must be a number"),
                         ("level = 0.9", "unknown key 'level' in [stats]")):
        assert words in _refused(tmp_path, BASE + f"\n[stats]\n{table}\n")


def test_keep_representations(tmp_path):
    assert read_spec(_write(tmp_path, BASE)).probe.keep_representations is False
    for value, kept in (("true", True), ("false", False), ('"float16"', "float16")):
        spec = read_spec(_write(tmp_path, BASE.replace("max_sentences = 8", f"max_sentences = 8\nkeep_representations = {value}")))
        assert spec.probe.keep_representations == kept
    for value in ('"bfloat16"', "1", "0.5"):
        message = _refused(tmp_path, BASE.replace("max_sentences = 8", f"max_sentences = 8\nkeep_representations = {value}"))
        assert "probe.keep_representations must be false (drop them), true (keep float32) or" in message


PER_MODEL = BASE.replace('models = ["tiny-llama"]', 'models = ["tiny-llama", "tiny-qwen"]') + """
[resources]
gpus = 2
time = "08:00:00"

[resources.models."tiny-qwen"]
time = "04:00:00"
mem = "8G"
"""


def test_per_model_resources_override_only_their_keys(tmp_path):
    from reprtools.study.spec import Resources, resources_for

    spec = read_spec(_write(tmp_path, PER_MODEL))
    common = Resources(gpus=2, time="08:00:00")  # the keys [resources] gives over the defaults
    assert spec.resources == common and resources_for(spec, "tiny-llama") == common
    assert resources_for(spec, "tiny-qwen") == Resources(gpus=2, cpus=common.cpus, mem="8G", time="04:00:00")
    assert read_spec(_write(tmp_path, BASE)).model_resources == ()


def test_per_model_resources_of_a_model_given_as_a_path(tmp_path):
    from reprtools.study.spec import resources_for

    (tmp_path / "mymodel").mkdir()
    text = BASE.replace('models = ["tiny-llama"]', 'models = ["tiny-llama", "./mymodel"]') + (
        '[resources.models."./mymodel"]\ngpus = 4\n')
    spec = read_spec(_write(tmp_path, text), check_data=False)
    assert spec.models[1] == str(tmp_path / "mymodel") and resources_for(spec, spec.models[1]).gpus == 4
    assert resources_for(spec, "tiny-llama").gpus == 1


@pytest.mark.parametrize("old, new, expected", [
    ('"tiny-qwen"]\ntime', '"tiny-gemma"]\ntime', "names a model the study does not have; study.models: tiny-llama, "
                                                   "tiny-qwen"),
    ('mem = "8G"', 'memory = "8G"', "unknown key 'memory' in [resources.models.'tiny-qwen']"),
    ('mem = "8G"', 'gpus = "two"', "resources.models.'tiny-qwen'.gpus must be an integer"),
    ('\n\n[resources.models."tiny-qwen"]\ntime = "04:00:00"\nmem = "8G"', '\nmodels = 3',
     "resources.models holds tables"),
    ('gpus = 2', 'gpu = 2', "unknown key 'gpu' in [resources]"),
])
def test_per_model_resources_refusals(tmp_path, old, new, expected):
    assert old in PER_MODEL
    assert expected in _refused(tmp_path, PER_MODEL.replace(old, new, 1))
