"""Benchmark: ``reprtools eval --format harness`` against the ``lm_eval`` CLI and against one item at a time.

All three score the same model on the same items: the held-out XNLI (or TyDiQA) items ``reprtools eval`` picks,
in the task files it exports to ``OUT/tasks`` (lm-eval's own ``xnli_{lang}`` template, only the data replaced).

(a) **ours** -- :func:`reprtools.evaluate.evaluate` with ``format="harness"``.  It always scores the base and every
    checkpoint, so it gets one checkpoint (a LoRA trained for one step, or ``--checkpoint``) and is timed three ways:

    * *end to end*: the whole ``evaluate()`` call (imports, one model load, the items, the base and the checkpoint
      scored, files written; no bootstrap), per item scored -- twice the items, since two models are scored;
    * *base: harness call*: the first ``lm_eval.simple_evaluate`` call inside it (task building, requests,
      metrics), the base model already in memory -- timed by wrapping lm-eval's public ``simple_evaluate``;
    * *base: model requests only*: within that call, HFLM's ``loglikelihood``/``generate_until`` (the forward
      passes), timed by wrapping those methods on the class.

(b) **the lm_eval CLI** -- a subprocess ``lm_eval --model hf --model_args pretrained=DIR,dtype=float32
    --tasks NAMES --include_path OUT/tasks --batch_size B --device D --log_samples --output_path ...`` on the very
    files ours exported, excluding nothing: its wall time *includes* Python start-up, imports and the model load.
    Its own ``total_evaluation_time_seconds`` (from its tracker's start, after imports, still with the model load)
    is shown too.  It runs on the base, then with ``peft=ADAPTER`` on the checkpoint -- the same work as ours end to
    end, in two processes -- and every item's prediction and correctness must equal ours
    (``OUT/items/NAME/LANG.jsonl``); any difference fails the run (exit 1).

(c) **one by one** -- lm-eval in-process on a loaded base (``HFLM(pretrained=model, batch_size=1)``) on the same
    ``OUT/tasks``: each request its own forward pass; the harness call and its model requests timed as in (a).
    Its predictions must equal ours too.

Ratios are ours' items/s over the row's items/s: ours end to end / lm_eval CLI base + peft (both include model
loads and score both models; the goal is >= 0.95), and ours base / one by one (same timing scope on both sides).
The machine may be shared, so times vary between runs; the agreement does not.

    python benchmarks/bench_eval.py                                  # tiny-llama, a quick run
    python benchmarks/bench_eval.py --model gemma-3-270m --limit 30  # the default model, 30 items per language
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny-llama", help="a reprtools model name (default: tiny-llama)")
    p.add_argument("--task", default="xnli", choices=("xnli", "tydiqa"))
    p.add_argument("--data", default=None, help="the task's folder (default: ../shared/data/TASK)")
    p.add_argument("--langs", default="en,hi")
    p.add_argument("--limit", type=int, default=None, help="at most N held-out items per language")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--checkpoint", default=None, help="a run or adapter of --model (default: train LoRA 1 step)")
    p.add_argument("--work-dir", default=None, help="keep the files here (default: a temporary folder)")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    return p.parse_args(argv)


def make_checkpoint(model: str, work: Path) -> Path:
    """A LoRA of ``model`` trained for one step on the demo data (only the adapter's presence matters here)."""
    from reprtools.train import TrainOptions, train

    out = work / "lora-1step"
    train(TrainOptions(output_dir=str(out), model=model, method="lora", max_steps=1, num_examples=4, batch_size=2,
                       progress=False))
    return out


@contextlib.contextmanager
def _wrapped(owner, attr: str, times: list[float]):
    """Replace ``owner.attr`` by a wrapper that appends each call's duration to ``times``; restore it after."""
    own = attr in vars(owner)
    original = getattr(owner, attr)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - start)

    setattr(owner, attr, wrapper)
    try:
        yield
    finally:
        setattr(owner, attr, original) if own else delattr(owner, attr)


