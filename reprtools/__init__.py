"""reprtools: train the five PEFT adapters under one controlled multilingual setup, and probe what they change."""

__version__ = "0.1.0"

from reprtools.errors import ReprtoolsError  # noqa: E402

__all__ = ["ReprtoolsError", "__version__"]
