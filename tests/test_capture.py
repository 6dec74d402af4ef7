"""Tests of reprtools.capture: hooks, layer semantics, mask pooling (own tokens / all / last), padding, PEFT, dtypes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reprtools.capture import POOLS, TraceDict, capture, find_layers, first_tensor, resolve_device
from reprtools.errors import ReprtoolsError

SHORT = "Hi there."
LONG = [
    "A considerably longer sentence, so that the short one is padded by dozens of tokens in a shared batch.",
    "Another long sentence: padding must never leak into the pooled vector of the short sentence at all!",
]
SENTENCES = [
    "The cat sat on the mat.",
    "Bonjour!",
    "हिन्दी वाक्य",  # multi-byte: many byte tokens
    "A somewhat longer English sentence that takes a few more tokens.",
    "ok",
    "Kiswahili ni lugha ya Afrika Mashariki.",
    "Quite short",
]
TINY = ("tiny-llama", "tiny-gemma", "tiny-qwen", "tiny-mistral")


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def reprtools_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REPRTOOLS_CACHE", str(tmp_path_factory.mktemp("reprtools-cache")))
        yield


def _load(name: str, dtype=None):
    from reprtools.models import load_model

    loaded = load_model(name, dtype=dtype)
    loaded.model.eval()
    return loaded.model, loaded.tokenizer


@pytest.fixture(scope="session")
def models(reprtools_cache):
    """Read-only tiny models, loaded once: name -> (model, tokenizer)."""
    return {name: _load(name) for name in TINY}


@pytest.fixture
def tiny(models, request):
    model, tokenizer = models[request.param]
    side = tokenizer.padding_side
    yield model, tokenizer
    tokenizer.padding_side = side


# ----------------------------------------------------------------------------------------------- reference
def _final_norm(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model.norm


def _reference_layers(model, tokenizer, sentence: str) -> list[torch.Tensor]:
    """Per-token hidden states (tokens, hidden) of layer 0..L for one unpadded sentence, computed independently.

    Layers 0..L-1 come from ``output_hidden_states``; HF replaces its last entry by the *normed* final state, so
    the last block's own output is taken from a pre-hook on the final norm (and checked against that entry).
    """
    enc = tokenizer([sentence], return_tensors="pt")
    seen = {}
    handle = _final_norm(model).register_forward_pre_hook(lambda mod, args: seen.setdefault("pre", args[0]))
    try:
        with torch.no_grad():
            out = model(**enc, output_hidden_states=True, use_cache=False)
    finally:
        handle.remove()
    hs = out.hidden_states
    pre = seen["pre"]
    with torch.no_grad():
        torch.testing.assert_close(_final_norm(model)(pre), hs[-1])  # transformers' last entry is post-norm
    return [h[0].float() for h in hs[:-1]] + [pre[0].float()]


def _bos_only_special(tokenizer, sentence: str) -> None:
    """The tiny models' byte tokenizer adds exactly one token, a BOS in front (what the references rely on)."""
    ids = tokenizer(sentence)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and tokenizer.bos_token_id not in ids[1:]
    assert len(ids) == 1 + len(sentence.encode("utf-8"))  # one byte token per byte, nothing else added


def _pool_ref(h: torch.Tensor, pool: str) -> torch.Tensor:
    """float64 reference pooling of one unpadded sentence's (tokens, hidden) states whose token 0 is the BOS."""
    h = h.double()
    if pool == "mean":
        return h[1:].mean(dim=0)  # the sentence's own tokens: everything after the BOS
    if pool == "mean-all":
        return h.mean(dim=0)
    return h[-1]


# ----------------------------------------------------------------------------------------- layer semantics
@pytest.mark.parametrize("tiny", TINY, indirect=True)
def test_shape_and_dtype(tiny):
    model, tokenizer = tiny
    out = capture(model, tokenizer, SENTENCES[:3], batch_size=2)
    assert out.shape == (model.config.num_hidden_layers + 1, 3, model.config.hidden_size)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    assert torch.isfinite(out).all()
    out.add_(1.0)  # a normal tensor, not an inference-mode one


