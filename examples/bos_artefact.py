"""The BOS artefact that `--pool mean` avoids, measured on the default model (Gemma 3 270M).

In a causal LM the BOS state is the same for every sentence, and in Gemma 3's middle layers it has a huge norm
(Sun et al., 2024, "Massive Activations in Large Language Models").  Averaged in (``mean-all``), it makes the
middle layers look alike and inflates cross-lingual similarity.  Run: ``python examples/bos_artefact.py
[FLORES_DIR]`` (default ``../shared/data/flores200``; ``demo`` uses the built-in sentences).
"""

import sys
from pathlib import Path

import numpy as np

from reprtools.capture import capture
from reprtools.data import load_parallel
from reprtools.measures import cka_linear, cka_linear_matrix
from reprtools.models import load_model


def main(source: str) -> None:
    lm = load_model("gemma-3-270m")
    sentences = load_parallel(source, "en,hi", max_sentences=64)
    for pool in ("mean-all", "mean"):
        reps = {lang: capture(lm.model, lm.tokenizer, s, pool=pool).numpy() for lang, s in sentences.items()}
        to_layer9 = cka_linear_matrix(reps["en"])[4:12, 9]
        print(f"{pool:>8}: linear CKA of layers 4-11 to layer 9 (en): {np.round(to_layer9, 2)}")
        print(f"{pool:>8}: en-hi linear CKA at layer 3 {cka_linear(reps['en'][3], reps['hi'][3]):.2f}, "
              f"at layer 8 {cka_linear(reps['en'][8], reps['hi'][8]):.2f}")


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "flores200"
    arg = sys.argv[1] if len(sys.argv) > 1 else f"flores200:{default}"
    main(arg)
