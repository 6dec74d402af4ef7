"""The one prompt template used for every model (base models have no chat template), and tokenisation with
the loss on the response only.

Prompt (the ``### Input:`` block is left out when ``input`` is empty)::

    ### Instruction:
    {instruction}

    ### Input:
    {input}

    ### Response:

The response is ``output``, followed by the tokenizer's eos token.
"""

from __future__ import annotations

from reprtools.data.records import Example
from reprtools.errors import ReprtoolsError

#: Prompt with an input block.
PROMPT_TEMPLATE = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
#: Prompt for an example whose input is empty.
PROMPT_TEMPLATE_NO_INPUT = "### Instruction:\n{instruction}\n\n### Response:\n"
#: Label value that the loss ignores (Hugging Face / PyTorch convention).
IGNORE_INDEX = -100


def format_prompt(example: Example) -> str:
    """The prompt text of ``example``."""
    if example.input:
        return PROMPT_TEMPLATE.format(instruction=example.instruction, input=example.input)
    return PROMPT_TEMPLATE_NO_INPUT.format(instruction=example.instruction)


def format_example(example: Example) -> tuple[str, str]:
    """``(prompt, response)``; the response is ``example.output`` (without eos)."""
    return format_prompt(example), example.output


def _prompt_parts(example: Example) -> tuple[str, str, str]:
    """The prompt as (text before the input, the input, text after the input)."""
    if not example.input:
        return format_prompt(example), "", ""
    before, after = PROMPT_TEMPLATE.split("{input}")
    return before.format(instruction=example.instruction), example.input, after


def _ids(tokenizer, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"]) if text else []


def _leading_special(tokenizer, text: str) -> list[int]:
    """The tokens the tokenizer puts before ``text`` (e.g. bos); trailing ones (an eos) are dropped."""
    with_special = _ids(tokenizer, text, True)
    plain = _ids(tokenizer, text, False)
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start:start + len(plain)] == plain:
            return with_special[:start]
    return []


def tokenize_example(tokenizer, example: Example, max_length: int) -> dict[str, list[int]]:
    """Tokenise ``example`` for causal-LM training: ``{"input_ids", "attention_mask", "labels"}`` (lists).

    The sequence is [bos if the tokenizer adds one] + prompt + response + eos.  ``labels`` is ``-100`` over the
    bos and prompt and equals ``input_ids`` over response + eos, so the loss covers the response only.  The
    template text, the input and the response are tokenised separately (without special tokens) and joined.

    If it is longer than ``max_length`` the input is shortened first, by dropping tokens from its middle (its
    start and end, e.g. a question after a passage, are kept), down to at most half of the room left after the
    template; only then is the response cut from its end (dropping the eos).  The template and instruction are
    never cut; :class:`ReprtoolsError` if they alone leave no room for a response token.
    """
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ReprtoolsError(f"max_length must be a positive integer, got {max_length!r}")
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ReprtoolsError("the tokenizer has no eos token; set tokenizer.eos_token before tokenising examples")
    before, body, after = _prompt_parts(example)
    lead = _leading_special(tokenizer, before)
    fixed_before = lead + _ids(tokenizer, before, False)
    fixed_after = _ids(tokenizer, after, False)
    body_ids = _ids(tokenizer, body, False)
    response = _ids(tokenizer, example.output, False) + [eos]

    room = max_length - len(fixed_before) - len(fixed_after)
    if room < 1:
        raise ReprtoolsError(
            f"max_length {max_length} is too small: the prompt template and instruction alone take "
            f"{len(fixed_before) + len(fixed_after)} tokens; raise max_length"
        )
    if len(body_ids) + len(response) > room:
        keep_response = min(len(response), max(room // 2, room - len(body_ids), 1))
        keep_body = min(len(body_ids), room - keep_response)
        response = response[:keep_response]
        head = (keep_body + 1) // 2
        body_ids = body_ids[:head] + body_ids[len(body_ids) - (keep_body - head):] if keep_body else []
    prompt = fixed_before + body_ids + fixed_after
    input_ids = prompt + response
    return {
        "input_ids": input_ids,
        "attention_mask": [1] * len(input_ids),
        "labels": [IGNORE_INDEX] * len(prompt) + response,
    }
