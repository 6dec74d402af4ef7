"""The cache of base weights' singular vectors (``reprtools weights``' once-per-base SVD): a second call reuses the
file and gives identical vectors; a changed weight gets its own file; an unreadable or malformed file is recomputed,
not a traceback; and the fast per-module route (Gram-matrix SVDs, W + ΔW's top-k iterated from W's and ΔW's top
vectors) agrees with float64 LAPACK SVDs of everything on matrices large enough to take it."""

import numpy as np
import pytest
import torch

from reprtools.measures import weights as mw
from reprtools.weights import Update, base_vectors, measure_update


def _weight(seed=0, shape=(320, 300)):
    gen = torch.Generator().manual_seed(seed)
    k = min(shape)
    q1, _ = torch.linalg.qr(torch.randn(shape[0], k, generator=gen, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(shape[1], k, generator=gen, dtype=torch.float64))
    return ((q1 * 0.99 ** torch.arange(k, dtype=torch.float64)) @ q2.T).float()


def _files(folder):
    return sorted(p for p in folder.iterdir() if p.suffix == ".safetensors")


def test_a_second_call_reuses_the_file_and_gives_identical_vectors(tmp_path, monkeypatch):
    w = _weight()
    first = base_vectors(w, tmp_path, "model.layers.0.self_attn.q_proj")
    (path,) = _files(tmp_path)
    assert path.name.startswith("model.layers.0.self_attn.q_proj-320x300-")
    assert torch.equal(first, base_vectors(w))  # the cache holds exactly what is computed without it

    def no_svd(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(mw, "gram_svd", no_svd)
    second = base_vectors(w, tmp_path, "model.layers.0.self_attn.q_proj")
    assert torch.equal(first, second)


def test_the_vectors_match_lapack_float64():
    w = _weight(1, (200, 260))
    U = base_vectors(w, None)
    ref = torch.linalg.svd(w.double(), full_matrices=False)[0]
    assert U.dtype == torch.float32 and U.shape == ref.shape
    np.testing.assert_allclose((U.double() * ref).sum(0).abs().numpy(), 1.0, atol=1e-5)


def test_a_changed_weight_is_a_new_file(tmp_path):
    w = _weight()
    first = base_vectors(w, tmp_path, "q")
    changed = w.clone()
    changed[0, 0] += 0.5
    second = base_vectors(changed, tmp_path, "q")
    assert len(_files(tmp_path)) == 2
    assert not torch.equal(first, second)
    assert torch.equal(second, base_vectors(changed))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "other shape", "no version"])
def test_a_damaged_file_is_recomputed_not_a_traceback(tmp_path, damage):
    from safetensors.torch import save_file

    w = _weight()
    good = base_vectors(w, tmp_path, "q")
    (path,) = _files(tmp_path)
    if damage == "garbage":
        path.write_bytes(b"not a safetensors file at all" * 10)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "other shape":
        save_file({"U": torch.zeros(5, 5)}, str(path), metadata={"version": "1"})
    else:
        save_file({"U": good}, str(path))
    assert torch.equal(base_vectors(w, tmp_path, "q"), good)
    assert torch.equal(base_vectors(w, tmp_path, "q"), good)  # and the file was rewritten
    assert len(_files(tmp_path)) == 1


