"""Training throughput: ``reprtools train`` against a bare peft + transformers loop, in one run.

Both train the same adapter on the same model, the same mixed data in the same order, the same batch size and
number of steps; both count the same real (non-padding) tokens.  The bare loop is the obvious hand-written
alternative: AdamW, forward, backward, step, zero_grad, nothing else.  Goal: ours >= 0.95 x the bare loop.

    python benchmarks/bench_train.py [--model gemma-3-270m] [--method lora] [--steps 10] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def bare_loop(model_name: str, method: str, steps: int, batch_size: int, seed: int, lr: float) -> tuple[int, float]:
    import torch
    import transformers
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq

    from reprtools.adapters import AdapterSpec
    from reprtools.data import load_examples, mix, tokenize_example
    from reprtools.models import load_tokenizer, resolve_model
    from reprtools.train import auto_num_examples

    resolved = resolve_model(model_name)
    tokenizer = load_tokenizer(resolved.path)
    tokenizer.padding_side = "right"
    model = AutoModelForCausalLM.from_pretrained(str(resolved.path), dtype=torch.float32)
    dataset = load_examples("demo")
    chosen = mix(dataset.examples, "hi", 0.1, auto_num_examples(dataset.counts(), "en", "hi", 0.1), seed=seed)
    features = [tokenize_example(tokenizer, ex, 256) for ex in chosen.examples]
    transformers.set_seed(seed)
    peft_model = get_peft_model(model, AdapterSpec(method).config(total_step=steps))
    peft_model.train()
    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=lr)
    batches = [features[(i * batch_size) % len(features):][:batch_size] for i in range(steps)]
    tokens = 0
    start = time.perf_counter()
    for batch in batches:
        inputs = collate(batch)
        tokens += int(inputs["attention_mask"].sum())
        loss = peft_model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return tokens, time.perf_counter() - start


def ours(model_name: str, method: str, steps: int, batch_size: int, seed: int, lr: float) -> tuple[int, float]:
    from reprtools.train import TrainOptions, train

    out = tempfile.mkdtemp(prefix="bench-train-")
    try:
        manifest = train(TrainOptions(output_dir=out, model=model_name, method=method, max_steps=steps,
                                      batch_size=batch_size, seed=seed, learning_rate=lr, progress=False,
                                      save_steps=10**9, logging_steps=max(steps // 5, 1), overwrite=True)).manifest
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return manifest["tokens_seen"], manifest["wall_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--method", default="lora")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    lr = 2e-4
    # warm-up: load the model once so neither side pays for the one-time conversion or cold file caches
    from reprtools.models import resolve_model

    resolve_model(args.model)
    # alternate the two, best of --repeats rounds each: neither side is favoured by running first (cold caches)
    best: dict[str, tuple[int, float]] = {}
    for _ in range(args.repeats):
        for name, fn in (("bare peft + transformers loop", bare_loop), ("reprtools train", ours)):
            tokens, seconds = fn(args.model, args.method, args.steps, args.batch_size, args.seed, lr)
            if name not in best or tokens / seconds > best[name][0] / best[name][1]:
                best[name] = (tokens, seconds)
    rows = [(name, tokens, seconds, tokens / seconds) for name, (tokens, seconds) in best.items()]
    print(f"\nmodel {args.model}, method {args.method}, {args.steps} steps, batch {args.batch_size}, "
          f"best of {args.repeats} alternating rounds\n")
    print(f"{'':32} {'tokens':>8} {'seconds':>9} {'tokens/s':>10}")
    for name, tokens, seconds, rate in rows:
        print(f"{name:32} {tokens:>8} {seconds:>9.2f} {rate:>10.1f}")
    ratio = rows[1][3] / rows[0][3]
    print(f"\nratio reprtools / bare = {ratio:.3f}  (goal >= 0.95)")


if __name__ == "__main__":
    main()
