"""``agent_rl/SearchQA-v0``: single- and multi-hop questions over a generated corpus."""

from __future__ import annotations

import functools
from typing import Any

from .rewards import exact_match, token_f1
from .tool_env import Episode, ToolEnv

SYSTEM_PROMPT = (
    "You answer questions about a private encyclopedia you have never seen. Use the search tool "
    "to find facts (a question may need several searches, one per fact), then call the answer "
    "tool with only the answer (a name, place or value).\n\n"
    "To call a tool, write\n<tool_call>\n{{\"name\": <tool name>, \"arguments\": <JSON object>}}\n</tool_call>\n\n"
    "Tools:\n{tool_list}"
)


def search_reward(task: dict[str, Any], ep: Episode) -> dict[str, float]:
    """Exact match against the answer and its aliases; token F1 reported alongside."""
    golds = [str(task["answer"]), *task.get("metadata", {}).get("aliases", [])]
    pred = ep.answer or ""
    em = exact_match(pred, golds) if ep.answer is not None else 0.0
    return {"total": em, "exact_match": em, "f1": token_f1(pred, golds) if ep.answer is not None else 0.0}


@functools.lru_cache(maxsize=4)
def _retriever(backend: str):
    # One index per process: every env instance searches the same corpus.
    import tasks as task_sets
    from tools.retrievers import make_retriever

    return make_retriever(task_sets.load_corpus("searchqa"), backend=backend)


def make_search_env(split: str = "train", *, backend: str = "bm25", top_k: int = 3, max_turns: int = 8,
                    tasks: Any = None, **kwargs: Any) -> ToolEnv:
    """Single- and multi-hop QA over a generated encyclopedia of invented entities, with a
    search tool (bm25, dense, hybrid); reward: exact match with the answer or an alias."""
    import tasks as task_sets
    from tools.search import SearchTool

    tool = SearchTool(retriever=_retriever(backend), top_k=top_k)
    return ToolEnv(
        [tool],
        tasks if tasks is not None else (lambda s: task_sets.load("searchqa", s)),
        search_reward,
        split=split, system_prompt=SYSTEM_PROMPT, max_turns=max_turns, name="agent_rl/SearchQA-v0", **kwargs,
    )