def test_a_read_only_cache_costs_only_time(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if (folder / "probe").exists() or _writable(folder):
            pytest.skip("running as a user who can write anywhere")
        assert torch.equal(base_vectors(_weight(), folder, "q"), base_vectors(_weight()))
    finally:
        folder.chmod(0o700)


def _writable(folder):
    try:
        (folder / "probe").write_text("x")
    except OSError:
        return False
    (folder / "probe").unlink()
    return True


def _reference(update, weight, top_k=10, threshold=0.5):
    """Everything in float64 through LAPACK's full SVD."""
    w = weight.double()
    delta = update.matrix().double()
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    r = min(update.rank, mw.numerical_rank(S))
    values = {"update_norm_relative": float(torch.linalg.norm(delta) / torch.linalg.norm(w)),
              "update_stable_rank": float((S ** 2).sum() / S[0] ** 2),
              "update_effective_rank": mw.effective_rank(S),
              "amplification_factor": float(torch.linalg.norm(S) / torch.linalg.norm(U[:, :r].T @ w @ Vh[:r].T))}
    base = torch.linalg.svd(w, full_matrices=False)[0]
    tuned = torch.linalg.svd(w + delta, full_matrices=False)[0][:, :top_k]
    values["intruder_dimensions"] = float(((base.T @ tuned).abs().amax(0) < threshold).sum())
    return values


@pytest.mark.parametrize("kind", ["lora", "dora", "intruder"])
def test_the_fast_route_agrees_with_float64_svds(kind):
    gen = torch.Generator().manual_seed(3)
    w = _weight(2)
    B = 1e-3 * torch.randn(320, 4, generator=gen)  # a small update: σ₁(ΔW) ≈ 0.36 σ₁(W)
    A = torch.randn(4, 300, generator=gen)
    magnitude = None
    if kind == "dora":
        magnitude = torch.linalg.vector_norm(w.double() + B.double() @ A.double(), dim=1).float()
        magnitude *= 1 + 0.01 * torch.randn(320, generator=gen)
    if kind == "intruder":  # a new direction, larger than W's spectrum, mostly outside W's column space
        base_u, _, base_vh = torch.linalg.svd(w.double())
        outside = base_u[:, 310]  # W is 320 x 300: its left singular vectors span 300 dimensions only
        B = torch.zeros(320, 4)
        B[:, 0] = 2.0 * (0.95 * outside + 0.312 * base_u[:, 200]).float()
        A = torch.zeros(4, 300)
        A[0] = base_vh[200].float()
    update = Update("q", 1, "q", 4, B, A, magnitude, w if magnitude is not None else None)
    got = measure_update(update, w, base_vectors(w)).values
    want = _reference(update, w)
    assert got.keys() == want.keys()
    for metric, value in want.items():
        assert got[metric] == pytest.approx(value, rel=1e-5, abs=1e-9), metric
    assert (got["intruder_dimensions"] > 0) == (kind == "intruder")


def test_the_command_keeps_the_vectors_and_gives_the_same_table_from_them(tiny_runs, tmp_path, monkeypatch):
    import shutil

    import pandas as pd

    from reprtools_cli.main import main

    run = tmp_path / "lora"
    shutil.copytree(tiny_runs / "lora", run)
    monkeypatch.setenv("REPRTOOLS_CACHE", str(tmp_path / "cache"))  # a cache of its own (the base stays where it is)
    tables = {}
    for name, extra in [("uncached", ["--no-cache"]), ("first", []), ("cached", [])]:
        with pytest.raises(SystemExit) as done:
            main(["weights", str(run), "-o", str(tmp_path / name), "--no-figures", "-q", *extra])
        assert done.value.code == 0
        tables[name] = pd.read_csv(tmp_path / name / "weights.csv")
        kept = list((tmp_path / "cache" / "weights").rglob("*.safetensors"))
        assert len(kept) == (0 if name == "uncached" else 14)  # 2 blocks x 7 modules of tiny-llama
    pd.testing.assert_frame_equal(tables["first"], tables["cached"])
    pd.testing.assert_frame_equal(tables["uncached"], tables["cached"])


def test_a_base_too_large_for_the_cache_budget_is_measured_without_keeping_anything(tiny_runs, tmp_path, monkeypatch,
                                                                                     capsys):
    """An 8B base's vectors would take ~22 GB: above REPRTOOLS_WEIGHTS_CACHE_GB nothing is kept, it is said, and the
    numbers are those of the cached route."""
    import shutil

    import pandas as pd

    from reprtools.weights import cache_within_budget, weights

    run = tmp_path / "lora"
    shutil.copytree(tiny_runs / "lora", run)
    monkeypatch.setenv("REPRTOOLS_CACHE", str(tmp_path / "cache"))
    kept = weights([run], tmp_path / "kept", figures=False)
    monkeypatch.setenv("REPRTOOLS_WEIGHTS_CACHE_GB", "0")
    shutil.rmtree(tmp_path / "cache" / "weights")
    capsys.readouterr()
    table = weights([run], tmp_path / "over", figures=False)
    assert "more than REPRTOOLS_WEIGHTS_CACHE_GB allows" in capsys.readouterr().err
    assert not (tmp_path / "cache" / "weights").exists() or not list((tmp_path / "cache" / "weights").rglob("*.st*"))
    pd.testing.assert_frame_equal(table.reset_index(drop=True), kept.reset_index(drop=True))

    # the size counted is out x min(out, in) float32 per module, from the module shapes alone
    lin = torch.nn.Sequential(torch.nn.Linear(30, 50), torch.nn.Linear(50, 20))
    fits, size_gb = cache_within_budget(lin, ["0", "1"])
    assert size_gb == pytest.approx((50 * 30 + 20 * 20) * 4 / 1e9) and not fits  # the budget is 0 here
    monkeypatch.setenv("REPRTOOLS_WEIGHTS_CACHE_GB", "lots")
    with pytest.raises(Exception, match="must be a number of gigabytes"):
        cache_within_budget(lin, ["0"])


@pytest.mark.parametrize("idle, omp, expected", [(1.9, None, 2), (0.8, None, 1), (0.0, None, 1), (0.0, "2", 2)])
def test_the_command_uses_the_idle_cores(monkeypatch, idle, omp, expected):
    """``idle`` cores of 2 in the /proc/stat sample (100 jiffies per core between the two reads)."""
    import os

    from reprtools_cli import weights as cli

    samples = iter([(0, 0), (int(100 * idle), 200)])
    monkeypatch.setattr(cli, "_cpu_times", lambda cores: next(samples))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        cli._threads_for_idle_cores(interval=0)
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)


def test_the_cpu_sample_reads_proc_stat():
    import os

    from reprtools_cli.weights import _cpu_times

    if not os.path.exists("/proc/stat") or not hasattr(os, "sched_getaffinity"):
        pytest.skip("no /proc/stat here")
    idle, total = _cpu_times(os.sched_getaffinity(0))
    assert 0 <= idle <= total and total > 0
