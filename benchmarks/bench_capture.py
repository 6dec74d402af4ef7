"""Benchmark reprtools.capture against the alternatives: time and peak memory.

Variants, all on the same length-sorted batches with the same forward arguments (``use_cache=False``,
mask-derived position ids, ``logits_to_keep=1`` where the model supports it) and all including tokenisation:

* ``plain``          a plain forward pass, nothing captured (the floor);
* ``capture``        ``reprtools.capture.capture``: forward hooks pool every layer on the device;
* ``hidden_states``  ``output_hidden_states=True``, then the same pooling as capture's default (the mean over
                     each sentence's own tokens: no padding, no special tokens) of every layer afterwards;
* ``full_logits``    (with ``--full-logits``) the plain Hugging Face forward, which also computes every token's
                     logits - shown for reference only.

Time: the batches are timed one by one with the variants interleaved in rotating order, ``--repeats`` times
each, and a variant's time is the sum over batches of its best time, so a burst of load from other processes
on a shared machine hits every variant alike.  Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (reset
between variants) above what the loaded model holds; on CPU each variant runs over all sentences in a fresh
subprocess that loads the model, does a tiny warm-up, resets the kernel's peak-RSS counter
(``/proc/self/clear_refs``; falls back to sampling VmRSS every millisecond) and reports its peak resident
memory above the post-load level.  Those subprocesses run with glibc ``MALLOC_MMAP_THRESHOLD_`` fixed at
128 KiB, so every tensor is mmapped and its memory leaves RSS when freed (otherwise the heap keeps freed
memory and the peak reflects fragmentation more than live tensors).

    python benchmarks/bench_capture.py [--model gemma-3-270m] [--sentences 256] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

FLORES = REPO.parent / "shared" / "data" / "flores200" / "eng_Latn.devtest"
VARIANTS = ("plain", "capture", "hidden_states")
LABELS = {
    "plain": "(c) plain forward, no capture",
    "capture": "(a) reprtools capture (hooks)",
    "hidden_states": "(b) output_hidden_states + pool",
    "full_logits": "    plain HF forward, all logits",
}


# --------------------------------------------------------------------------------------------------- data
def load_sentences(n: int, seed: int = 0) -> tuple[list[str], str]:
    if FLORES.is_file():
        lines = [ln.strip() for ln in FLORES.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if len(lines) >= n:
            return lines[:n], f"FLORES-200 eng_Latn devtest ({FLORES})"
    import random

    rng = random.Random(seed)
    words = (
        "the a of to and in that is was he for it with as his on be at by had are but from or have an they which "
        "one you were her all she there would their we him been has when who will more no if out so said what up "
        "its about into than them can only other new some could time these two may then do first any my now such "
        "like our over man me even most made after also did many before must through back years where much your "
        "way well down should because each just those people how too little state good very make world still own"
    ).split()
    sentences = [
        " ".join(rng.choice(words) for _ in range(rng.randint(8, 40))).capitalize() + "." for _ in range(n)
    ]
    return sentences, f"synthetic ({FLORES} not found)"


# ------------------------------------------------------------------------------------------------- memory
def _proc_status(key: str) -> int:
    """A ``/proc/self/status`` field in bytes (Linux)."""
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{key}:\s+(\d+)\s+kB", text, re.M)
    return int(match.group(1)) * 1024 if match else -1


class PeakRSS:
    """Peak resident memory of this process from now on: the kernel's VmHWM after a reset, else sampling."""

    def __init__(self):
        self.method = "VmHWM (reset via /proc/self/clear_refs)"
        self._peak = 0
        self._stop = threading.Event()
        self._thread = None
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.method = "VmRSS sampled every 1 ms"
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def _sample(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, _proc_status("VmRSS"))
            time.sleep(0.001)

    def peak(self) -> int:
        if self._thread is None:
            return _proc_status("VmHWM")
        self._stop.set()
        self._thread.join()
        return max(self._peak, _proc_status("VmRSS"))


