"""One-command check of reprtools on a GPU machine: does it train, capture and probe there, how fast, how much memory.

    PYTHONPATH=. python benchmarks/gpu_check.py [--out gpu_check.json] [--layers 2] [--steps 20]
    python benchmarks/gpu_check.py --cpu-smoke          # what a machine without a GPU can check (~1 min)

Runs from the source tree with no network, no GGUF model and no installed CLI: every model is built from a config
with random weights.  Stages (each is wrapped: a failing stage is reported with its error and the others still
run; the exit code is 1 at the end if any failed):

* ``environment``          versions, the GPU, bf16 support, whether ``langcodes`` is importable.
* ``train-tiny-<method>``  each of the five methods (lora, dora, vera, adalora, pissa) trains ``--steps`` steps on
                           ``tiny-llama`` through ``reprtools.train.train`` (bf16 mixed precision on a GPU that
                           supports it; the manifest must say so); every logged loss must be finite.  Reports
                           tokens/s and peak GPU memory.
* ``build-8b-shaped``      a Llama model with the config of ``examples/configs/llama-3.1-8b.json`` (hidden 4096,
                           MLP 14336, 32 heads / 8 KV heads, vocabulary 128256) but only ``--layers`` blocks,
                           random bf16 weights, with the tiny byte-level tokenizer: realistic per-layer speed and
                           memory without the 16 GB checkpoint.
* ``capture-tiny`` / ``capture-8b-shaped``  pooled vectors (:func:`reprtools.capture.capture`, mean pool) of the
                           same sentences on the GPU compared with a CPU float32 capture, per vector (one layer,
                           one sentence): relative error ``||v - ref|| / ||ref||`` and cosine.  Tolerances:
                           fp32 GPU vs fp32 CPU: max relative error <= 1e-4 (only summation order differs);
                           bf16 GPU vs fp32 CPU: every cosine >= 0.99 and median relative error <= 0.03 (bf16 keeps
                           8 significant bits, a relative rounding of 2^-9 per operation).  Also padding
                           invariance (batch 1 vs batch 16, fp32, tiny model: max relative error <= 1e-4) and the
                           time of a capture against a plain forward pass over the same batches.
* ``train-8b-shaped-lora`` LoRA on the 8B-shaped model, ``--steps`` steps: tokens/s and peak GPU memory.
* ``probe-tiny``           ``reprtools.probe`` on the tiny LoRA run (en, hi; demo data) on the GPU: the results frame
                           must be non-empty with finite values where defined.
* ``eval-tiny``            ``reprtools.evaluate`` on the tiny LoRA run: XNLI-shaped items in both formats and
                           TyDiQA-shaped items (generation), batch size auto on the GPU; items/s.
* ``weights-tiny``         ``reprtools.weights`` on the tiny LoRA and DoRA runs on the GPU, against the same on the
                           CPU (float64 there): every number within 1e-3 relative, intruder counts equal.
* ``weights-8b-shaped``    ``reprtools.weights`` on the 8B-shaped LoRA run (``--layers`` blocks x 7 modules, no
                           cache): seconds per block, and the whole 32-block model extrapolated from it.
* ``study-tiny``           ``reprtools.study.run_study`` with the local executor on a tiny grid (LoRA and DoRA at
                           0% and 50% Swahili, ``[resources] gpus = 1``): every run done, on CUDA (run.json), each
                           worker given one GPU through ``CUDA_VISIBLE_DEVICES`` (worker.log), runs at once on a
                           machine with several GPUs, ``results.csv`` with rows for every run.  GPU only (the CPU
                           path is in tests/test_study_*.py).

Without a GPU (or with ``--cpu-smoke``) it says so in one line and checks what a CPU can: every method trains 2
steps in float32, the tiny capture (padding invariance; CPU bf16 against fp32), the probe; the 8B-shaped stages
are skipped.  The summary table and the total wall time are printed; ``--out`` writes everything as JSON.

``reprtools.languages`` imports ``langcodes`` (the training and probe stages need it).  If the GPU machine's Python
lacks it, install it beside the checkout before sending it (``pip install --target .gpu_vendor langcodes``: 1.3 MB,
no dependencies); this script puts ``.gpu_vendor`` on the path when present.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ("lora", "dora", "vera", "adalora", "pissa")
STAGE_GROUPS = ("environment", "train", "big", "capture", "probe", "eval", "weights", "study")
FP32_MAX_REL = 1e-4
BF16_MIN_COS = 0.99
BF16_MEDIAN_REL = 0.03
CPU_SMOKE_LINE = ("gpu_check: no CUDA GPU here ({why}); running the CPU smoke checks only "
                  "(fp32, 2 steps, no 8B-shaped model)")


def _setup_environment(cpu_smoke: bool) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if cpu_smoke:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported: the Trainer then stays on the CPU too
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    vendor = REPO / ".gpu_vendor"
    if vendor.is_dir():
        sys.path.append(str(vendor))  # after site-packages: an installed langcodes wins


# ------------------------------------------------------------------------------------------------- stages
class Stages:
    """Runs named stages, each isolated: an exception is recorded (one line in the table, the traceback on stderr)
    and the next stage runs.  A stage returns a dict of measurements; ``Skip`` marks it skipped."""

    def __init__(self) -> None:
        self.results: list[dict] = []

    def run(self, name: str, fn, *args) -> dict | None:
        print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        row = {"stage": name}
        try:
            row.update(status="ok", **(fn(*args) or {}))
        except Skip as skip:
            row.update(status="skipped", note=str(skip))
        except Exception as exc:  # noqa: BLE001 - any failure of one stage must not stop the others
            traceback.print_exc()
            row.update(status="failed", error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        row["seconds"] = round(time.perf_counter() - started, 2)
        self.results.append(row)
        _free_memory()
        return row

    def ok(self, name: str) -> bool:
        return any(r["stage"] == name and r["status"] == "ok" for r in self.results)

    @property
    def failed(self) -> list[str]:
        return [r["stage"] for r in self.results if r["status"] == "failed"]


class Skip(Exception):
    """Raised by a stage that cannot run here (no GPU, an earlier stage failed)."""


class CheckFailed(AssertionError):
    """A measurement outside its stated bound."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if torch.cuda.is_available() else None


