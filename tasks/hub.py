"""Hugging Face Hub task sets, normalised to the local task schema.

These need a network (or a warm HF cache). Nothing in the suite depends on them: every env has a
local, generated alternative, and the error raised offline names it.
"""

from __future__ import annotations

import os
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

from .registry import TaskSetError

Normalizer = Callable[[dict, str, int], dict]


@dataclass(frozen=True)
class HubSet:
    path: str
    config: str | None
    splits: dict[str, str]  # our split -> the hub's split name
    normalize: Normalizer
    local_alternative: str


def _task(name: str, split: str, i: int, question: str, answer: str, **meta: Any) -> dict:
    return {"id": f"hub:{name}/{split}/{i:06d}", "question": question, "answer": answer,
            "split": split, "metadata": {"source": "hub", **meta}}


def _gsm8k(row: dict, split: str, i: int) -> dict:
    solution, _, final = row["answer"].rpartition("####")
    return _task("gsm8k", split, i, row["question"], final.strip().replace(",", ""),
                 answer_type="number", solution=solution.strip())


def _last_boxed(text: str) -> str:
    """The content of the last \\boxed{...}, braces balanced (MATH puts its answer there)."""
    start = text.rfind("\\boxed")
    if start < 0:
        return ""
    i = text.find("{", start)
    if i < 0:
        return ""
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    return ""


def _math(row: dict, split: str, i: int) -> dict:
    return _task("math", split, i, row["problem"], _last_boxed(row["solution"]),
                 answer_type="latex", solution=row["solution"], level=row.get("level", ""),
                 subject=row.get("type", ""))


def _hotpotqa(row: dict, split: str, i: int) -> dict:
    titles = row.get("supporting_facts", {}).get("title", [])
    return _task("hotpotqa", split, i, row["question"], row["answer"], aliases=[row["answer"]],
                 hops=2, supporting_docs=list(dict.fromkeys(titles)), hub_id=row.get("id", ""),
                 difficulty=row.get("level", ""))


def _spider(row: dict, split: str, i: int) -> dict:
    t = _task("spider", split, i, row["question"], row["query"], gold_sql=row["query"],
              ordered=bool(re.search(r"\border\s+by\b", row["query"], re.I)))
    # The hub rows carry no databases: an env needs Spider's database files separately.
    t["db_id"] = row["db_id"]
    return t


def _bird(row: dict, split: str, i: int) -> dict:
    sql = row.get("sql") or row.get("SQL", "")
    t = _task("bird", split, i, row["question"], sql, gold_sql=sql, evidence=row.get("evidence", ""),
              difficulty=row.get("difficulty", ""),
              ordered=bool(re.search(r"\border\s+by\b", sql, re.I)))
    t["db_id"] = row["db_id"]
    return t


HUB_SETS: dict[str, HubSet] = {
    "gsm8k": HubSet("openai/gsm8k", "main", {"train": "train", "heldout": "test"}, _gsm8k, "math"),
    "math": HubSet("DigitalLearningGmbH/MATH-lighteval", "default",
                   {"train": "train", "heldout": "test"}, _math, "math"),
    "hotpotqa": HubSet("hotpotqa/hotpot_qa", "distractor",
                       {"train": "train", "heldout": "validation"}, _hotpotqa, "searchqa"),
    "spider": HubSet("xlangai/spider", None, {"train": "train", "heldout": "validation"}, _spider,
                     "sql"),
    "bird": HubSet("micpst/bird", None, {"heldout": "dev"}, _bird, "sql"),
}


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in {"1", "true", "yes", "on"}
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """A cheap TCP probe, so a machine without network fails in seconds, not after retries."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout_s):
            return True
    except OSError:
        return False


@contextmanager
def _offline_mode(enabled: bool) -> Iterator[None]:
    """Force HF offline mode for one call (a warm cache still serves the data).

    The libraries read the environment once at import, so setting HF_HUB_OFFLINE later has no
    effect by itself; we flip their module-level switches for the duration instead.
    """
    if not enabled:
        yield
        return
    import datasets.config
    import huggingface_hub.constants

    saved = (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved


def load_hub(name: str, split: str) -> list[dict]:
    if name not in HUB_SETS:
        raise TaskSetError(f"unknown hub set 'hub:{name}'; known: "
                           f"{', '.join('hub:' + n for n in sorted(HUB_SETS))}")
    hs = HUB_SETS[name]
    if split not in hs.splits:
        raise TaskSetError(f"'hub:{name}' has no {split!r} split here; it has {sorted(hs.splits)}")
    import datasets

    forced = _offline()
    offline = forced or not _hub_reachable()
    try:
        with _offline_mode(offline):
            ds = datasets.load_dataset(hs.path, hs.config, split=hs.splits[split])
    except Exception as exc:  # datasets raises many types for "no network"; all mean the same here
        why = ("HF offline mode is set (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and it is not in "
               "the HF cache." if forced else
               "The Hub can't be reached and it is not in the HF cache." if offline else
               f"Loading failed with {type(exc).__name__}: {str(exc)[:300]}")
        raise TaskSetError(
            f"'hub:{name}' downloads {hs.path} from the Hugging Face Hub and needs a network. "
            f"{why} Offline, use the local set tasks.load({hs.local_alternative!r}, {split!r}) "
            "instead.") from exc
    return [hs.normalize(dict(row), split, i) for i, row in enumerate(ds)]
