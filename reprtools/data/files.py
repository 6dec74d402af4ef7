"""Reading the files every data source shares: UTF-8 text, lines, directories, content hashes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from reprtools.errors import ReprtoolsError


def read_text(path: str | os.PathLike) -> str:
    """Read a UTF-8 text file (a leading BOM is dropped); :class:`ReprtoolsError` if missing or unreadable."""
    p = Path(path)
    if not p.exists():
        raise ReprtoolsError(f"no such file: {p}; check the path")
    if p.is_dir():
        raise ReprtoolsError(f"{p} is a directory; expected a file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ReprtoolsError(f"cannot read {p}: {exc.strerror or exc}; check its permissions") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReprtoolsError(f"{p} is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8") from None


def text_lines(text: str) -> list[str]:
    """Split text into lines on ``\\n`` only (``\\r`` dropped), without a final empty line.

    Unlike :meth:`str.splitlines` this never splits on the Unicode separators that occur inside sentences.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def check_dir(directory: str | os.PathLike, prefix: str, expected: str) -> Path:
    """``directory`` as a :class:`Path`; :class:`ReprtoolsError` unless it is a directory.  ``prefix``
    (``"xnli:"``) and ``expected`` (``"dev-{lang}.tsv"``) name the source in the message."""
    root = Path(directory)
    if not root.exists():
        raise ReprtoolsError(f"no such directory: {root}; point {prefix} at the folder with {expected} files")
    if not root.is_dir():
        raise ReprtoolsError(f"{root} is not a directory; point {prefix} at the folder with {expected} files")
    return root


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
