"""Shared test set-up: offline hub, a private cache, and the location of the shared real data."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip cleanly where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="module")
def _single_threaded(request):
    """Tests run tiny problems (tiny models, small arrays), where thread start-up and spinning in torch and BLAS
    dominate the run time on 2 cores; the real-model tests (marked slow) keep every thread."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> Path:
    """Tiny-llama runs of every method (2 steps on 16 examples, seed 0, named by method) and a second seed of LoRA
    and DoRA (``lora-s1``, ``dora-s1``), trained once per session for the tests that read checkpoints.  Shared:
    copy a run before writing into it."""
    from reprtools.adapters import METHODS
    from reprtools.train import TrainOptions, train

    root = tmp_path_factory.mktemp("tiny-runs")
    os.environ["REPRTOOLS_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")
    for name, method, seed in [(m, m, 0) for m in METHODS] + [("lora-s1", "lora", 1), ("dora-s1", "dora", 1)]:
        train(TrainOptions(output_dir=str(root / name), model="tiny-llama", method=method, max_steps=2,
                           num_examples=16, learning_rate=2e-2, seed=seed, progress=False))
    return root
