"""Capture per-layer, per-sentence pooled hidden states of a causal LM (base or PEFT-wrapped).

What "layer i" means
--------------------
The result of :func:`capture` has shape ``(num_layers + 1, n_sentences, hidden)``:

* **layer 0** is the output of the model's input-embedding module (``model.get_input_embeddings()``) as its
  ``forward`` returns it.  For Gemma that is the *scaled* embedding (``Gemma3TextScaledWordEmbedding``
  multiplies by ``sqrt(hidden)`` inside its forward).
* **layer i** (``1 <= i <= num_layers``) is the output of transformer block ``i - 1`` (the i-th block), i.e. the
  residual stream after that block.  When a block returns a tuple or a ``ModelOutput`` the first element is
  used.  The last layer is the output of the last block *before* the model's final norm, so it differs from
  ``output_hidden_states=True``'s last entry, which Hugging Face replaces by the normed ``last_hidden_state``.

How pooling works
-----------------
Each layer's ``(batch, tokens, hidden)`` output is reduced inside a forward hook, on the model's device, to one
vector per sentence, using masks from the tokenizer (padding never contributes, whichever side it is on):

* ``pool="mean"`` (default): the mean over the sentence's **own** tokens: not padding, and not the special
  tokens the tokenizer added (BOS, EOS, ...).  In a causal LM the BOS state is the same for every sentence (it
  attends only to itself), and in the middle layers of many LMs, Gemma 3 among them, it carries "massive
  activations" of huge norm (Sun et al. 2024, "Massive Activations in Large Language Models"); a mean that
  includes it is roughly ``c / T + content``, so sentence length along one fixed direction would dominate
  every similarity measure.
* ``pool="mean-all"``: the mean over every non-padding token, special tokens included (what "mean" meant in
  earlier versions; kept for comparison).
* ``pool="last"``: the last non-padding token (possibly a special token, e.g. an EOS the tokenizer appends).

The special tokens are those the tokenizer's own ``special_tokens_mask`` marks (``return_special_tokens_mask``):
the ones its template added, so a literal ``"<s>"`` typed in a sentence still counts as the sentence's own
(checked for the tiny models' byte-level tokenizer and Gemma 3's).  For a tokenizer that cannot return that
mask, the tokens whose ids are in its ``all_special_ids`` (bar ``unk``) count as added.  A sentence left with
no tokens of its own (empty, or truncated down to its BOS) raises :class:`~reprtools.errors.ReprtoolsError`,
whatever the pool: no pool would describe it.

Hidden states are cast to float32 before they are summed (a bf16/fp16 model pools in fp32).  A float32 layer
is mean-pooled with one batched matmul against the 0/1 pooling mask; should a batch's pooled vectors come out
non-finite (a non-finite value at an excluded position, padding or an overflowed BOS, would leak through
``0 * inf``), the batch is re-run leaving excluded positions out by selection (``torch.where``), which is also
how bf16/fp16 layers are always pooled.  Position ids are derived from the attention mask, so a padded sentence
sees the same positions as when it is alone (absolute position embeddings under left padding).  Only the pooled
vectors leave the device, once per batch; the layers' ``(batch, tokens, hidden)`` outputs are never kept.

Public API: :func:`capture`, :func:`find_layers`, :func:`resolve_device` and :class:`TraceDict` (a context
manager that hooks named modules and always removes the hooks on exit).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from reprtools.errors import ReprtoolsError

POOLS = ("mean", "mean-all", "last")
# Bumped whenever what a pool computes changes (2: "mean" leaves out the special tokens), so a cache of pooled
# vectors keyed by the pool's name can include it and never serve vectors pooled the old way.
POOLING_VERSION = 2

__all__ = ["POOLING_VERSION", "POOLS", "TraceDict", "capture", "find_layers", "first_tensor", "resolve_device"]


# ------------------------------------------------------------------------------------------------- devices
def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"`` / ``"cpu"`` / ``"cuda"`` / ``"cuda:1"`` / ``"mps"`` / a :class:`torch.device` into a device.

    ``"auto"`` (or None) picks CUDA when available, then MPS, then the CPU.  A device that does not exist or is
    not available on this machine raises :class:`ReprtoolsError`.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(str(device).strip().lower())
    except (RuntimeError, TypeError, ValueError):
        raise ReprtoolsError(f"unknown device '{device}'; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ReprtoolsError(f"device '{device}' is not available: no CUDA GPU found; use cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ReprtoolsError(
                f"device '{device}' is not available: only {torch.cuda.device_count()} CUDA device(s) found"
            )
        return dev
    if dev.type == "mps":
        if not _mps_available():
            raise ReprtoolsError(f"device '{device}' is not available: MPS is not available here; use cpu or auto")
        return dev
    backend = getattr(torch, dev.type, None)
    is_available = getattr(backend, "is_available", None)
    if callable(is_available) and is_available():
        return dev
    raise ReprtoolsError(f"device '{device}' is not available on this machine; use auto, cpu, cuda or mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


# -------------------------------------------------------------------------------------------------- layers
def _unwrap(model: nn.Module) -> nn.Module:
    """The underlying Hugging Face model of a ``PeftModel`` (or of a bare PEFT tuner); others unchanged."""
    for _ in range(8):
        get_base = getattr(model, "get_base_model", None)
        if callable(get_base):
            inner = get_base()
        elif type(model).__module__.startswith("peft.") and isinstance(getattr(model, "model", None), nn.Module):
            inner = model.model  # a bare tuner (LoraModel, VeraModel, ...)
        else:
            return model
        if inner is model:
            return model
        model = inner
    return model


_BLOCK_PATHS = (
    "model.layers",  # Llama, Mistral, Qwen2, Gemma, Gemma 3 text, Phi-3, ...
    "model.language_model.layers",  # multimodal wrappers (Gemma 3 conditional generation, ...)
    "language_model.model.layers",
    "layers",  # a bare decoder (LlamaModel, ...)
    "transformer.h",  # GPT-2, GPT-J, Falcon, Bloom
    "transformer.layers",
    "gpt_neox.layers",
    "model.decoder.layers",  # OPT
    "transformer.blocks",  # MPT
)


def _get_path(root: nn.Module, path: str):
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _is_block_list(obj) -> bool:
    if not isinstance(obj, nn.ModuleList) or len(obj) == 0:
        return False
    return len({type(child) for child in obj}) == 1


def find_layers(model: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """``(embedding_module, [block_0, ..., block_{L-1}])`` of a causal LM, unwrapping a PEFT model first.

    The embedding is ``model.get_input_embeddings()``.  The blocks are the decoder's ``ModuleList`` (e.g.
    ``model.model.layers``); failing the known locations, the longest ``nn.ModuleList`` whose children all share
    one class.  Raises :class:`ReprtoolsError` when either cannot be found.
    """
    base = _unwrap(model)
    get_emb = getattr(base, "get_input_embeddings", None)
    embedding = get_emb() if callable(get_emb) else None
    if not isinstance(embedding, nn.Module):
        raise ReprtoolsError(
            f"cannot find the input embedding of {type(base).__name__}: it has no get_input_embeddings()"
        )
    blocks = None
    for path in _BLOCK_PATHS:
        candidate = _get_path(base, path)
        if _is_block_list(candidate):
            blocks = candidate
            break
    if blocks is None:
        best = None
        for _, module in base.named_modules():
            if _is_block_list(module) and (best is None or len(module) > len(best)):
                best = module
        blocks = best
    if blocks is None:
        raise ReprtoolsError(
            f"cannot find the transformer blocks of {type(base).__name__}: no nn.ModuleList of same-class blocks"
        )
    blocks = list(blocks)
    # Llama-style models run only the first config.num_hidden_layers blocks
    n = getattr(getattr(base, "config", None), "num_hidden_layers", None)
    if isinstance(n, int) and 0 < n < len(blocks):
        blocks = blocks[:n]
    return embedding, blocks


# --------------------------------------------------------------------------------------------------- hooks
def first_tensor(output) -> torch.Tensor:
    """The hidden-state tensor of a module output: the tensor itself, or the first element of a tuple/ModelOutput."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output:
        return first_tensor(output[0])
    to_tuple = getattr(output, "to_tuple", None)  # transformers ModelOutput
    if callable(to_tuple):
        return first_tensor(to_tuple())
    if isinstance(output, Mapping) and output:
        return first_tensor(next(iter(output.values())))
    raise TypeError(f"cannot find a hidden-state tensor in a module output of type {type(output).__name__}")


