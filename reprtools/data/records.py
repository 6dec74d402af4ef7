"""The one record type every data reader returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Example:
    """One instruction-tuning example.

    ``id`` is unique within its dataset and stable across runs (it is hashed into the run manifest);
    ``lang`` is an ISO 639-1 code (``en``, ``hi``, ``bn``, ``ur``, ``sw``, ``te``, ...);
    ``input`` may be empty.
    """

    id: str
    lang: str
    instruction: str
    input: str
    output: str

    def to_dict(self) -> dict:
        return asdict(self)
