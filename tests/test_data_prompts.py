"""The prompt template and response-only tokenisation, with a real (offline, byte-level) tokenizer."""

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from reprtools.data import Example, format_example, format_prompt, tokenize_example
from reprtools.data.prompts import IGNORE_INDEX
from reprtools.errors import ReprtoolsError

QA = Example("q1", "sw", "Answer the question.", "Passage: Nairobi ni mji mkuu.\nQuestion: Mji mkuu?", "Nairobi")
NO_INPUT = Example("d1", "hi", "Translate to Hindi: hello", "", "नमस्ते")


def make_tokenizer(add_bos=True):
    """Byte-level BPE without merges: one token per UTF-8 byte, plus <pad>, <s>, </s>."""
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    if add_bos:
        backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def test_template():
    assert format_prompt(QA) == (
        "### Instruction:\nAnswer the question.\n\n### Input:\nPassage: Nairobi ni mji mkuu.\nQuestion: Mji mkuu?"
        "\n\n### Response:\n")
    assert format_example(NO_INPUT) == ("### Instruction:\nTranslate to Hindi: hello\n\n### Response:\n", "नमस्ते")


@pytest.mark.parametrize("example", [QA, NO_INPUT])
@pytest.mark.parametrize("add_bos", [True, False])
def test_labels_mask_the_prompt(example, add_bos):
    tok = make_tokenizer(add_bos)
    out = tokenize_example(tok, example, max_length=512)
    prompt, response = format_example(example)
    n_prompt = len(tok(prompt)["input_ids"])
    n_response = len(tok(response, add_special_tokens=False)["input_ids"]) + 1
    ids, labels = out["input_ids"], out["labels"]
    assert len(ids) == len(labels) == len(out["attention_mask"]) == n_prompt + n_response
    assert out["attention_mask"] == [1] * len(ids)
    assert (ids[0] == tok.bos_token_id) == add_bos
    assert ids[-1] == tok.eos_token_id
    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]
    assert tok.decode(ids, skip_special_tokens=True) == prompt + response
    assert tok.decode(ids[n_prompt:], skip_special_tokens=True) == response


def test_long_input_is_cut_in_the_middle_and_response_kept():
    tok = make_tokenizer()
    long = Example("x", "en", "Answer.", "Passage: " + "blah " * 200 + "\nQuestion: Who?", "Ann")
    out = tokenize_example(tok, long, max_length=120)
    ids, labels = out["input_ids"], out["labels"]
    assert len(ids) == 120
    text = tok.decode(ids, skip_special_tokens=True)
    assert text.startswith("### Instruction:\nAnswer.\n\n### Input:\nPassage: blah")
    assert "Question: Who?\n\n### Response:\nAnn" in text and text.endswith("Ann")
    assert ids[-1] == tok.eos_token_id
    n_response = len(tok("Ann", add_special_tokens=False)["input_ids"]) + 1
    assert labels[-n_response:] == ids[-n_response:]
    assert labels[:-n_response] == [IGNORE_INDEX] * (120 - n_response)


def test_long_response_is_truncated_without_eos():
    tok = make_tokenizer()
    example = Example("y", "en", "Write.", "", "word " * 100)
    out = tokenize_example(tok, example, max_length=60)
    ids, labels = out["input_ids"], out["labels"]
    assert len(ids) == 60 and tok.eos_token_id not in ids
    n_prompt = len(tok(format_prompt(example))["input_ids"])
    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt and labels[n_prompt:] == ids[n_prompt:]
    assert n_prompt < 60


def test_both_long_share_the_room():
    tok = make_tokenizer()
    example = Example("z", "en", "Go.", "in " * 100, "out " * 100)
    out = tokenize_example(tok, example, max_length=100)
    n_response = sum(label != IGNORE_INDEX for label in out["labels"])
    assert len(out["input_ids"]) == 100 and n_response > 0
    fixed = len(tok("### Instruction:\nGo.\n\n### Input:\n")["input_ids"]) + len(
        tok("\n\n### Response:\n", add_special_tokens=False)["input_ids"])
    assert n_response == (100 - fixed) // 2


def test_max_length_too_small_or_no_eos():
    tok = make_tokenizer()
    with pytest.raises(ReprtoolsError, match="max_length 10 is too small"):
        tokenize_example(tok, QA, max_length=10)
    with pytest.raises(ReprtoolsError, match="max_length must be a positive integer"):
        tokenize_example(tok, QA, max_length=0)
    tok_no_eos = make_tokenizer()
    tok_no_eos.eos_token = None
    with pytest.raises(ReprtoolsError, match="no eos token"):
        tokenize_example(tok_no_eos, QA, max_length=100)