class TraceDict:
    """Hook named modules for the duration of a ``with`` block; the hooks are always removed on exit.

    ``on_output(name, output)`` is called after each hooked module's forward with its raw output.  If it
    returns something other than None, that replaces the module's output (like a PyTorch forward hook).
    Hooks are removed when the block exits, also when it exits by an exception, and also if registering a
    later hook fails midway.

    >>> with TraceDict({"emb": emb, "block0": blocks[0]}, lambda name, out: print(name)):
    ...     model(**batch)
    """

    def __init__(self, modules: Mapping[str, nn.Module], on_output: Callable[[str, object], object]):
        self.modules = dict(modules)
        self.on_output = on_output
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str):
        def hook(module, args, output):
            return self.on_output(name, output)

        return hook

    def __enter__(self) -> TraceDict:
        try:
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------- pooling
class _Pooler:
    """Per-batch state shared by the hooks: the masks, and the pooled vectors gathered so far.

    Mean pooling of a float32 layer is one batched matmul with the 0/1 pooling mask (no (batch, tokens, hidden)
    temporary).  That would let a non-finite value at an excluded position leak in (0 * inf = nan), so
    :func:`capture` checks each batch's pooled vectors and re-runs a non-finite batch with ``safe=True``, which
    leaves excluded positions out by selection (``torch.where``), as it always does for bf16/fp16 layers.
    """

    def __init__(self, names: Sequence[str], pool: str):
        self.index = {name: i for i, name in enumerate(names)}
        self.pool = pool
        self.safe = False
        self.pooled: list[torch.Tensor | None] = [None] * len(names)
        self._state: dict[torch.device, tuple] = {}
        self._mask: torch.Tensor | None = None
        self._own: torch.Tensor | None = None

    def start(self, attention_mask: torch.Tensor, own: torch.Tensor, safe: bool = False) -> None:
        """A new batch: ``attention_mask`` marks real tokens, ``own`` the real tokens that are not special."""
        self._mask = attention_mask
        self._own = own
        self._state = {}
        self.safe = safe
        self.pooled = [None] * len(self.pooled)

    def _on(self, device: torch.device) -> tuple:
        """Mask-derived tensors on ``device`` (computed once per batch and device; a model may span devices)."""
        if device not in self._state:
            mask = self._mask.to(device).bool()
            pooled = (self._own if self.pool == "mean" else self._mask).to(device).bool()  # tokens to average
            keep = pooled.unsqueeze(-1)  # (batch, tokens, 1) True at the tokens to average
            weights = pooled.to(torch.float32).unsqueeze(1)  # (batch, 1, tokens) 0/1
            count = pooled.sum(dim=1, keepdim=True).to(torch.float32)  # (batch, 1) tokens averaged per row
            positions = torch.arange(mask.shape[1], device=device)
            last = torch.where(mask, positions, -1).amax(dim=1)  # (batch,) last real token, any padding side
            rows = torch.arange(mask.shape[0], device=device)
            self._state[device] = (keep, weights, count, last, rows)
        return self._state[device]

    def __call__(self, name: str, output) -> None:
        hidden = first_tensor(output)
        if hidden.dim() != 3 or hidden.shape[:2] != self._mask.shape:
            raise ReprtoolsError(
                f"layer '{name}' returned shape {tuple(hidden.shape)}, expected (batch, tokens, hidden) = "
                f"{tuple(self._mask.shape)} + (hidden,)"
            )
        keep, weights, count, last, rows = self._on(hidden.device)
        if self.pool == "last":
            vec = hidden[rows, last].to(torch.float32)
        elif hidden.dtype == torch.float32 and not self.safe:
            vec = torch.bmm(weights, hidden).squeeze(1) / count
        else:  # cast to float32 inside the sum: a bf16/fp16 layer is summed in fp32
            vec = torch.where(keep, hidden, 0).sum(dim=1, dtype=torch.float32) / count
        slot = self.index[name]
        if self.pooled[slot] is not None:
            raise ReprtoolsError(f"layer '{name}' ran twice in one forward pass; cannot tell which output to keep")
        self.pooled[slot] = vec

    def finish(self, names: Sequence[str], device: torch.device) -> torch.Tensor:
        missing = [n for n, v in zip(names, self.pooled) if v is None]
        if missing:
            raise ReprtoolsError(f"the forward pass never ran layer(s) {', '.join(missing)}; cannot capture them")
        sizes = {v.shape[-1] for v in self.pooled}
        if len(sizes) > 1:
            raise ReprtoolsError(f"the layers have different hidden sizes {sorted(sizes)}; cannot stack them")
        stacked = torch.stack([v.to(device) for v in self.pooled])  # (layers, batch, hidden) on the device
        self.pooled = [None] * len(self.pooled)
        return stacked.to("cpu")  # one device->host copy per batch


