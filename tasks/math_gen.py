"""Assemble the ``math`` task set from our families and reasoning-gym, and split it.

Split rule: a problem's split is a hash of its template instance (family + parameters), and
the set is deduplicated on that instance *and* on the normalised question text, so held-out
shares neither a problem nor a parameterisation with train.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable, Iterator

from . import math_rg
from ._io import canonical_json, normalize_question, split_for
from .math_families import FAMILIES, Problem

GENERATOR_VERSION = "math-v1"
SEED = 20261122
HELDOUT_FRACTION = 0.15

# (train, heldout) per family. Small parameter spaces get smaller quotas so they fill without
# repeating instances.
DEFAULT_QUOTA = (135, 22)
QUOTAS: dict[str, tuple[int, int]] = {"derangements": (60, 10)}
RG_QUOTA = (90, 15)
MIN_TRAIN, MIN_HELDOUT = 2000, 300


class MathBuildError(RuntimeError):
    pass


def version() -> str:
    rg = math_rg.available()
    return f"{GENERATOR_VERSION}+rg{rg}" if rg else f"{GENERATOR_VERSION}+no-rg"


def _family_stream(fn: Callable[[random.Random], Problem], family: str) -> Iterator[Problem]:
    # One RNG per family (string seeds hash with SHA-512, not hash()): adding or changing a
    # family never reshuffles the others.
    rng = random.Random(f"{SEED}:{family}")
    while True:
        yield fn(rng)


def _rg_stream(source: math_rg.RGSource) -> Iterator[Problem]:
    for round_ in range(50):
        yield from math_rg.generate(source, seed=SEED + 1000 * round_, size=500)


class _Collector:
    def __init__(self) -> None:
        self.rows: dict[str, list[dict]] = {"train": [], "heldout": []}
        self._keys: set[str] = set()
        self._texts: set[str] = set()

    def fill(self, family: str, source: str, stream: Iterator[Problem], quota: tuple[int, int],
             max_draws: int) -> None:
        want = {"train": quota[0], "heldout": quota[1]}
        got = {"train": 0, "heldout": 0}
        for draws, p in enumerate(stream):
            if got == want or draws >= max_draws:
                break
            key = family + "\x00" + canonical_json(p.params)
            text = normalize_question(p.question)
            if key in self._keys or text in self._texts:
                continue
            split = split_for(key, HELDOUT_FRACTION, salt=GENERATOR_VERSION)
            if got[split] >= want[split]:
                continue  # that split is full, and the hash forbids the other one
            self._keys.add(key)
            self._texts.add(text)
            got[split] += 1
            self.rows[split].append({
                "id": f"math/{family}/{sum(got.values()) - 1:05d}",
                "question": p.question,
                "answer": p.answer,
                "split": split,
                "metadata": {
                    "source": source,
                    "family": family,
                    "template": p.template,
                    "difficulty": p.difficulty,
                    "answer_type": p.answer_type,
                    "params": canonical_json(p.params),
                    "extra": canonical_json(p.extra),
                },
            })
        if got != want:
            raise MathBuildError(
                f"math family {family!r} produced {got} unique problems, wanted {want}; widen its "
                f"parameter ranges or lower its quota in tasks/math_gen.py")


def build(out_dir: Path) -> dict[str, list[dict]]:
    col = _Collector()
    for family, fn in FAMILIES.items():
        quota = QUOTAS.get(family, DEFAULT_QUOTA)
        col.fill(family, "agent_rl", _family_stream(fn, family), quota, max_draws=50 * sum(quota))
    if math_rg.available():
        for src in math_rg.SOURCES:
            col.fill(f"rg_{src.name}", "reasoning_gym", _rg_stream(src), RG_QUOTA,
                     max_draws=50 * sum(RG_QUOTA))
    for split, rows in col.rows.items():
        # Mix families so that load(..., limit=n) gives a representative sample.
        random.Random(f"{SEED}:order:{split}").shuffle(rows)
    n_train, n_held = len(col.rows["train"]), len(col.rows["heldout"])
    if n_train < MIN_TRAIN or n_held < MIN_HELDOUT:
        raise MathBuildError(f"math set too small: {n_train} train / {n_held} heldout")
    return col.rows


def params_of(task: dict) -> dict:
    """The parameters a task was generated from (for independent re-checking)."""
    return json.loads(task["metadata"]["params"])
