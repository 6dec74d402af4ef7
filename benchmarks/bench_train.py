"""Training throughput: ``reprtools train`` against a bare peft + transformers loop, like for like, in one run.

Both sides train the same adapter on the same model from the same initialisation (``transformers.set_seed``
before ``get_peft_model``), on the same batches in the same order: the bare loop is fed the exact example order
that the Trainer's own sampler yields for ``--seed`` (read off a Trainer built with the same arguments, see
:func:`trainer_order`), padded by the same collator (``DataCollatorForSeq2Seq``, right padding), for the same
number of steps, with the same optimiser (AdamW), gradient clipping (norm 1, the Trainer's default), linear
learning-rate schedule and loss read every step.  On a
GPU the bare loop runs under bf16 autocast, as the Trainer does.  Both count the same real (non-padding) tokens;
the report shows each side's token count and first-step loss, so equal batches are visible, not assumed.

The bare loop is the obvious hand-written alternative: forward, backward, step, schedule, zero_grad.  Each side
runs in a fresh subprocess (so its peak memory is its own: peak RSS on CPU, ``torch.cuda.max_memory_allocated``
on GPU); the two alternate, best of ``--repeats`` rounds each, so neither gains from running first.  Timed: the
training loop (``trainer.train()`` for reprtools, which includes the Trainer's set-up); not timed: imports,
loading the model and tokenising.  Goal: reprtools >= 0.95 x the bare loop's tokens/s.

    python benchmarks/bench_train.py [--model gemma-3-270m] [--method lora] [--steps 10] [--batch-size 4]
    python benchmarks/bench_train.py --model tiny-llama --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

SIDES = {"bare": "bare peft + transformers loop", "ours": "reprtools train"}


# ------------------------------------------------------------------------------------------------ shared
def _options(args, output_dir: str):
    from reprtools.train import TrainOptions

    return TrainOptions(output_dir=output_dir, model=args.model, method=args.method, max_steps=args.steps,
                        batch_size=args.batch_size, seed=args.seed, learning_rate=args.lr, progress=False,
                        save_steps=10**9, logging_steps=1, overwrite=True)


def peak_memory_bytes() -> int:
    """This process's peak: ``torch.cuda.max_memory_allocated`` on a GPU, else the peak resident set (VmHWM)."""
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    match = re.search(r"^VmHWM:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.M)
    if match:
        return int(match.group(1)) * 1024
    import resource  # not Linux: ru_maxrss (kB on Linux-likes, bytes on macOS)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# ---------------------------------------------------------------------------------------- the bare loop
def trainer_order(n_examples: int, steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """The example indices of each of the first ``steps`` batches, exactly as the Trainer's sampler draws them
    for this seed: a plain Trainer with reprtools' sampling arguments (``seed``, ``data_seed``, batch size) is
    built over a dataset of indices and its own training dataloader is read.  Several epochs are chained (with
    the Trainer's per-epoch reseeding) when ``steps`` batches need more than one pass."""
    import torch
    from transformers import Trainer, TrainingArguments

    with tempfile.TemporaryDirectory(prefix="bench-order-") as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=batch_size, seed=seed, data_seed=seed,
                                 max_steps=steps, remove_unused_columns=False, report_to="none",
                                 dataloader_num_workers=0, use_cpu=not torch.cuda.is_available())
        trainer = Trainer(model=torch.nn.Linear(1, 1), args=args, train_dataset=list(range(n_examples)),
                          data_collator=lambda batch: torch.tensor(batch))
        loader = trainer.get_train_dataloader()
        batches: list[list[int]] = []
        epoch = 0
        while len(batches) < steps:
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
            batches += [b.tolist() for b in loader]
            epoch += 1
    return batches[:steps]


def bare_loop(args) -> dict:
    """Train with a hand-written loop on the Trainer's batches; return tokens, seconds, losses and peak memory."""
    import torch
    import transformers
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, get_linear_schedule_with_warmup

    from reprtools.data import load_examples, mix, tokenize_example
    from reprtools.models import load_tokenizer, resolve_model
    from reprtools.train import auto_num_examples

    opts = _options(args, "unused")
    resolved = resolve_model(args.model)
    tokenizer = load_tokenizer(str(resolved.path))
    tokenizer.padding_side = "right"
    dataset = load_examples(opts.data, langs=["en", opts.lang])
    total = auto_num_examples(dataset.counts(), "en", opts.lang, opts.ratio)
    chosen = mix(dataset.examples, opts.lang, opts.ratio, total, seed=args.seed, base_lang="en")
    features = [tokenize_example(tokenizer, ex, opts.max_length) for ex in chosen.examples]
    order = trainer_order(len(features), args.steps, args.batch_size, args.seed)

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    model = AutoModelForCausalLM.from_pretrained(str(resolved.path), dtype=torch.float32).to(device)
    transformers.set_seed(args.seed)
    peft_model = get_peft_model(model, opts.adapter_spec().config(total_step=args.steps))
    peft_model.train()
    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, 0, args.steps)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=cuda and torch.cuda.is_bf16_supported())
    adalora = args.method == "adalora"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    tokens, losses = 0, []
    start = time.perf_counter()
    for step, idx in enumerate(order, start=1):
        inputs = {k: v.to(device, non_blocking=True) for k, v in collate([features[i] for i in idx]).items()}
        tokens += int(inputs["attention_mask"].sum())
        with autocast:
            loss = peft_model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)  # the Trainer's default max_grad_norm, which reprtools keeps
        optimizer.step()
        if adalora:  # what reprtools' AdaLoraAllocator does; without it AdaLoRA is a fixed-rank LoRA
            peft_model.base_model.update_and_allocate(step)
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": seconds, "first_loss": losses[0], "last_loss": losses[-1], "steps": len(order),
            "peak_bytes": peak_memory_bytes()}