# ------------------------------------------------------------------------------------------ batches/forward
def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _special_ids(tokenizer) -> set[int]:
    """Fallback for a tokenizer that returns no special-tokens mask: its special ids, bar unk (which is text)."""
    ids = set(getattr(tokenizer, "all_special_ids", None) or ())
    return ids - {getattr(tokenizer, "unk_token_id", None)}


def _tokenize(tokenizer, texts: list[str], max_length: int, padding: bool) -> tuple[list, list, list]:
    """``(input_ids, attention_mask, own)`` as lists of lists; ``own`` is 1 at a real token that is not special.

    The special tokens are those the tokenizer marks in its ``special_tokens_mask`` (the tokens its template
    added: BOS, EOS, ...), else those whose id is in :func:`_special_ids`.  A text without a token of its own
    raises :class:`ReprtoolsError`.
    """
    options = dict(padding=padding, truncation=True, max_length=max_length)
    try:
        enc = tokenizer(texts, return_special_tokens_mask=True, **options)
    except TypeError:  # a tokenizer that does not know the option
        enc = tokenizer(texts, **options)
    ids = enc["input_ids"]
    if "attention_mask" not in enc:
        raise ReprtoolsError("the tokenizer returned no attention_mask; pooling needs one")
    mask = enc["attention_mask"]
    special = enc.get("special_tokens_mask")
    if special is None:
        known = _special_ids(tokenizer)
        special = [[int(t in known) for t in row] for row in ids]
    own = [[int(m == 1 and s == 0) for m, s in zip(mr, sr)] for mr, sr in zip(mask, special)]
    empty = next((j for j, row in enumerate(own) if not any(row)), None)
    if empty is not None:
        text = repr(texts[empty]) if len(texts[empty]) <= 60 else repr(texts[empty][:60]) + "..."
        if len(tokenizer([texts[empty]])["input_ids"][0]) > max_length:
            why = f"once truncated to max_length={max_length} tokens, only special tokens such as BOS are left; "
            raise ReprtoolsError(f"the sentence {text} has no tokens of its own: {why}raise max_length")
        raise ReprtoolsError(
            f"the sentence {text} has no tokens of its own, only special tokens such as BOS; remove it"
        )
    return ids, mask, own