@contextlib.contextmanager
def timers():
    """Durations of each ``lm_eval.simple_evaluate`` call (reprtools looks it up at call time) and of HFLM's
    model requests within them (``loglikelihood``, ``generate_until``: the forward passes, no task building)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    times = {"calls": [], "requests": []}
    with _wrapped(lm_eval, "simple_evaluate", times["calls"]), \
            _wrapped(HFLM, "loglikelihood", times["requests"]), _wrapped(HFLM, "generate_until", times["requests"]):
        yield times


def run_ours(args, data: str, checkpoint: Path, out: Path) -> dict:
    from reprtools.evaluate import EvalOptions, evaluate

    start = time.perf_counter()
    with timers() as times:
        result = evaluate(EvalOptions(checkpoints=[str(checkpoint)], data=data, task=args.task, format="harness",
                                      langs=args.langs, limit=args.limit, output_dir=str(out), bootstrap=0,
                                      batch_size=args.batch_size, device=args.device, progress=False))
    wall = time.perf_counter() - start
    summary = result.summary
    items = sum(summary["items_per_lang"].values())
    names = dict(zip(summary["langs"], summary["tasks"]))  # one task per language, in the same order
    if len(times["calls"]) != 2 or len(times["requests"]) != 2:
        raise SystemExit(f"expected two harness calls with one request batch each (base, checkpoint), got {times}")
    return {"wall_s": wall, "base_s": times["calls"][0], "base_requests_s": times["requests"][0],
            "checkpoint_s": times["calls"][1], "items": items, "tasks": names}


def _lm_eval_command() -> list[str]:
    script = Path(sys.executable).with_name("lm_eval")
    return [str(script)] if script.is_file() else [shutil.which("lm_eval") or "lm_eval"]


def run_cli(model_dir: Path, tasks: dict[str, str], tasks_dir: Path, args, out: Path, adapter: Path | None) -> dict:
    """The lm_eval CLI as a user runs it; wall time of the whole process and its samples per task."""
    model_args = f"pretrained={model_dir},dtype=float32" + (f",peft={adapter}" if adapter else "")
    cmd = [*_lm_eval_command(), "--model", "hf", "--model_args", model_args, "--tasks", ",".join(tasks.values()),
           "--include_path", str(tasks_dir), "--batch_size", str(args.batch_size), "--device", args.device,
           "--log_samples", "--output_path", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"lm_eval failed ({proc.returncode}):\n{' '.join(cmd)}\n{proc.stderr[-3000:]}")
    results = json.loads(max(out.rglob("results_*.json"), key=lambda p: p.stat().st_mtime).read_text())
    samples = {}
    for lang, name in tasks.items():
        path = max(out.rglob(f"samples_{name}_*.jsonl"), key=lambda p: p.stat().st_mtime)
        samples[lang] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    own = results.get("total_evaluation_time_seconds")
    return {"wall_s": wall, "own_s": float(own) if own else float("nan"), "samples": samples,
            "items": sum(len(s) for s in samples.values()), "command": " ".join(cmd)}


def run_one_by_one(model: str, tasks: dict[str, str], tasks_dir: Path, device: str) -> dict:
    """lm-eval in-process on the loaded base model with batch size 1: scoring time only."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from reprtools.models import load_model

    loaded = load_model(model, device=device)
    loaded.model.eval()
    lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=1)
    manager = TaskManager(include_path=str(tasks_dir))
    with timers() as times:
        res = lm_eval.simple_evaluate(model=lm, tasks=list(tasks.values()), task_manager=manager, log_samples=True,
                                      verbosity="ERROR")
    samples = {lang: res["samples"][name] for lang, name in tasks.items()}
    return {"s": times["calls"][0], "requests_s": sum(times["requests"]), "samples": samples,
            "items": sum(len(s) for s in samples.values())}


def _sample_record(task: str, lang: str, sample: dict) -> dict:
    from reprtools.eval_tasks import record

    return record(task, lang, sample)


def disagreements(task: str, out: Path, name: str, samples: dict[str, list[dict]]) -> tuple[int, list[str]]:
    """Items whose prediction or score differs between ours (``items/NAME``) and lm-eval's samples."""
    keys = ("pred", "correct") if task == "xnli" else ("prediction", "exact_match", "f1")
    compared, bad = 0, []
    for lang, theirs in samples.items():
        ours = {it["id"]: it for it in map(json.loads, (out / "items" / name / f"{lang}.jsonl").read_text(
            encoding="utf-8").splitlines())}
        theirs = {r["id"]: r for r in (_sample_record(task, lang, s) for s in theirs)}
        if set(ours) != set(theirs):
            bad.append(f"{lang}: different item ids ({len(ours)} ours, {len(theirs)} lm-eval)")
            continue
        for item_id, it in ours.items():
            compared += 1
            if any(it[k] != theirs[item_id][k] for k in keys):
                bad.append(f"{lang} {item_id}: ours {[it[k] for k in keys]}, lm-eval {[theirs[item_id][k] for k in keys]}")
    return compared, bad


def accuracy(task: str, out: Path, name: str) -> dict[str, float]:
    key = "correct" if task == "xnli" else "exact_match"
    acc = {}
    for path in sorted((out / "items" / name).glob("*.jsonl")):
        items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        acc[path.stem] = sum(float(it[key]) for it in items) / len(items)
    return acc


def table(rows: list[tuple]) -> str:
    """Rows of (label, items, seconds, comparable row's label or None); the ratio is items/s over items/s."""
    rates = {label: items / seconds for label, items, seconds, _ in rows}
    lines = [f"{'':52s} {'items':>5s} {'seconds':>8s} {'items/s':>8s}  ratio"]
    for label, items, seconds, ours in rows:
        ratio = f"{ours.split(',')[0]} / this = {rates[ours] / rates[label]:.2f}" if ours else ""
        lines.append(f"{label:52s} {items:5d} {seconds:8.2f} {rates[label]:8.2f}  {ratio}")
    return "\n".join(lines)


