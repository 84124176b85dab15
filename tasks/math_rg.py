"""Adapters for a few reasoning-gym generators with crisp, exactly checkable answers.

reasoning-gym is a declared dependency, but the math set must still build without it (a bare
environment, an incompatible release): ``available()`` says whether it can be used, and its
version is part of the math set's cache key so a different release rebuilds the set.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .math_families import Problem


@dataclass(frozen=True)
class RGSource:
    name: str
    config: dict[str, Any]
    # The template instance: what makes two items "the same problem" regardless of wording.
    key: Callable[[dict], dict[str, Any]]
    answer_type: str
    difficulty: Callable[[dict], str]


def _by_size(value: int, easy_below: int, hard_from: int) -> str:
    return "easy" if value < easy_below else ("hard" if value >= hard_from else "medium")


SOURCES: tuple[RGSource, ...] = (
    RGSource(
        "basic_arithmetic",
        {"operators": ("+", "-", "*"), "min_terms": 3, "max_terms": 6, "min_digits": 2,
         "max_digits": 5},
        lambda m: {"expression": m["expression"]},
        "integer",
        lambda m: _by_size(m["num_terms"] * m["num_digits"], 10, 20),
    ),
    RGSource(
        "gcd",
        {"min_numbers": 2, "max_numbers": 4, "min_value": 1000, "max_value": 10**7},
        lambda m: {"numbers": sorted(m["numbers"])},
        "integer",
        lambda m: _by_size(len(m["numbers"]), 3, 4),
    ),
    RGSource(
        "lcm",
        {"min_numbers": 2, "max_numbers": 4, "min_value": 10, "max_value": 5000},
        lambda m: {"numbers": sorted(m["numbers"])},
        "integer",
        lambda m: _by_size(len(m["numbers"]), 3, 4),
    ),
    RGSource(
        "prime_factorization",
        {"min_value": 10_000, "max_value": 10**8},
        lambda m: {"number": m["number"]},
        "factorization",
        lambda m: _by_size(m["number"], 10**6, 5 * 10**7),
    ),
    RGSource(
        "count_primes",
        {"min_n": 1, "max_n": 100_000},
        lambda m: {"start": m["start"], "end": m["end"]},
        "integer",
        lambda m: _by_size(m["end"] - m["start"], 10_000, 50_000),
    ),
    RGSource(
        "products",
        {"min_terms": 2, "max_terms": 4, "min_digits": 3, "max_digits": 7, "allow_negation": True},
        lambda m: {"expression": m["expression"]},
        "integer",
        lambda m: _by_size(m["num_terms"] * m["num_digits"], 10, 18),
    ),
    RGSource(
        "fraction_simplification",
        {"min_value": 100, "max_value": 100_000, "min_factor": 2, "max_factor": 1000,
         "styles": ("plain",)},
        lambda m: {"numerator": m["numerator"], "denominator": m["denominator"]},
        "fraction",
        lambda m: _by_size(m["denominator"], 10**5, 10**7),
    ),
)


def available() -> str | None:
    """The installed reasoning-gym version, or None when it can't be imported."""
    try:
        import reasoning_gym  # noqa: F401
        from importlib.metadata import version

        return version("reasoning_gym")
    except Exception:
        return None


_SPACES = re.compile(r"\s+")


def _canonical_answer(answer: str, answer_type: str) -> str:
    text = answer.strip().strip("$").strip()
    if answer_type == "factorization":
        # reasoning-gym writes "2 × 2 × 5"; keep its operator but fix the spacing.
        return " × ".join(p.strip() for p in text.split("×"))
    return _SPACES.sub("", text)


def generate(source: RGSource, seed: int, size: int) -> Iterator[Problem]:
    import reasoning_gym

    dataset = reasoning_gym.create_dataset(source.name, seed=seed, size=size, **source.config)
    for item in dataset:
        meta = item["metadata"]
        answer = _canonical_answer(str(item["answer"]), source.answer_type)
        if source.answer_type == "integer" and not re.fullmatch(r"-?\d+", answer):
            continue  # a non-integer slipped through the config; we only keep exact answers
        if source.answer_type == "fraction" and not re.fullmatch(r"-?\d+/\d+", answer):
            continue
        params = source.key(meta)
        yield Problem(
            question=item["question"].strip(),
            answer=answer,
            answer_type=source.answer_type,
            params=json.loads(json.dumps(params)),  # tuples -> lists, as they will be on disk
            template=f"reasoning_gym/{source.name}",
            difficulty=source.difficulty(meta),
        )