# ----------------------------------------------------------------------------------------------- environment
def environment() -> dict:
    import peft
    import torch
    import transformers

    info = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "cuda": torch.cuda.is_available()}
    try:
        import langcodes  # noqa: F401  (reprtools.languages needs it: training and probe stages)

        info["langcodes"] = True
    except ImportError:
        info["langcodes"] = False
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    bf16=torch.cuda.is_bf16_supported(), tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    return info


# ----------------------------------------------------------------------------------------------------- training
def _need_langcodes() -> None:
    try:
        import langcodes  # noqa: F401
    except ImportError:
        raise CheckFailed("langcodes is not installed (reprtools.languages imports it); before sending the checkout "
                          "run `pip install --target .gpu_vendor langcodes` in it") from None


def train_stage(model: str, method: str, steps: int, out_dir: Path) -> dict:
    """Train ``method`` on ``model`` for ``steps`` steps with the public API; check the losses and the precision."""
    import math

    import torch

    _need_langcodes()
    from reprtools.train import TrainOptions, train

    _reset_peak()
    manifest = train(TrainOptions(output_dir=str(out_dir), model=model, method=method, max_steps=steps,
                                  batch_size=4, num_examples=max(8, 4 * steps), progress=False,
                                  save_steps=10**9, logging_steps=1, overwrite=True)).manifest
    losses = [row["loss"] for row in manifest["loss_curve"]]
    bf16 = bool(manifest["training"]["bf16"])
    done = manifest["training"]["steps_done"]
    _require(done == steps, f"trained {done} of {steps} steps")
    _require(bool(losses) and all(math.isfinite(x) for x in losses), f"non-finite loss in {losses}")
    want_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    _require(bf16 == want_bf16, f"bf16 is {bf16}, expected {want_bf16} on this machine")
    return {"steps": steps, "bf16": bf16, "tokens": manifest["tokens_seen"],
            "wall_s": round(manifest["wall_time_s"], 3),
            "tokens_per_s": round(manifest["tokens_seen"] / manifest["wall_time_s"], 1),
            "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4), "peak_gpu_gib": _peak_gib()}


def build_8b_shaped(layers: int, out_dir: Path, device: str = "cuda") -> dict:
    """The Llama 3.1 8B config with ``layers`` blocks and random bf16 weights, built on the GPU, saved with the
    tiny byte-level tokenizer (ids fit the 128256-entry vocabulary; the config's special ids are set to it)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from reprtools.models import load_tokenizer, resolve_model

    if device == "cuda" and not torch.cuda.is_available():
        raise Skip("needs a GPU")
    raw = json.loads((REPO / "examples" / "configs" / "llama-3.1-8b.json").read_text())
    tokenizer = load_tokenizer(str(resolve_model("tiny-llama").path))
    raw.update(num_hidden_layers=layers, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    config = LlamaConfig(**{k: v for k, v in raw.items() if k not in ("architectures", "torch_dtype", "model_type")})
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    with torch.device(device):  # random initialisation on the GPU: seconds, where the CPU takes minutes
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    params = model.num_parameters()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    del model
    return {"layers": layers, "hidden": config.hidden_size, "params_m": round(params / 1e6, 1), "path": str(out_dir)}


# ------------------------------------------------------------------------------------------------------- capture
def sentences(n: int, max_words: int, seed: int = 0) -> list[str]:
    """Deterministic synthetic sentences in three scripts (Latin, Devanagari, Bengali), 4 to ``max_words`` words."""
    words = ("the a river of small city and people walk to every morning market with old friends under rain "
             "हम आज घर में एक बड़ा सुंदर पेड़ देखते हैं और पानी नदी किताब "
             "আমি তুমি আজ বাড়ি নদী বই জল সকাল বন্ধু গান").split()
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, max_words))) + "." for _ in range(n)]


def vector_errors(got, ref) -> dict:
    """Per pooled vector (one layer, one sentence): relative error ||got - ref|| / ||ref|| and cosine, summarised."""
    import torch

    got, ref = got.double().flatten(0, 1), ref.double().flatten(0, 1)
    rel = (got - ref).norm(dim=1) / ref.norm(dim=1).clamp_min(1e-30)
    cos = torch.nn.functional.cosine_similarity(got, ref, dim=1)
    return {"max_rel": float(rel.max()), "median_rel": float(rel.median()), "min_cos": float(cos.min()),
            "finite": bool(torch.isfinite(got).all())}


def _check_fp32(name: str, err: dict) -> None:
    _require(err["finite"] and err["max_rel"] <= FP32_MAX_REL,
             f"{name}: max relative error {err['max_rel']:.2e} > {FP32_MAX_REL:.0e}")


def _check_bf16(name: str, err: dict) -> None:
    _require(err["finite"] and err["min_cos"] >= BF16_MIN_COS and err["median_rel"] <= BF16_MEDIAN_REL,
             f"{name}: min cosine {err['min_cos']:.4f} (>= {BF16_MIN_COS}) / median relative error "
             f"{err['median_rel']:.3f} (<= {BF16_MEDIAN_REL})")


def time_capture_vs_plain(model, tokenizer, texts: list[str], batch_size: int = 16, repeats: int = 3) -> dict:
    """Best-of-``repeats`` seconds of :func:`capture` and of a plain forward pass (no hooks, last-token logits
    only, ``use_cache=False``) over the same length-sorted batches, tokenisation included in both."""
    import torch

    from reprtools.capture import capture

    dev = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(tokenizer(texts[i])["input_ids"]))
    batches = [[texts[i] for i in order[k:k + batch_size]] for k in range(0, len(texts), batch_size)]

    def plain() -> None:
        with torch.inference_mode():
            for batch in batches:
                enc = tokenizer(batch, padding=True, truncation=True, max_length=256, return_tensors="pt").to(dev)
                model(**enc, use_cache=False, logits_to_keep=1)

    def captured() -> None:
        capture(model, tokenizer, texts, batch_size=batch_size)

    best = {}
    for _ in range(repeats):
        for name, fn in (("plain_s", plain), ("capture_s", captured)):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    best = {k: round(v, 4) for k, v in best.items()}
    return {**best, "capture_over_plain": round(best["capture_s"] / best["plain_s"], 3)}


def capture_stage(model: str, texts: list[str], padding_check: bool) -> dict:
    """CPU fp32 reference, then on the GPU fp32 (tight) and bf16 (loose); on a CPU-only machine CPU bf16 (loose).
    Times capture against a plain forward in the precision the probe would use."""
    import torch
    from transformers import AutoModelForCausalLM

    from reprtools.capture import capture
    from reprtools.models import load_tokenizer, resolve_model

    model_dir = str(resolve_model(model).path)  # a built-in name or a directory
    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ref = capture(model, tokenizer, texts, batch_size=16, device="cpu")
    out: dict = {"sentences": len(texts), "shape": list(ref.shape)}
    if padding_check:
        out["cpu_fp32_batch1"] = err = vector_errors(capture(model, tokenizer, texts, batch_size=1), ref)
        _check_fp32("fp32 batch 1 vs batch 16 (padding)", err)
    if torch.cuda.is_available():
        _reset_peak()
        out["cuda_fp32"] = err = vector_errors(capture(model, tokenizer, texts, device="cuda"), ref)
        _check_fp32("CUDA fp32 vs CPU fp32", err)
        model.to(torch.bfloat16)
        out["cuda_bf16"] = err = vector_errors(capture(model, tokenizer, texts), ref)
        _check_bf16("CUDA bf16 vs CPU fp32", err)
    else:
        model.to(torch.bfloat16)
        out["cpu_bf16"] = err = vector_errors(capture(model, tokenizer, texts), ref)
        _check_bf16("CPU bf16 vs CPU fp32", err)
    out["timing_dtype"] = "bfloat16"
    out.update(time_capture_vs_plain(model, tokenizer, texts))
    out["peak_gpu_gib"] = _peak_gib()
    del model
    return out


# --------------------------------------------------------------------------------------------------------- probe
def probe_stage(run_dir: Path, max_sentences: int) -> dict:
    import numpy as np

    from reprtools.probe import probe_checkpoints

    _need_langcodes()
    frame = probe_checkpoints([str(run_dir)], langs="en,hi", max_sentences=max_sentences, figures=False,
                              output_dir=str(run_dir.parent / "probe"))
    values = frame.select_dtypes("number").astype("float64").to_numpy().ravel()  # NaN: no interval there
    _require(len(frame) > 0, "the probe's results frame is empty")
    _require(not np.isinf(values).any(), "infinite values in the results frame")
    defined = int(np.isfinite(values).sum())
    _require(defined > 0, "every value in the results frame is NaN")
    return {"rows": len(frame), "defined_values": defined, "sentences_per_lang": max_sentences}


# ---------------------------------------------------------------------------------------------------------- eval
def eval_stage(run_dir: Path, items: int) -> dict:
    """``reprtools.evaluate`` on the tiny LoRA run: XNLI-shaped items (log-likelihood, instruct and harness) and
    TyDiQA-shaped items (greedy generation), batch size ``auto`` on a GPU; scores must lie in [0, 1]."""
    import json

    from reprtools.evaluate import EvalOptions, evaluate

    data = run_dir.parent / "eval-data"
    (data / "xnli").mkdir(parents=True, exist_ok=True)
    (data / "tydiqa").mkdir(parents=True, exist_ok=True)
    labels = ("entailment", "neutral", "contradiction")
    rows = [f"A cat {i} sat.\tA cat {i} is here.\t{labels[i % 3]}\n" for i in range(items * 5)]
    (data / "xnli" / "dev-en.tsv").write_text("".join(rows), encoding="utf-8")
    paras = [{"context": f"town {i} .", "qas": [{"id": f"english-{i}", "question": f"where {i}?",
                                                "answers": [{"text": f"town {i}", "answer_start": 0}]}]}
             for i in range(items * 5)]
    (data / "tydiqa" / "english_tydiqa_dev.json").write_text(json.dumps({"data": [{"title": "t", "paragraphs": paras}]}))
    out, started = {}, time.perf_counter()
    for task, fmt in (("xnli", "instruct"), ("xnli", "harness"), ("tydiqa", "instruct")):
        res = evaluate(EvalOptions(checkpoints=[str(run_dir)], task=task, format=fmt, data=str(data / task),
                                   langs="en", output_dir=str(run_dir.parent / f"eval-{task}-{fmt}"), bootstrap=100,
                                   progress=False))
        _require(res.scores["value"].between(0, 1).all(), f"{task}/{fmt}: a score outside [0, 1]")
        out[f"{task}_{fmt}_rows"] = len(res.scores)
    out["items_per_s"] = round(3 * 2 * items / (time.perf_counter() - started), 1)  # 3 runs x (base + run)
    return out


# ------------------------------------------------------------------------------------------------------- weights
def weights_tiny_stage(work: Path, gpu: bool) -> dict:
    """Each tiny run's weight measures on the GPU against the CPU's (float64 there; float32 on the GPU)."""
    import numpy as np

    from reprtools.weights import weights

    runs = [work / f"tiny-{m}" for m in ("lora", "dora") if (work / f"tiny-{m}" / "run.json").exists()]
    if not runs:
        raise Skip("needs the train-tiny-lora or train-tiny-dora run")
    started = time.perf_counter()
    here = weights(runs, work / "weights-here", device="auto", figures=False, cache=False)
    seconds = time.perf_counter() - started
    out = {"checkpoints": len(runs), "rows": len(here), "seconds_measuring": round(seconds, 2)}
    if gpu:
        cpu = weights(runs, work / "weights-cpu", device="cpu", figures=False, cache=False)
        key = ["checkpoint", "reference", "layer", "module", "metric"]
        both = here.merge(cpu, on=key, suffixes=("_gpu", "_cpu"))
        _require(len(both) == len(cpu), f"{len(both)} of {len(cpu)} rows matched between GPU and CPU")
        a, b = both["value_gpu"].to_numpy(float), both["value_cpu"].to_numpy(float)
        rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-12)
        intr = both["metric"] == "intruder_dimensions"
        _require(bool((a[intr.to_numpy()] == b[intr.to_numpy()]).all()), "intruder counts differ between GPU and CPU")
        _require(float(np.nanmax(rel)) <= 1e-3, f"GPU vs CPU: largest relative difference {np.nanmax(rel):.2e}")
        out["max_rel_vs_cpu"] = float(np.nanmax(rel))
    return out


def weights_big_stage(stages: Stages, big_run: Path, layers: int) -> dict:
    from reprtools.weights import weights

    if not stages.ok("train-8b-shaped-lora"):
        raise Skip("needs the train-8b-shaped-lora run (a GPU)")
    _reset_peak()
    started = time.perf_counter()
    table = weights([big_run], big_run.parent / "weights-big", figures=False, cache=False)
    seconds = time.perf_counter() - started
    return {"rows": len(table), "seconds": round(seconds, 1), "seconds_per_block": round(seconds / layers, 2),
            "extrapolated_32_blocks_min": round(seconds / layers * 32 / 60, 1), "peak_gpu_gib": _peak_gib()}


# --------------------------------------------------------------------------------------------------------- study
STUDY_TOML = """
[study]
name = "gpu-check"
output_dir = "out"
models = ["tiny-llama"]
methods = ["lora", "dora"]
ratios = [0, 0.5]
seeds = [0]
num_examples = 16

[[tasks]]
name = "xnli"
data = "xnli:xnli"
langs = ["sw"]

[train]
max_steps = 4
batch_size = 4

[eval]
langs = ["target", "en"]
limit = 8
bootstrap = 0

[probe]
data = "demo"
langs = ["en", "target"]
max_sentences = 8

[resources]
gpus = 1
"""


def study_stage(root: Path) -> dict:
    """The tiny study through the local executor on this machine's GPUs (one per run)."""
    import pandas as pd
    import torch

    from reprtools.study import run_study
    from reprtools.study.steps import train_dir

    if not torch.cuda.is_available():
        raise Skip("needs a GPU (the CPU path is tested in tests/test_study_*.py)")
    _need_langcodes()
    (root / "xnli").mkdir(parents=True, exist_ok=True)
    labels = ("entailment", "neutral", "contradiction")
    for lang, (p, h) in {"en": ("A {}.", "B {}."), "sw": ("Paka {}.", "Mbwa {}.")}.items():
        rows = "".join(f"{p.format(i)}\t{h.format(i)}\t{labels[i % 3]}\n" for i in range(60))
        (root / "xnli" / f"dev-{lang}.tsv").write_text(rows, encoding="utf-8")
    (root / "study.toml").write_text(STUDY_TOML, encoding="utf-8")
    plan, codes, results = run_study(root / "study.toml", executor="local", echo=lambda msg: print(msg, file=sys.stderr))
    _require(all(code == 0 for code in codes.values()), f"worker exit codes {codes}")
    devices = []
    for run in plan.runs:
        manifest = json.loads((train_dir(run.dir) / "run.json").read_text())
        _require(manifest["hardware"]["device_type"] == "cuda", f"{run.key} trained on {manifest['hardware']}")
        header = [line for line in (run.dir / "worker.log").read_text().splitlines() if line.startswith("--- ")]
        _require(header and "CUDA_VISIBLE_DEVICES=" in header[-1], f"{run.key}: no GPU given in worker.log")
        devices.append(header[-1].split("CUDA_VISIBLE_DEVICES=")[1].split()[0])
    frame = pd.read_csv(results)
    _require(set(frame["run_key"].dropna()) >= {run.key for run in plan.runs}, "results.csv lacks some runs")
    return {"runs": len(plan.runs), "rows": len(frame), "devices": ",".join(devices)}


# ---------------------------------------------------------------------------------------------------- the driver
def run_all(args, gpu: bool, work: Path) -> Stages:
    stages, groups = Stages(), set(args.stages.split(","))
    steps = args.steps or (20 if gpu else 2)
    if "environment" in groups:
        stages.run("environment", environment)
    if "train" in groups:
        for method in args.methods.split(","):
            stages.run(f"train-tiny-{method}", train_stage, "tiny-llama", method, steps, work / f"tiny-{method}")
    big = work / "llama-8b-shaped"
    if "big" in groups:
        stages.run("build-8b-shaped", build_8b_shaped, args.layers, big)
    if "capture" in groups:
        texts = sentences(64, 40) if gpu else sentences(24, 16)  # fewer and shorter on 2 CPU cores
        stages.run("capture-tiny", capture_stage, "tiny-llama", texts, True)
        if stages.ok("build-8b-shaped"):
            stages.run("capture-8b-shaped", capture_stage, str(big), sentences(32, 24), False)
    if "big" in groups:
        stages.run("train-8b-shaped-lora", _train_big, stages, big, steps)
    if "probe" in groups:
        stages.run("probe-tiny", _probe_after_training, stages, work / "tiny-lora", 24 if gpu else 12)
    if "eval" in groups:
        stages.run("eval-tiny", _eval_after_training, stages, work / "tiny-lora", 64 if gpu else 4)
    if "weights" in groups:
        stages.run("weights-tiny", weights_tiny_stage, work, gpu)
        stages.run("weights-8b-shaped", weights_big_stage, stages, big.parent / "big-lora", args.layers)
    if "study" in groups:
        stages.run("study-tiny", study_stage, work / "study")
    return stages


def _train_big(stages: Stages, big: Path, steps: int) -> dict:
    if not stages.ok("build-8b-shaped"):
        raise Skip("no 8B-shaped model (needs a GPU; see build-8b-shaped)")
    return train_stage(str(big), "lora", steps, big.parent / "big-lora")


def _probe_after_training(stages: Stages, run_dir: Path, max_sentences: int) -> dict:
    if not stages.ok("train-tiny-lora"):
        raise Skip("needs the train-tiny-lora run")
    return probe_stage(run_dir, max_sentences)


def _eval_after_training(stages: Stages, run_dir: Path, items: int) -> dict:
    if not stages.ok("train-tiny-lora"):
        raise Skip("needs the train-tiny-lora run")
    return eval_stage(run_dir, items)


def print_table(rows: list[dict]) -> None:
    keys = ("tokens_per_s", "peak_gpu_gib", "capture_over_plain", "first_loss", "last_loss", "rows", "defined_values",
            "params_m")
    print(f"\n{'stage':24} {'status':8} {'seconds':>8}  details")
    for row in rows:
        extra = {k: row[k] for k in keys if row.get(k) is not None}
        for dev in ("cuda_fp32", "cuda_bf16", "cpu_bf16", "cpu_fp32_batch1"):
            if dev in row:
                extra[dev] = f"max_rel {row[dev]['max_rel']:.1e}, min_cos {row[dev]['min_cos']:.5f}"
        if row["stage"] == "environment":
            extra = {k: row[k] for k in ("torch", "transformers", "peft", "gpu", "bf16", "langcodes") if k in row}
        detail = row.get("error") or row.get("note") or ", ".join(f"{k} {v}" for k, v in extra.items())
        print(f"{row['stage']:24} {row['status']:8} {row['seconds']:>8.1f}  {detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="write every measurement to this JSON file")
    parser.add_argument("--cpu-smoke", action="store_true", help="ignore any GPU; run the CPU checks only")
    parser.add_argument("--layers", type=int, default=2, help="blocks of the 8B-shaped model (default 2)")
    parser.add_argument("--steps", type=int, help="training steps (default 20 on a GPU, 2 on the CPU)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated adapter methods to train")
    parser.add_argument("--stages", default=",".join(STAGE_GROUPS), help="comma-separated: " + ",".join(STAGE_GROUPS))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    _setup_environment(args.cpu_smoke)
    import torch

    gpu = torch.cuda.is_available()
    if not gpu:
        print(CPU_SMOKE_LINE.format(why="--cpu-smoke" if args.cpu_smoke else "torch.cuda.is_available() is False"))
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        os.environ.setdefault("REPRTOOLS_CACHE", str(Path(tmp) / "cache"))  # tiny models built here, not in ~/.cache
        stages = run_all(args, gpu, Path(tmp))
    total = time.perf_counter() - started
    print_table(stages.results)
    tolerances = {"fp32_max_rel": FP32_MAX_REL, "bf16_min_cos": BF16_MIN_COS, "bf16_median_rel": BF16_MEDIAN_REL}
    if args.out:
        from reprtools.fileio import write_json

        write_json(args.out, {"gpu": gpu, "mode": "gpu" if gpu else "cpu-smoke", "total_s": round(total, 1),
                              "failed": stages.failed, "tolerances": tolerances, "stages": stages.results})
    verdict = f"FAILED: {', '.join(stages.failed)}" if stages.failed else "all stages ok or skipped"
    print(f"\ngpu_check: {verdict}; total wall time {total:.1f} s")
    return 1 if stages.failed else 0


if __name__ == "__main__":
    sys.exit(main())
