"""``reprtools train``: parse the options and call :func:`reprtools.train.train`."""

from __future__ import annotations

import click


@click.command()
@click.option("--method", default="lora", show_default=True, metavar="lora|dora|vera|adalora|pissa",
              help="Adapter method.")
@click.option("--model", "-m", default="gemma-3-270m", show_default=True,
              help="Built-in name (gemma-3-270m, tiny-llama, tiny-gemma, tiny-qwen, tiny-mistral), model directory, .gguf file or hub id.")
@click.option("--data", "-d", default="demo", show_default=True,
              help="demo | tydiqa:DIR | xnli:DIR | jsonl:FILE (or FILE.jsonl) | hf:tydiqa | hf:xnli.")
@click.option("--lang", "-l", default="hi", show_default=True, help="Target language mixed into English (ISO 639 code or name: hi, swh, Yoruba).")
@click.option("--ratio", default=0.1, show_default=True, type=float,
              help="Share of target-language examples in [0, 1] (the study: 0, 0.01, 0.1, 0.5).")
@click.option("--num-examples", "-n", default=None, type=int,
              help="Total training examples N [default: as many as the data allows at this ratio, at most 3000].")
@click.option("--output-dir", "-o", required=True, help="Run directory: gets adapter/ and run.json.")
@click.option("--rank", "-r", default=8, show_default=True, type=int, help="Adapter rank (AdaLoRA: target average rank).")
@click.option("--alpha", default=16.0, show_default=True, type=float, help="Scaling alpha (not used by VeRA).")
@click.option("--dropout", default=0.05, show_default=True, type=float, help="Adapter dropout.")
@click.option("--match-budget", default=None, metavar="lora|PCT",
              help="Choose the rank whose trainable-parameter count comes closest to LoRA at --rank, or to PCT% of the base.")
@click.option("--learning-rate", "--lr", default=None, type=float,
              help="Learning rate [default: 2e-4; VeRA 2e-3].")
@click.option("--batch-size", "-b", default=4, show_default=True, type=int, help="Per-device (per-process) batch size.")
@click.option("--gradient-accumulation", default=None, type=int,
              help="Gradient accumulation steps [default: 1, or what --global-batch-size needs].")
@click.option("--global-batch-size", default=None, type=int,
              help="Examples per optimizer step over all processes; the accumulation becomes "
                   "global / (--batch-size x processes), so the run does not depend on how many GPUs it got.")
@click.option("--max-steps", default=None, type=int, help="Optimizer steps [default: one pass over the data].")
@click.option("--epochs", default=1.0, show_default=True, type=float, help="Passes over the data when --max-steps is not given.")
@click.option("--max-length", default=256, show_default=True, type=int, help="Maximum tokens per example.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Draws the data sample, its order and the adapter's initialisation (and dropout) together.")
@click.option("--gradient-checkpointing", is_flag=True, help="Trade compute for memory.")
@click.option("--pissa-niter", default=4, show_default=True, type=int,
              help="PiSSA: subspace iterations of the fast SVD; 0 = full SVD.")
@click.option("--target-modules", default="all-linear", show_default=True,
              help="Layers that get adapters: all-linear (the study's set-up) or names such as q_proj,v_proj.")
@click.option("--report-to", default="none", show_default=True, type=click.Choice(["none", "tensorboard", "wandb"]),
              help="Also log to TensorBoard or Weights & Biases (the Trainer's own loggers); run.json keeps the loss curve.")
@click.option("--save-steps", default=50, show_default=True, type=int, help="Checkpoint every N steps (for --resume).")
@click.option("--overwrite", is_flag=True, help="Replace a run already in --output-dir.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run from its last checkpoint (SIGTERM or SIGUSR1 during training writes "
                   "one at the current step and exits with status 75).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train(quiet: bool, **options) -> None:
    """Train one adapter on English mixed with a target language; write adapter/ and run.json."""
    from reprtools.train import TrainOptions, train as run_training

    result = run_training(TrainOptions(progress=not quiet, **options))
    m = result.manifest
    if m:
        click.echo(
            f"reprtools: trained {m['method']} (rank {m['rank']}, {m['trainable_params']:,} trainable parameters, "
            f"{m['trainable_percent']:.3f}% of the base) on {m['data']['counts']} examples in {m['wall_time_s']:.0f} s; "
            f"final loss {m['training']['final_loss']:.4f}"
        )
        click.echo(f"reprtools: adapter in {result.output_dir / 'adapter'}, manifest {result.output_dir / 'run.json'}")