def write_json(args, ours: dict, cli_base: dict, cli_ck: dict, single: dict, checks: dict) -> None:
    """The numbers behind the table, the agreement and the CLI command, as JSON at ``--json``."""
    n = ours["items"]
    Path(args.json).write_text(json.dumps({
        "model": args.model, "task": args.task, "langs": args.langs, "limit": args.limit, "items": n,
        "batch_size": args.batch_size, "ours_wall_s": ours["wall_s"], "ours_base_s": ours["base_s"],
        "ours_checkpoint_s": ours["checkpoint_s"], "cli_base_wall_s": cli_base["wall_s"],
        "cli_base_own_s": cli_base["own_s"], "cli_peft_wall_s": cli_ck["wall_s"], "one_by_one_s": single["s"],
        "ours_base_requests_s": ours["base_requests_s"], "one_by_one_requests_s": single["requests_s"],
        "ratio_ours_e2e_vs_cli_base_plus_peft": (2 * n / ours["wall_s"])
        / ((cli_base["items"] + cli_ck["items"]) / (cli_base["wall_s"] + cli_ck["wall_s"])),
        "ratio_ours_base_requests_vs_one_by_one": single["requests_s"] / ours["base_requests_s"],
        "agreement": {k: {"compared": c, "mismatches": b} for k, (c, b) in checks.items()},
        "cli_command": cli_base["command"]}, indent=2))


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)
    import lm_eval
    import torch

    from reprtools.models import resolve_model

    data = args.data or str(DEFAULT_DATA / args.task)
    if not Path(data).exists():
        raise SystemExit(f"no {args.task} data at {data}; give --data")
    model_dir = resolve_model(args.model).path
    with contextlib.ExitStack() as stack:
        work = Path(args.work_dir) if args.work_dir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        checkpoint = Path(args.checkpoint) if args.checkpoint else make_checkpoint(args.model, work)
        train_s = time.perf_counter() - start
        out = work / "eval"
        ours = run_ours(args, data, checkpoint, out)
        from reprtools.checkpoints import read_checkpoint

        ck = read_checkpoint(checkpoint)
        cli_base = run_cli(model_dir, ours["tasks"], out / "tasks", args, work / "cli-base", None)
        cli_ck = run_cli(model_dir, ours["tasks"], out / "tasks", args, work / "cli-ck", ck.adapter_dir)
        single = run_one_by_one(args.model, ours["tasks"], out / "tasks", args.device)
        checks = {"lm_eval CLI, base": disagreements(args.task, out, "base", cli_base["samples"]),
                  f"lm_eval CLI, {ck.name} (peft)": disagreements(args.task, out, ck.name, cli_ck["samples"]),
                  "one by one, base": disagreements(args.task, out, "base", single["samples"])}
        acc = {name: accuracy(args.task, out, name) for name in ("base", ck.name)}

    n = ours["items"]
    print(f"model {args.model} ({model_dir}), task {args.task} harness format, langs {args.langs}, "
          f"{n} items (limit {args.limit}), batch {args.batch_size}, device {args.device}; "
          f"lm_eval {lm_eval.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")
    print(f"(checkpoint {'given' if args.checkpoint else f'trained 1 step in {train_s:.1f} s'}: {ck.name}; "
          f"ours scored it in {ours['checkpoint_s']:.2f} s)")
    e2e, cli_both = "ours, end to end (load + base + checkpoint)", "lm_eval CLI, base + peft (2 processes)"
    base, base_req = "ours, base: harness call (model in memory)", "ours, base: model requests only"
    print(table([
        (e2e, 2 * n, ours["wall_s"], None),
        (cli_both, cli_base["items"] + cli_ck["items"], cli_base["wall_s"] + cli_ck["wall_s"], e2e),
        ("lm_eval CLI, base: process wall (with load)", cli_base["items"], cli_base["wall_s"], None),
        ("lm_eval CLI, base: its own total time (with load)", cli_base["items"], cli_base["own_s"], None),
        (base, n, ours["base_s"], None),
        (base_req, n, ours["base_requests_s"], None),
        ("one by one, batch 1: harness call", single["items"], single["s"], base),
        ("one by one, batch 1: model requests only", single["items"], single["requests_s"], base_req),
    ]))
    print("accuracy (ours): " + "; ".join(f"{name} " + ", ".join(f"{lang} {v:.3f}" for lang, v in per.items())
                                          for name, per in acc.items()))
    failed = False
    for label, (compared, bad) in checks.items():
        print(f"item by item, ours vs {label}: {compared - len(bad)}/{compared} agree" +
              ("" if not bad else "; MISMATCH: " + "; ".join(bad[:5])))
        failed |= bool(bad) or compared == 0
    if args.json:
        write_json(args, ours, cli_base, cli_ck, single, checks)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