# ------------------------------------------------------------------------------------------------ variants
def run_variant(variant, model, tokenizer, sentences, batch_size, max_length):
    """Run one variant over all sentences; returns the pooled tensor (or None for the plain forwards)."""
    import torch

    from reprtools.capture import _encode, _forward_kwargs, _forward_options, _length_sorted_batches, _model_device
    from reprtools.capture import capture

    if variant == "capture":
        return capture(model, tokenizer, sentences, batch_size=batch_size, max_length=max_length)
    dev = _model_device(model)
    options = _forward_options(model)
    out = None
    model.eval()
    for idx in _length_sorted_batches(tokenizer, sentences, batch_size, max_length):
        batch, own = _encode(tokenizer, [sentences[i] for i in idx], max_length, dev)
        with torch.inference_mode():
            if variant == "plain":
                model(**_forward_kwargs(options, batch))
            elif variant == "full_logits":
                model(**batch, use_cache=False)
            elif variant == "hidden_states":  # the same pooling as capture's default: the sentence's own tokens
                hidden = model(**_forward_kwargs(options, batch), output_hidden_states=True).hidden_states
                keep = own.unsqueeze(-1)
                count = own.sum(dim=1, keepdim=True).float()
                pooled = torch.stack([torch.where(keep, h.float(), 0.0).sum(dim=1) / count for h in hidden]).cpu()
                if out is None:
                    out = torch.empty((len(hidden), len(sentences), pooled.shape[-1]))
                out[:, torch.tensor(idx)] = pooled
            else:
                raise ValueError(variant)
    return out


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _load(args):
    import torch

    from reprtools.capture import resolve_device
    from reprtools.models import load_model

    device = resolve_device(args.device)
    dtype = getattr(torch, args.dtype)
    loaded = load_model(args.model, dtype=dtype, device=str(device))
    loaded.model.eval()
    return loaded.model, loaded.tokenizer, device


def _warm_up(model, tokenizer, variant, sentences, args):
    run_variant(variant, model, tokenizer, sentences[: min(2, len(sentences))], 2, args.max_length)


def worker(args) -> dict:
    """One fresh-process CPU run of one variant over all sentences: its peak RSS above the post-load level."""
    import torch

    sentences, _ = load_sentences(args.sentences)
    model, tokenizer, device = _load(args)
    _warm_up(model, tokenizer, args.worker, sentences, args)
    base = _proc_status("VmRSS")
    meter = PeakRSS()
    start = time.perf_counter()
    run_variant(args.worker, model, tokenizer, sentences, args.batch_size, args.max_length)
    _sync(device)
    seconds = time.perf_counter() - start
    peak = meter.peak()
    return {
        "variant": args.worker,
        "seconds": seconds,
        "peak_bytes": peak,
        "base_bytes": base,
        "extra_bytes": peak - base,
        "method": meter.method,
        "threads": torch.get_num_threads(),
    }


def memory_cpu(args, variants) -> tuple[dict, str]:
    """Peak RSS of each variant, each in a fresh subprocess (large allocations are mmapped, so RSS tracks them)."""
    env = {**os.environ, "TQDM_DISABLE": "1", "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    results = {}
    method = "?"
    for v in variants:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", v]
        cmd += ["--model", args.model, "--sentences", str(args.sentences), "--batch-size", str(args.batch_size)]
        cmd += ["--max-length", str(args.max_length), "--device", "cpu", "--dtype", args.dtype]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"memory worker for {v} failed (exit {proc.returncode})")
        res = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
        method = res["method"]
        results[v] = res
        print(
            f"  memory {v:<14} peak RSS {res['peak_bytes'] / 2**20:8.1f} MiB, "
            f"+{res['extra_bytes'] / 2**20:.1f} MiB over the loaded model ({res['seconds']:.1f} s)",
            flush=True,
        )
    note = (
        "peak RSS above the loaded model, one fresh process per variant running all sentences, "
        f"{method}, glibc MALLOC_MMAP_THRESHOLD_=128 KiB so freed tensors leave RSS"
    )
    return results, note


def memory_cuda(model, tokenizer, sentences, args, variants, device) -> tuple[dict, str]:
    import torch

    results = {}
    for v in variants:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run_variant(v, model, tokenizer, sentences, args.batch_size, args.max_length)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        results[v] = {"peak_bytes": peak, "extra_bytes": peak - base}
        print(f"  memory {v:<14} +{(peak - base) / 2**20:.1f} MiB over the loaded model", flush=True)
    return results, "torch.cuda.max_memory_allocated above the loaded model, reset between variants"


def timing(model, tokenizer, sentences, args, variants, device) -> dict:
    """Per-batch interleaved timing: every batch runs every variant ``repeats`` times, in rotating order.

    A variant's time is the sum over batches of its best time on that batch; ``batch_seconds`` keeps the
    per-batch best times, so the median over batches of the per-batch ratio to ``plain`` can be reported as
    well: a burst of load from other processes on a shared machine that spans a whole batch then cannot skew it.
    ``capture`` is the real API call on the batch's sentences (its own tokenisation, hook set-up and removal
    included, so it pays those once per batch here, not once per run).
    """
    from reprtools.capture import _length_sorted_batches

    batches = _length_sorted_batches(tokenizer, sentences, args.batch_size, args.max_length)
    best = {v: [] for v in variants}
    total = {v: 0.0 for v in variants}
    for b, idx in enumerate(batches):
        texts = [sentences[i] for i in idx]
        order = variants[b % len(variants):] + variants[: b % len(variants)]
        times = {v: [] for v in variants}
        for _ in range(args.repeats):
            for v in order:
                _sync(device)
                start = time.perf_counter()
                run_variant(v, model, tokenizer, texts, len(texts), args.max_length)
                _sync(device)
                times[v].append(time.perf_counter() - start)
        for v in variants:
            best[v].append(min(times[v]))
            total[v] += sum(times[v]) / len(times[v])
        print(
            f"  batch {b + 1:>3}/{len(batches)} ({len(texts)} x {len(tokenizer(texts[0])['input_ids'])} tokens) "
            + "  ".join(f"{v} {min(times[v]):.2f}s" for v in variants),
            flush=True,
        )
    return {
        v: {
            "seconds": sum(best[v]),
            "mean_seconds": total[v],
            "batch_seconds": best[v],
            "median_batch_ratio": statistics.median(t / p for t, p in zip(best[v], best["plain"])),
        }
        for v in variants
    }


