"""``search``: find passages in a local corpus (BM25, dense, hybrid) or through a remote service.

The agent sees numbered, titled snippets::

    [1] Zanrir Territory
    Zanrir Territory is an administrative region. It covers 3,589 square kilometres. ...

A long passage is cut to the window of sentences that shares most words with the query, so the
agent sees the part that matched rather than just the opening lines.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

from .base import Tool, ToolContext, ToolResult
from .retrievers import BACKENDS, Retriever, RetrieverError, make_retriever

__all__ = ["SearchTool", "format_results", "make_snippet"]

_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def make_snippet(text: str, query: str, max_chars: int) -> str:
    """At most ``max_chars`` of ``text`` (plus ellipses), centred on the sentences that share
    most words with ``query``."""
    text = " ".join(text.split())
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    qwords = {w for w in _WORD.findall(query.lower()) if len(w) > 2}
    starts = [0] + [m.end() for m in _SENTENCE_END.finditer(text)]
    best_start, best_hits = 0, -1
    if qwords:
        for s in starts:
            window = text[s:s + max_chars].lower()
            hits = sum(1 for w in qwords if w in window)
            if hits > best_hits:  # ties keep the earlier window
                best_start, best_hits = s, hits
    window = text[best_start:best_start + max_chars]
    if best_start + max_chars < len(text):
        cut = window.rfind(" ")
        window = (window[:cut] if cut > max_chars // 2 else window).rstrip() + " …"
    return ("… " if best_start > 0 else "") + window


def format_results(rows: list[dict], query: str, snippet_chars: int) -> str:
    blocks = []
    for i, r in enumerate(rows, 1):
        title = r.get("title") or f"(untitled, id {r.get('id')})"
        blocks.append(f"[{i}] {title}\n{make_snippet(r.get('text', ''), query, snippet_chars)}")
    return "\n\n".join(blocks)


class SearchTool(Tool):
    """Search over ``corpus`` (an iterable of ``{"id", "title", "text"}`` or a JSONL path).

    Args:
        corpus: the documents (not needed for ``backend="remote"``).
        backend: ``bm25``, ``dense`` (all-MiniLM-L6-v2), ``hybrid`` (RRF of both) or ``remote``.
        top_k: results per query when the agent doesn't ask for a number.
        snippet_chars: characters of each passage shown.
        max_top_k: the most results the agent may ask for.
        url: the service's endpoint, for ``remote``.
        timeout_s: the remote service's time limit.
        retriever: use this retriever instead of building one (``corpus``/``backend`` ignored).
        lazy: build the index on the first call (in a worker thread) instead of now.
    """

    name = "search"

    def __init__(self, corpus: Any = None, backend: str = "bm25", top_k: int = 3, snippet_chars: int = 400, *,
                 max_top_k: int = 10, url: str | None = None, timeout_s: float = 10.0,
                 retriever: Retriever | None = None, name: str = "search", description: str | None = None,
                 cache_dir: Any = True, lazy: bool = False) -> None:
        if retriever is None and backend not in BACKENDS:
            raise ValueError(f"SearchTool: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if not 1 <= top_k <= max_top_k:
            raise ValueError(f"SearchTool: top_k must be between 1 and max_top_k ({max_top_k}), got {top_k}")
        self.backend = retriever.name if retriever is not None else backend
        self.top_k, self.max_top_k, self.snippet_chars = top_k, max_top_k, snippet_chars
        self.name = name
        self.description = description or (
            "Search the knowledge base. Returns the best-matching passages, numbered, each with its "
            "title. Use specific keywords or names; search again with other words if nothing fits.")
        self.parameters = {
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "description": "what to search for"},
                "top_k": {"type": "integer", "minimum": 1, "maximum": max_top_k,
                          "description": f"how many results to return (default {top_k})"},
            },
            "required": ["query"],
            "additionalProperties": False,
        }
        self._make = lambda: make_retriever(corpus, backend, url=url, timeout_s=timeout_s, cache_dir=cache_dir)
        self._retriever = retriever
        self._build_lock = threading.Lock()
        if retriever is None and (not lazy or backend == "remote"):
            self._retriever = self._make()  # errors in the corpus surface here, not mid-episode

    @property
    def retriever(self) -> Retriever:
        """The underlying retriever (built now if ``lazy``), e.g. for benchmarks."""
        if self._retriever is None:
            with self._build_lock:
                if self._retriever is None:
                    self._retriever = self._make()
        return self._retriever

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        query = args["query"].strip()
        k = int(args.get("top_k") or self.top_k)
        if not query:
            return ToolResult.fail("The query is blank. Give some keywords to search for.")
        t0 = time.perf_counter()
        try:
            retriever = self._retriever or await asyncio.to_thread(lambda: self.retriever)
            rows = await retriever.asearch(query, k)
        except RetrieverError as e:
            return ToolResult.fail(f"Search failed: {e}.", search_s=time.perf_counter() - t0)
        metrics = {"results": len(rows), "search_s": time.perf_counter() - t0}
        if not rows:
            return ToolResult(f'No results for "{query}". Try different or fewer keywords.', metrics=metrics)
        return ToolResult(format_results(rows, query, self.snippet_chars), metrics=metrics)