@pytest.mark.parametrize("tiny", TINY, indirect=True)
@pytest.mark.parametrize("pool", POOLS)
def test_matches_output_hidden_states(tiny, pool):
    model, tokenizer = tiny
    assert POOLS == ("mean", "mean-all", "last")
    got = capture(model, tokenizer, SENTENCES, pool=pool, batch_size=3)
    for j, sentence in enumerate(SENTENCES):
        _bos_only_special(tokenizer, sentence)
        ref = _reference_layers(model, tokenizer, sentence)
        assert len(ref) == got.shape[0]
        for i, h in enumerate(ref):
            want = _pool_ref(h, pool)
            torch.testing.assert_close(got[i, j].double(), want, atol=1e-5, rtol=1e-5, msg=f"layer {i} sentence {j}")


@pytest.mark.parametrize("tiny", ["tiny-llama", "tiny-gemma"], indirect=True)
def test_layer0_is_embedding_module_output(tiny):
    model, tokenizer = tiny
    enc = tokenizer([SHORT], return_tensors="pt")
    with torch.no_grad():
        emb = model.get_input_embeddings()(enc["input_ids"])[0]
    got = capture(model, tokenizer, [SHORT])
    torch.testing.assert_close(got[0, 0], emb[1:].mean(dim=0))  # token 0 is the BOS
    if model.config.model_type.startswith("gemma"):  # the scaled embedding, not the raw table rows
        raw = model.get_input_embeddings().weight[enc["input_ids"][0, 1:]].mean(dim=0)
        assert not torch.allclose(got[0, 0], raw)