# ------------------------------------------------------------------------------------------------ ours
def ours(args) -> dict:
    """``reprtools.train.train`` with the same options; its manifest times ``trainer.train()``."""
    import torch

    from reprtools.train import train

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    out = tempfile.mkdtemp(prefix="bench-train-")
    try:
        manifest = train(_options(args, out)).manifest
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"tokens": manifest["tokens_seen"], "seconds": manifest["wall_time_s"],
            "first_loss": manifest["loss_curve"][0]["loss"], "last_loss": manifest["loss_curve"][-1]["loss"],
            "steps": manifest["training"]["steps_done"],
            "peak_bytes": peak_memory_bytes()}


# ------------------------------------------------------------------------------------------------ driver
def run_side(side: str, args) -> dict:
    """One side in a fresh Python process (its own peak memory); returns what it measured."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--model", args.model,
           "--method", args.method, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
           "--seed", str(args.seed), "--lr", str(args.lr)] + (["--threads", str(args.threads)] if args.threads else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"bench_train: the {side} side failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def report(args, best: dict[str, dict]) -> float:
    import torch

    memory = "peak GPU memory allocated" if torch.cuda.is_available() else "peak RSS"
    print(f"\nmodel {args.model}, method {args.method}, {args.steps} steps, batch {args.batch_size}, seed "
          f"{args.seed}, best of {args.repeats} alternating rounds, threads {args.threads or torch.get_num_threads()}; "
          f"memory = {memory} of each side's process\n")
    print(f"{'':30} {'steps':>5} {'tokens':>8} {'seconds':>8} {'tokens/s':>9} {'first loss':>11} {'last loss':>10} "
          f"{'peak MiB':>9}")
    for side, label in SIDES.items():
        r = best[side]
        print(f"{label:30} {r['steps']:>5} {r['tokens']:>8} {r['seconds']:>8.2f} {r['tokens'] / r['seconds']:>9.1f} "
              f"{r['first_loss']:>11.5f} {r['last_loss']:>10.5f} {r['peak_bytes'] / 2**20:>9.0f}")
    same = best["bare"]["tokens"] == best["ours"]["tokens"] and best["bare"]["steps"] == best["ours"]["steps"]
    print(f"\nsame batches: {'yes' if same else 'NO'} (equal steps and real-token counts)")
    ratio = (best["ours"]["tokens"] / best["ours"]["seconds"]) / (best["bare"]["tokens"] / best["bare"]["seconds"])
    print(f"ratio reprtools / bare (tokens/s) = {ratio:.3f}  (goal >= 0.95)")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--method", default="lora")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch CPU threads in both sides (default: torch's choice)")
    parser.add_argument("--worker", choices=tuple(SIDES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        result = (bare_loop if args.worker == "bare" else ours)(args)
        print("RESULT " + json.dumps(result), flush=True)
        return
    from reprtools.models import resolve_model

    resolve_model(args.model)  # build or convert the model once, before anything is timed
    best: dict[str, dict] = {}
    for round_ in range(1, args.repeats + 1):
        for side in SIDES:
            r = run_side(side, args)
            print(f"round {round_}/{args.repeats} {SIDES[side]}: {r['tokens'] / r['seconds']:.1f} tokens/s",
                  file=sys.stderr, flush=True)
            if side not in best or r["tokens"] / r["seconds"] > best[side]["tokens"] / best[side]["seconds"]:
                best[side] = r
    report(args, best)


if __name__ == "__main__":
    main()
