"""The tiny study the study tests share: its TOML (one model, LoRA, Swahili at 0% and 50%, 2 training steps, 4
eval items) and a folder with very short XNLI items in en and sw beside it."""

from pathlib import Path

from reprtools.data.xnli import LABELS

ROWS = 20  # 4 held out per language (holdout 0.2)

TINY_SPEC = """
[study]
name = "tiny"
output_dir = "out"
models = ["tiny-llama"]
methods = ["lora"]
ratios = [0, 0.5]
seeds = [0]
num_examples = 8

[[tasks]]
name = "xnli"
data = "xnli:xnli"
langs = ["sw"]

[train]
max_steps = 2
batch_size = 4
max_length = 160

[eval]
langs = ["target", "en"]
limit = 4
bootstrap = 0

[probe]
data = "demo"
langs = ["en", "target"]
max_sentences = 5
"""


def write_study(root: Path, text: str) -> Path:
    """``root/tiny.toml`` holding ``text``, with the XNLI folder it reads; returns the file's path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "xnli").mkdir(exist_ok=True)
    for lang, (p, h) in {"en": ("A {}.", "B {}."), "sw": ("Paka {}.", "Mbwa {}.")}.items():
        rows = "".join(f"{p.format(i)}\t{h.format(i)}\t{LABELS[i % 3]}\n" for i in range(ROWS))
        (root / "xnli" / f"dev-{lang}.tsv").write_text(rows, encoding="utf-8")
    (root / "tiny.toml").write_text(text, encoding="utf-8")
    return root / "tiny.toml"