def token_count(args, sentences) -> int:
    from reprtools.models import load_tokenizer, resolve_model

    resolved = resolve_model(args.model)  # materialises the model once (the default converts a GGUF, ~90 s)
    tokenizer = load_tokenizer(resolved.path or resolved.reload_id)
    ids = tokenizer(sentences, truncation=True, max_length=args.max_length)["input_ids"]
    return sum(map(len, ids))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant; the best time counts")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--full-logits", action="store_true", help="also time the plain HF forward (all logits)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        return 0

    import torch

    from reprtools.capture import resolve_device

    device = resolve_device(args.device)
    sentences, source = load_sentences(args.sentences)
    tokens = token_count(args, sentences)
    variants = list(VARIANTS) + (["full_logits"] if args.full_logits else [])
    print(
        f"model {args.model} ({args.dtype}) on {device}, torch {torch.__version__}, {torch.get_num_threads()} threads\n"
        f"{len(sentences)} sentences from {source}: {tokens} tokens, batch size {args.batch_size}, "
        f"best of {args.repeats}",
        flush=True,
    )
    if device.type not in ("cuda", "cpu"):
        raise SystemExit(f"peak memory on {device.type} is not measured by this benchmark; use --device cpu or cuda")
    model, tokenizer, device = _load(args)
    for v in variants:
        _warm_up(model, tokenizer, v, sentences, args)
    print(f"timing: per batch, variants interleaved, best of {args.repeats} per batch", flush=True)
    summary = timing(model, tokenizer, sentences, args, variants, device)
    if device.type == "cuda":
        memory, memory_note = memory_cuda(model, tokenizer, sentences, args, variants, device)
    else:
        del model
        memory, memory_note = memory_cpu(args, variants)
    for v in variants:
        summary[v].update(extra_bytes=memory[v]["extra_bytes"], peak_bytes=memory[v]["peak_bytes"])

    plain = summary["plain"]
    hs = summary["hidden_states"]
    print(f"\nmemory: {memory_note}")
    print("time s: sum over batches of the best time per batch; x plain: its ratio to (c); median: the median over")
    print("batches of the per-batch ratio to (c).  peak MiB: peak memory above the loaded model.")
    header = (
        f"{'variant':<34} {'time s':>8} {'x plain':>8} {'median':>7} {'peak MiB':>9} {'x plain':>8} {'x hid.st.':>9}"
    )
    print(header)
    print("-" * len(header))
    for v in variants:
        s = summary[v]
        extra = s["extra_bytes"] / 2**20
        print(
            f"{LABELS[v]:<34} {s['seconds']:8.2f} {s['seconds'] / plain['seconds']:8.3f} "
            f"{s['median_batch_ratio']:7.3f} {extra:9.1f} "
            f"{s['extra_bytes'] / max(plain['extra_bytes'], 1):8.2f} "
            f"{s['extra_bytes'] / max(hs['extra_bytes'], 1):9.2f}"
        )
    cap = summary["capture"]
    time_ok = cap["seconds"] <= 1.05 * plain["seconds"]
    median_ok = cap["median_batch_ratio"] <= 1.05
    mem_ok = cap["extra_bytes"] < hs["extra_bytes"]
    print(
        f"\ncapture time {cap['seconds'] / plain['seconds']:.3f}x plain in total, median per batch "
        f"{cap['median_batch_ratio']:.3f}x (goal <= 1.05: total {'met' if time_ok else 'NOT met'}, "
        f"median {'met' if median_ok else 'NOT met'}); "
        f"peak memory {cap['extra_bytes'] / max(hs['extra_bytes'], 1):.2f}x output_hidden_states "
        f"(goal < 1: {'met' if mem_ok else 'NOT met'})"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"model": args.model, "device": str(device), "sentences": len(sentences), "tokens": tokens,
                 "batch_size": args.batch_size, "memory": memory_note, "results": summary},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