@pytest.mark.parametrize("tiny", ["tiny-llama", "tiny-qwen"], indirect=True)
@pytest.mark.parametrize("side", ["left", "right"])
def test_mask_weighted_mean_by_hand(tiny, side):
    """Each pool against a float64 mean over a padded batch's output_hidden_states, masks built by hand."""
    model, tokenizer = tiny
    tokenizer.padding_side = side
    batch = [SHORT, *LONG]
    enc = tokenizer(batch, padding=True, return_tensors="pt")
    real = enc["attention_mask"].bool()
    assert (~real).any()
    # the byte tokenizer adds one BOS, the first real token of each row (these sentences have no literal "<s>")
    bos = real & (enc["input_ids"] == tokenizer.bos_token_id)
    assert (bos.sum(1) == 1).all() and (bos & (real.cumsum(1) == 1)).sum() == len(batch)
    own = real & ~bos
    positions = (real.long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        hs = model(**enc, position_ids=positions, output_hidden_states=True, use_cache=False).hidden_states
    last_pos = torch.where(real, torch.arange(real.shape[1]), -1).amax(1)
    got = {pool: capture(model, tokenizer, batch, pool=pool, batch_size=8) for pool in POOLS}
    for i, h in enumerate(hs[:-1]):
        h = h.double()
        for pool, mask in (("mean", own), ("mean-all", real)):
            m = mask.double()[..., None]
            torch.testing.assert_close(got[pool][i].double(), (h * m).sum(1) / m.sum(1), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got["last"][i].double(), h[torch.arange(len(batch)), last_pos], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got["mean"], got["mean-all"])  # the BOS really is left out


class _MassiveBOS:
    """Give every captured layer of a model a huge constant vector at the BOS position, like the "massive
    activations" of Sun et al. 2024 ("Massive Activations in Large Language Models").

    A forward hook adds ``scale * direction_i`` to layer i's output at each row's first real token (the BOS);
    a pre-hook on the next module (the next block, or the final norm after the last one) hands it the original
    output again, so the model computes exactly what it did before and only the states the capture sees at
    the BOS differ.  Hooks registered before :func:`capture` runs see outputs before capture's hooks do.
    """

    def __init__(self, model, scale: float):
        emb, blocks = find_layers(model)
        producers = [emb, *blocks]
        consumers = [*blocks, _final_norm(model)]
        gen = torch.Generator().manual_seed(1)
        self.bumps = [scale * torch.randn(model.config.hidden_size, generator=gen) for _ in producers]
        self.saved: dict[int, torch.Tensor] = {}
        self.seen: dict[str, torch.Tensor] = {}
        self.handles = [model.register_forward_pre_hook(self._remember_mask, with_kwargs=True)]
        for i, (producer, consumer) in enumerate(zip(producers, consumers)):
            self.handles.append(producer.register_forward_hook(self._add(i)))
            self.handles.append(consumer.register_forward_pre_hook(self._restore(i)))

    def _remember_mask(self, module, args, kwargs):
        self.seen["mask"] = kwargs["attention_mask"]

    def _add(self, i: int):
        def hook(module, args, output):
            h = first_tensor(output)
            self.saved[i] = h
            mask = self.seen["mask"]
            bos = ((mask.cumsum(dim=1) == 1) & (mask == 1)).unsqueeze(-1)  # the first real token of each row
            bumped = h + bos * self.bumps[i].to(h.dtype)
            return bumped if isinstance(output, torch.Tensor) else (bumped, *output[1:])

        return hook

    def _restore(self, i: int):
        def hook(module, args):
            return (self.saved.pop(i), *args[1:])

        return hook

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize("tiny", ["tiny-llama", "tiny-gemma"], indirect=True)
@pytest.mark.parametrize("side", ["left", "right"])
def test_huge_constant_bos_state_does_not_reach_mean(tiny, side):
    """pool="mean" is blind to the BOS state (identical with and without a huge BOS vector in every layer);
    "mean-all" moves by exactly bump / (real tokens), i.e. by sentence length along one direction."""
    model, tokenizer = tiny
    tokenizer.padding_side = side
    batch = [SHORT, *LONG, SENTENCES[2]]
    plain = {pool: capture(model, tokenizer, batch, pool=pool, batch_size=3) for pool in POOLS}
    with _MassiveBOS(model, scale=1e4) as massive:
        bumped = {pool: capture(model, tokenizer, batch, pool=pool, batch_size=3) for pool in POOLS}
        assert not massive.saved  # every bumped output was handed back to the model
    torch.testing.assert_close(bumped["mean"], plain["mean"], atol=0, rtol=0)
    torch.testing.assert_close(bumped["last"], plain["last"], atol=0, rtol=0)  # the BOS is never last here
    lengths = torch.tensor([len(ids) for ids in tokenizer(batch)["input_ids"]], dtype=torch.float64)
    shift = torch.stack(massive.bumps).double()[:, None, :] / lengths[None, :, None]  # (layers, sentences, hidden)
    diff = bumped["mean-all"].double() - plain["mean-all"].double()
    assert diff.abs().amax() > 10  # it dominates: the layers' own values are O(1)
    torch.testing.assert_close(diff, shift, atol=2e-3, rtol=1e-4)  # float32 rounding of 1e4-sized sums


@pytest.mark.parametrize("tiny", ["tiny-llama", "tiny-gemma"], indirect=True)
def test_special_tokens_from_the_tokenizer_not_from_ids(tiny):
    """A literal "<s>" in the text has the BOS id but is the sentence's own token; only the added BOS is dropped."""
    model, tokenizer = tiny
    sentence = "x <s> y"
    ids = tokenizer(sentence)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 2 and ids[0] == tokenizer.bos_token_id
    got = capture(model, tokenizer, [sentence, SHORT])
    for i, h in enumerate(_reference_layers(model, tokenizer, sentence)):
        torch.testing.assert_close(got[i, 0].double(), _pool_ref(h, "mean"), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ padding
@pytest.mark.parametrize("tiny", TINY, indirect=True)
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("pool", POOLS)
def test_padding_invariance(tiny, side, pool):
    model, tokenizer = tiny
    tokenizer.padding_side = side
    enc = tokenizer([SHORT, *LONG], padding=True)
    assert len(enc["input_ids"][0]) - sum(enc["attention_mask"][0]) > 50  # heavily padded
    alone = capture(model, tokenizer, [SHORT], pool=pool)
    batched = capture(model, tokenizer, [LONG[0], SHORT, LONG[1]], pool=pool, batch_size=16)
    torch.testing.assert_close(batched[:, 1], alone[:, 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("tiny", ["tiny-llama"], indirect=True)
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("where", ["padding", "padding+bos"])
def test_nonfinite_excluded_positions_never_leak(tiny, side, bad, where):
    """Garbage (nan/inf) at excluded positions of a layer (padding; for pool="mean" also the BOS, e.g. a massive
    activation that overflowed in fp16) must not reach the pooled vectors."""
    model, tokenizer = tiny
    tokenizer.padding_side = side
    _, blocks = find_layers(model)
    pools = POOLS if where == "padding" else ("mean",)
    alone = {pool: capture(model, tokenizer, [SHORT], pool=pool) for pool in pools}
    seen = {}

    def remember_mask(module, args, kwargs):
        seen["mask"] = kwargs["attention_mask"]

    def poison(module, args, output):
        out = output.clone()
        mask = seen["mask"]
        excluded = mask == 0
        if where == "padding+bos":
            excluded |= (mask.cumsum(dim=1) == 1) & (mask == 1)  # the first real token is the BOS
        out[excluded] = bad
        return out

    handles = [
        model.register_forward_pre_hook(remember_mask, with_kwargs=True),
        blocks[-1].register_forward_hook(poison),  # the last block: nothing after it mixes tokens
    ]
    try:
        for pool in pools:
            batched = capture(model, tokenizer, [SHORT, *LONG], pool=pool)
            assert torch.isfinite(batched).all()
            torch.testing.assert_close(batched[:, 0], alone[pool][:, 0], atol=1e-5, rtol=0)
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_invariance_absolute_positions(models, side):
    """A GPT-2 style model (learned absolute positions, blocks in transformer.h) needs mask-derived position ids."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tokenizer = models["tiny-llama"]
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=320, n_embd=64, n_layer=2, n_head=4, n_positions=256, pad_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    assert find_layers(model)[1] == list(model.transformer.h)
    old = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        for pool in POOLS:
            alone = capture(model, tokenizer, [SHORT], pool=pool)
            batched = capture(model, tokenizer, [*LONG, SHORT], pool=pool)
            torch.testing.assert_close(batched[:, 2], alone[:, 0], atol=1e-5, rtol=0)
    finally:
        tokenizer.padding_side = old


@pytest.mark.parametrize("tiny", ["tiny-llama", "tiny-gemma"], indirect=True)
@pytest.mark.parametrize("side", ["left", "right"])
def test_order_preserved_after_length_sort(tiny, side):
    model, tokenizer = tiny
    tokenizer.padding_side = side
    order = [3, 0, 6, 2, 5, 1, 4]
    sentences = [SENTENCES[k] for k in order]
    got = capture(model, tokenizer, sentences, batch_size=3)
    for j, sentence in enumerate(sentences):
        one = capture(model, tokenizer, [sentence], batch_size=1)
        torch.testing.assert_close(got[:, j], one[:, 0], atol=1e-5, rtol=0)
    assert not torch.allclose(got[-1, 0], got[-1, 1])  # rows really are different sentences
    dup = capture(model, tokenizer, [SHORT, SHORT, LONG[0], SHORT], batch_size=2)
    torch.testing.assert_close(dup[:, 0], dup[:, 3], atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------------- hooks
def _hook_counts(model):
    emb, blocks = find_layers(model)
    return [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in (emb, *blocks)]


@pytest.mark.parametrize("tiny", ["tiny-llama"], indirect=True)
def test_hooks_removed_after_capture_and_errors(tiny):
    model, tokenizer = tiny
    before = _hook_counts(model)
    capture(model, tokenizer, SENTENCES, batch_size=2)
    assert _hook_counts(model) == before

    emb, blocks = find_layers(model)
    calls = []
    with pytest.raises(RuntimeError, match="boom"):
        with TraceDict({"emb": emb, "b0": blocks[0]}, lambda name, out: calls.append(name)) as trace:
            assert len(emb._forward_hooks) == before[0] + 1
            with torch.no_grad():
                model(**tokenizer([SHORT], return_tensors="pt"))
            assert calls == ["emb", "b0"] and trace.modules["emb"] is emb
            raise RuntimeError("boom")
    assert _hook_counts(model) == before

    def explode(module, args):
        raise RuntimeError("block failed")

    model.train()
    handle = blocks[-1].register_forward_pre_hook(explode)
    try:
        with pytest.raises(RuntimeError, match="block failed"):
            capture(model, tokenizer, SENTENCES, batch_size=2)
    finally:
        handle.remove()
    assert _hook_counts(model) == before
    assert model.training  # the caller's mode is restored, also after an error
    model.eval()


def test_trace_dict_can_replace_outputs(models):
    model, tokenizer = models["tiny-llama"]
    emb, _ = find_layers(model)
    enc = tokenizer([SHORT], return_tensors="pt")
    with torch.no_grad():
        plain = model(**enc).logits
        with TraceDict({"emb": emb}, lambda name, out: torch.zeros_like(out)):
            zeroed = model(**enc).logits
        again = model(**enc).logits
    assert not torch.allclose(plain, zeroed)
    torch.testing.assert_close(plain, again)


# ---------------------------------------------------------------------------------------------------- PEFT
def _peft_model(method: str):
    from peft import AdaLoraConfig, LoraConfig, VeraConfig, get_peft_model

    model, tokenizer = _load("tiny-llama")
    base = capture(model, tokenizer, SENTENCES, batch_size=4)  # before wrapping: PiSSA rewrites base weights
    torch.manual_seed(0)
    common = dict(target_modules="all-linear")
    if method == "lora":
        config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **common)
    elif method == "dora":
        config = LoraConfig(r=4, lora_alpha=8, use_dora=True, init_lora_weights=False, **common)
    elif method == "vera":
        config = VeraConfig(r=8, init_weights=False, **common)
    elif method == "adalora":
        config = AdaLoraConfig(init_r=4, target_r=2, total_step=10, **common)
    elif method == "pissa":
        config = LoraConfig(r=4, lora_alpha=4, init_lora_weights="pissa", **common)
    else:
        raise AssertionError(method)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # make sure the adapter changes the function
        for name, param in peft_model.named_parameters():
            if method == "adalora" and "lora_E" in name:
                param.normal_(0.0, 1.0)
            elif method == "pissa" and "lora_B" in name:
                param.add_(torch.randn_like(param) * 0.2)
    peft_model.eval()
    return base, peft_model, tokenizer


@pytest.mark.parametrize("method", ["lora", "dora", "vera", "adalora", "pissa"])
def test_peft_wrapped(reprtools_cache, method):
    base, peft_model, tokenizer = _peft_model(method)
    emb, blocks = find_layers(peft_model)
    inner_emb, inner_blocks = find_layers(peft_model.get_base_model())
    assert emb is inner_emb and blocks == inner_blocks and len(blocks) == 2
    before = _hook_counts(peft_model)

    got = capture(peft_model, tokenizer, SENTENCES, batch_size=4)
    assert got.shape == base.shape
    torch.testing.assert_close(got[0], base[0], atol=0, rtol=0)  # embeddings are not adapted
    for i in range(1, got.shape[0]):  # every block has adapted linears, the first one in block 0
        assert (got[i] - base[i]).abs().max() > 1e-3, f"layer {i} unchanged by {method}"
    assert _hook_counts(peft_model) == before
    assert not any(getattr(m, "merged", False) for m in peft_model.modules())  # still unmerged

    for j in (0, 3):  # the hooks see what the wrapped model computes
        ref = _reference_layers(peft_model, tokenizer, SENTENCES[j])
        for i, h in enumerate(ref):
            torch.testing.assert_close(got[i, j].double(), _pool_ref(h, "mean"), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------------- dtype
def test_bf16_model_pools_in_float32(reprtools_cache, models):
    model32, tokenizer = models["tiny-llama"]
    model16, _ = _load("tiny-llama", dtype=torch.bfloat16)
    assert next(model16.parameters()).dtype == torch.bfloat16
    got = capture(model16, tokenizer, SENTENCES, batch_size=3)
    assert got.dtype == torch.float32
    ref32 = capture(model32, tokenizer, SENTENCES, batch_size=3)
    scale = ref32.abs().amax(dim=-1, keepdim=True)
    assert ((got - ref32).abs() / scale).max() < 0.05  # bf16 tolerance

    # the mean of the bf16 hidden states is taken in float32 (a bf16 mean would be off by ~1e-2 relative)
    for j in (0, 3):
        ref = _reference_layers(model16, tokenizer, SENTENCES[j])
        for i, h in enumerate(ref):
            torch.testing.assert_close(got[i, j], h.float()[1:].mean(dim=0), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------ layer finding
class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        return (x + self.lin(x),)  # a tuple, like older HF blocks


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.heads = nn.ModuleList([nn.Linear(8, 8), nn.ReLU()])  # mixed classes: not the blocks
        self.stack = nn.ModuleList([_Block() for _ in range(3)])
        self.short = nn.ModuleList([_Block()])

    def get_input_embeddings(self):
        return self.emb

    def forward(self, input_ids, attention_mask=None, **kwargs):
        h = self.emb(input_ids)
        for block in self.stack:
            h = block(h)[0]
        return h


def test_find_layers_fallback_and_tuple_outputs():
    toy = _Toy()
    emb, blocks = find_layers(toy)
    assert emb is toy.emb and blocks == list(toy.stack)

    class Tok:  # just enough tokenizer for capture
        pad_token_id = 0

        def __call__(self, texts, padding=False, truncation=True, max_length=256, return_tensors=None):
            ids = [[1 + (ord(c) % 9) for c in t][:max_length] for t in texts]
            width = max(map(len, ids))
            pad = (lambda xs: xs + [0] * (width - len(xs))) if padding else (lambda xs: xs)
            masks = [pad([1] * len(x)) for x in ids]
            ids = [pad(x) for x in ids]
            if return_tensors == "pt":
                return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(masks)}
            return {"input_ids": ids, "attention_mask": masks}

    out = capture(toy, Tok(), ["abc", "abcdefgh"], batch_size=2)
    assert out.shape == (4, 2, 8)
    with pytest.raises(ReprtoolsError, match="no tokens"):  # this tokenizer adds no BOS: "" is empty
        capture(toy, Tok(), ["abc", ""])
    with torch.no_grad():
        h = toy.emb(torch.tensor([[1 + (ord(c) % 9) for c in "abc"]]))
        for i, block in enumerate(toy.stack):
            h = block(h)[0]
            torch.testing.assert_close(out[i + 1, 0], h[0].mean(0))

    class BosTok(Tok):  # prepends a BOS (id 9) and cannot return a special-tokens mask: all_special_ids decides
        all_special_ids = [0, 3, 9]
        unk_token_id = 3  # unk stands for text ("e" maps to 3 here): never taken for an added token

        def __call__(self, texts, padding=False, truncation=True, max_length=256, return_tensors=None):
            enc = super().__call__(texts, padding=False, truncation=truncation, max_length=max_length - 1)
            ids = [[9, *x] for x in enc["input_ids"]]
            width = max(map(len, ids))
            pad = (lambda xs: xs + [0] * (width - len(xs))) if padding else (lambda xs: xs)
            return {"input_ids": [pad(x) for x in ids], "attention_mask": [pad([1] * len(x)) for x in ids]}

    texts = ["ace", "acdefghij", "e"]  # no b, k or t: those would map to 9, the BOS id
    got = capture(toy, BosTok(), texts, batch_size=3)
    for j, text in enumerate(texts):
        ids = [9] + [1 + (ord(c) % 9) for c in text]
        with torch.no_grad():
            h = toy.emb(torch.tensor([ids]))
            for i, block in enumerate(toy.stack):
                h = block(h)[0]
                want = h[0, 1:].double().mean(0)  # the BOS left out
                torch.testing.assert_close(got[i + 1, j].double(), want, atol=1e-6, rtol=1e-5)
    with pytest.raises(ReprtoolsError, match="no tokens of its own"):
        capture(toy, BosTok(), ["ace", ""])


def test_find_layers_errors():
    with pytest.raises(ReprtoolsError, match="embedding"):
        find_layers(nn.Linear(2, 2))

    class NoBlocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(3, 2)

        def get_input_embeddings(self):
            return self.emb

    with pytest.raises(ReprtoolsError, match="blocks"):
        find_layers(NoBlocks())


@pytest.mark.parametrize("tiny", ["tiny-llama", "tiny-gemma", "tiny-qwen", "tiny-mistral"], indirect=True)
def test_find_layers_real_models(tiny):
    model, _ = tiny
    emb, blocks = find_layers(model)
    assert emb is model.get_input_embeddings()
    assert blocks == list(model.model.layers)


# ---------------------------------------------------------------------------------------- input checking
def test_bad_input(models):
    model, tokenizer = models["tiny-llama"]
    with pytest.raises(ReprtoolsError, match="empty"):
        capture(model, tokenizer, [])
    with pytest.raises(ReprtoolsError, match="pool"):
        capture(model, tokenizer, [SHORT], pool="max")
    with pytest.raises(ReprtoolsError, match="list of strings"):
        capture(model, tokenizer, SHORT)
    with pytest.raises(ReprtoolsError, match="not a string"):
        capture(model, tokenizer, [SHORT, None])
    with pytest.raises(ReprtoolsError, match="batch_size"):
        capture(model, tokenizer, [SHORT], batch_size=0)
    with pytest.raises(ReprtoolsError, match="max_length"):
        capture(model, tokenizer, [SHORT], max_length=0)
    with pytest.raises(ReprtoolsError, match="not available|unknown device"):
        capture(model, tokenizer, [SHORT], device="nonsense")


@pytest.mark.parametrize("pool", POOLS)
def test_empty_string_and_truncation(models, pool):
    """A sentence left with only special tokens (BOS) has nothing of its own to pool, whatever the pool."""
    model, tokenizer = models["tiny-llama"]
    with pytest.raises(ReprtoolsError, match=r"sentence '' has no tokens of its own, only special .*; remove it$"):
        capture(model, tokenizer, [SHORT, ""], pool=pool)
    with pytest.raises(ReprtoolsError, match=r"'Hi there\.' has no tokens of its own: .*max_length=1 .*max_length$"):
        capture(model, tokenizer, [SHORT], pool=pool, max_length=1)  # truncated to its BOS
    cut = capture(model, tokenizer, [LONG[0]], pool=pool, max_length=8)
    head = tokenizer.decode(tokenizer(LONG[0])["input_ids"][1:8])
    torch.testing.assert_close(cut, capture(model, tokenizer, [head], pool=pool), atol=1e-5, rtol=0)


def test_progress_bar(models, capsys):
    model, tokenizer = models["tiny-llama"]
    out = capture(model, tokenizer, SENTENCES, batch_size=2, progress=True)
    assert out.shape[1] == len(SENTENCES)
    assert "capture" in capsys.readouterr().err


def test_an_unavailable_device_is_refused_before_anything_runs(models):
    model, tokenizer = models["tiny-llama"]
    device = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU: never available
    with pytest.raises(ReprtoolsError, match="not available"):
        capture(model, tokenizer, [SHORT], device=device)
    assert next(model.parameters()).device.type == "cpu"


# ----------------------------------------------------------------------------------------------- devices
def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    auto = resolve_device("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    elif torch.backends.mps.is_available():
        assert auto.type == "mps"
    else:
        assert auto == torch.device("cpu")
    assert resolve_device(None) == auto
    with pytest.raises(ReprtoolsError, match="unknown device"):
        resolve_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ReprtoolsError, match="not available"):
            resolve_device("cuda")
        with pytest.raises(ReprtoolsError, match="not available"):
            resolve_device("cuda:1")
    else:
        with pytest.raises(ReprtoolsError, match="not available"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    if not torch.backends.mps.is_available():
        with pytest.raises(ReprtoolsError, match="not available"):
            resolve_device("mps")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_capture_matches_cpu(reprtools_cache):
    model, tokenizer = _load("tiny-llama")
    cpu = capture(model, tokenizer, SENTENCES, batch_size=3)
    gpu = capture(model, tokenizer, SENTENCES, batch_size=3, device="cuda")
    assert gpu.device.type == "cpu" and gpu.dtype == torch.float32
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=1e-4)