def _length_sorted_batches(tokenizer, sentences: Sequence[str], batch_size: int, max_length: int) -> list[list[int]]:
    """Indices of ``sentences`` grouped into batches of similar token length, longest first.

    Every sentence is tokenised here, so one without tokens of its own fails before any forward pass.
    """
    lengths = [len(row) for row in _tokenize(tokenizer, list(sentences), max_length, padding=False)[0]]
    order = sorted(range(len(sentences)), key=lambda i: -lengths[i])  # stable: ties keep input order
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _encode(
    tokenizer, texts: list[str], max_length: int, device: torch.device
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Tokenise one batch (padded on the tokenizer's side) onto ``device``: ``(model inputs, own-token mask)``.

    The model inputs are ``input_ids`` and ``attention_mask``; the own-token mask (bool, same shape) is True at
    the real tokens that are not special tokens the tokenizer added (see :func:`_tokenize`).
    """
    ids, mask, own = _tokenize(tokenizer, texts, max_length, padding=True)
    inputs = {"input_ids": torch.tensor(ids).to(device), "attention_mask": torch.tensor(mask).to(device)}
    return inputs, torch.tensor(own, dtype=torch.bool).to(device)


def _forward_options(model: nn.Module) -> frozenset[str]:
    """Which optional arguments the (unwrapped) model's forward names explicitly."""
    try:
        params = inspect.signature(_unwrap(model).forward).parameters
    except (TypeError, ValueError):
        return frozenset()
    return frozenset(name for name in ("position_ids", "logits_to_keep") if name in params)


def _forward_kwargs(options: frozenset[str], batch: dict[str, torch.Tensor]) -> dict:
    """Keyword arguments for one capture forward pass: mask-derived position ids, no KV cache, minimal logits."""
    kwargs = dict(batch)
    kwargs["use_cache"] = False
    if "position_ids" in options:
        # positions count real tokens only, so a left-padded sentence sees the same positions as when alone
        kwargs["position_ids"] = (batch["attention_mask"].long().cumsum(dim=-1) - 1).clamp(min=0)
    if "logits_to_keep" in options:
        kwargs["logits_to_keep"] = 1  # the hidden states are all we need; skip the (tokens x vocab) logits
    return kwargs


def _run_batch(model, pooler: _Pooler, names, options, inputs: dict, own: torch.Tensor) -> torch.Tensor:
    """One forward pass with the hooks in place: the batch's pooled vectors, (layers, batch, hidden) on CPU."""
    kwargs = _forward_kwargs(options, inputs)
    dev = inputs["input_ids"].device
    with torch.inference_mode():
        pooler.start(inputs["attention_mask"], own)
        model(**kwargs)
        pooled = pooler.finish(names, dev)
        if pooler.pool != "last" and not torch.isfinite(pooled).all():
            # maybe a non-finite value at an excluded position (padding, a special token) leaked through the
            # matmul: redo the batch leaving those out by selection (non-finite averaged tokens stay as they are)
            pooler.start(inputs["attention_mask"], own, safe=True)
            model(**kwargs)
            pooled = pooler.finish(names, dev)
    return pooled


# ------------------------------------------------------------------------------------------------- capture
def _checked_arguments(tokenizer, sentences, pool: str, batch_size, max_length) -> list[str]:
    """``sentences`` as a list, after checking every argument of :func:`capture` (one-line errors)."""
    if isinstance(sentences, str) or not isinstance(sentences, Sequence):
        raise ReprtoolsError("sentences must be a list of strings, not " + type(sentences).__name__)
    sentences = list(sentences)
    if not sentences:
        raise ReprtoolsError("no sentences to capture: the sentence list is empty")
    bad = next((i for i, s in enumerate(sentences) if not isinstance(s, str)), None)
    if bad is not None:
        raise ReprtoolsError(f"sentence {bad} is a {type(sentences[bad]).__name__}, not a string")
    if pool not in POOLS:
        raise ReprtoolsError(f"unknown pool '{pool}'; use one of: {', '.join(POOLS)}")
    for name, value in (("batch_size", batch_size), ("max_length", max_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ReprtoolsError(f"{name} must be a positive integer, got {value!r}")
    if tokenizer.pad_token_id is None:
        raise ReprtoolsError("the tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos token)")
    return sentences


def capture(
    model: nn.Module,
    tokenizer,
    sentences: list[str],
    *,
    pool: str = "mean",
    batch_size: int = 16,
    max_length: int = 256,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Pooled hidden states of every layer for every sentence: float32 ``(num_layers + 1, n_sentences, hidden)`` on CPU.

    Row ``j`` belongs to ``sentences[j]`` (sentences are run in length-sorted batches for speed; the input order
    is restored).  Layer 0 is the embedding output and layer ``i`` the output of block ``i``; see the module
    docstring for the exact meaning.  ``pool`` is one of :data:`POOLS`:

    * ``"mean"``: the mean over the sentence's own tokens, i.e. neither padding nor the special tokens the
      tokenizer added (BOS, EOS, ...).  BOS is left out because its state is the same for every sentence and,
      in many LMs' middle layers, of huge norm (Sun et al. 2024, "Massive Activations in Large Language
      Models"): a mean including it would mostly measure sentence length;
    * ``"mean-all"``: the mean over every non-padding token, special tokens included;
    * ``"last"``: the last non-padding token (possibly a special token such as an appended EOS).

    A sentence with no tokens of its own after tokenisation and truncation to ``max_length`` raises
    :class:`ReprtoolsError`.  Works on base models and PEFT-wrapped ones (adapters unmerged).

    ``device`` None keeps the model where it is; otherwise it is resolved with :func:`resolve_device` and the
    model is moved there.  The model runs in eval mode (its training mode is restored afterwards) under
    ``torch.inference_mode()`` with ``use_cache=False``.  ``progress=True`` shows a tqdm bar.
    """
    sentences = _checked_arguments(tokenizer, sentences, pool, batch_size, max_length)
    if device is not None:
        model.to(resolve_device(device))
    dev = _model_device(model)

    embedding, blocks = find_layers(model)
    names = ["embedding"] + [f"block{i}" for i in range(len(blocks))]
    modules = dict(zip(names, [embedding, *blocks]))
    pooler = _Pooler(names, pool)
    options = _forward_options(model)
    batches = _length_sorted_batches(tokenizer, sentences, batch_size, max_length)
    out: torch.Tensor | None = None  # allocated outside inference mode so callers may modify it in place

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(sentences), desc="capture", unit="sent")
    was_training = model.training
    model.eval()
    try:
        with TraceDict(modules, pooler):
            for idx in batches:
                inputs, own = _encode(tokenizer, [sentences[i] for i in idx], max_length, dev)
                pooled = _run_batch(model, pooler, names, options, inputs, own)
                if out is None:
                    out = torch.empty((len(names), len(sentences), pooled.shape[-1]), dtype=torch.float32)
                out[:, torch.tensor(idx)] = pooled
                if bar is not None:
                    bar.update(len(idx))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return out

