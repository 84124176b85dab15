"""File and hashing helpers shared by every task-set builder.

Everything here exists to make builds reproducible (byte-identical output for the same generator
version) and safe under concurrency (several pytest workers or training processes may build or
read the same cache at once).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable

SPLITS = ("train", "heldout")


def canonical_json(obj: Any) -> str:
    """One fixed serialisation, so hashes and files never depend on dict insertion order."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def stable_hash(text: str) -> int:
    """A hash that, unlike ``hash()``, is the same in every process (PYTHONHASHSEED-proof)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def split_for(key: str, heldout_fraction: float, salt: str) -> str:
    """Assign a template instance to a split by hashing its parameters.

    Hashing the *parameters* (not the phrasing) means two wordings of one instance always land
    in the same split, so held-out can never contain a rephrased training problem.
    """
    bucket = stable_hash(f"{salt}\x00{key}") % 10_000
    return "heldout" if bucket < int(heldout_fraction * 10_000) else "train"


_WS = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")


def normalize_question(text: str) -> str:
    """Lower-case, punctuation-free, single-spaced: the text-level dedupe key."""
    return _WS.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def jsonl_bytes(rows: Iterable[dict]) -> bytes:
    return "".join(canonical_json(r) + "\n" for r in rows).encode("utf-8")


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    atomic_write_bytes(path, jsonl_bytes(rows))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
