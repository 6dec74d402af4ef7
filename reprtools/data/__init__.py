"""Data for reprtools: training examples and parallel sentences from one registry of sources, mixing, and the
prompt template.

* :func:`load_examples` (training examples) and :func:`load_parallel` (parallel sentences for probing) take a
  source spec: ``demo``, ``tydiqa:DIR``, ``xnli:DIR``, ``jsonl:PATH``, ``flores200:DIR``, ``text:DIR``,
  ``hf:tydiqa``, ``hf:xnli`` or a plain path; :mod:`reprtools.data.sources` holds the registry;
* :class:`Example` and :class:`Dataset` (:mod:`reprtools.data.records`) are what readers return;
* :func:`mix` (:mod:`reprtools.data.mixing`) mixes English with a target language at a fixed ratio;
* :func:`format_prompt` and :func:`tokenize_example` (:mod:`reprtools.data.prompts`) turn examples into tokens.

Languages are canonical codes from :mod:`reprtools.languages`.
"""

from reprtools.data.demo import demo_langs, read_demo
from reprtools.data.flores import read_flores
from reprtools.data.jsonl import read_jsonl
from reprtools.data.mixing import Mix, mix, mix_langs
from reprtools.data.parallel import parallel_sha256
from reprtools.data.prompts import format_example, format_prompt, tokenize_example
from reprtools.data.records import Dataset, Example, SourceFile, ids_sha256
from reprtools.data.sources import SOURCES, Source, load_examples, load_parallel
from reprtools.data.tydiqa import read_tydiqa
from reprtools.data.xnli import read_xnli

__all__ = [
    "Dataset", "Example", "Mix", "SOURCES", "Source", "SourceFile", "demo_langs", "format_example", "format_prompt",
    "ids_sha256", "load_examples", "load_parallel", "mix", "mix_langs", "parallel_sha256", "read_demo",
    "read_flores", "read_jsonl", "read_tydiqa", "read_xnli", "tokenize_example",
]
