"""The search tool and its retrievers: real bm25s, the real MiniLM encoder, a real HTTP service."""

import json
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import tools.retrievers as R
from tools import SearchTool, ToolCall, ToolContext, ToolSet
from tools.retrievers import (BM25Retriever, DenseRetriever, HybridRetriever, RemoteRetriever, RetrieverError,
                              corpus_fingerprint, get_encoder, load_corpus, make_retriever)
from tools.search import make_snippet

FACTS = [
    ("obs", "Tellimar Observatory", "Tellimar Observatory houses a large telescope on the Qesh ridge. Astronomers "
                                    "there study stars and distant galaxies."),
    ("harbor", "Quorvane Harbor", "Quorvane Harbor is a fishing port. Its fleet of trawlers lands cod and herring "
                                  "at the quay every dawn."),
    ("bakery", "Vashkel Bakery", "Vashkel Bakery bakes bread and pastries every morning in a wood-fired oven."),
    ("glacier", "Ondrel Glacier", "Ondrel Glacier is a slow river of ice in the Marrow Peaks that has shrunk by "
                                  "a third since 1950."),
    ("volcano", "Mount Pyrrhos", "Mount Pyrrhos is an active volcano whose eruptions pour lava onto the plain."),
    ("school", "Mirelle Conservatory", "Mirelle Conservatory trains violinists, pianists and composers; its "
                                       "orchestra tours every winter."),
    ("rail", "Zentrak Line", "The Zentrak Line is a railway whose trains link Ostrakan with Velmora in two hours."),
    ("library", "Halvorn Library", "Halvorn Library keeps forty thousand books and rare manuscripts in its "
                                   "reading room."),
    ("vineyard", "Essilor Estate", "Essilor Estate grows grapes on terraced slopes and presses them into red wine."),
    ("hospital", "Drovak Infirmary", "Drovak Infirmary employs doctors and nurses who treat patients day and night."),
]


def _filler(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    syll = ["ka", "lo", "mir", "ten", "vos", "ul", "dra", "pel", "quin", "sar", "bet", "nox"]
    rows = []
    for i in range(n):
        name = "".join(rng.choice(syll) for _ in range(3)).capitalize()
        pop = rng.randint(200, 90_000)
        rows.append({"id": f"town-{i}", "title": f"{name} Township",
                     "text": f"{name} Township is a settlement of {pop} people. It was founded in "
                             f"{rng.randint(1100, 1900)} and lies on the {rng.choice(syll).capitalize()} road."})
    return rows


CORPUS = [{"id": i, "title": t, "text": x} for i, t, x in FACTS] + _filler(40)


@pytest.fixture(scope="session")
def encoder():
    return get_encoder()  # loaded once for the whole session


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("emb")


@pytest.fixture(scope="module")
def dense(encoder, cache_dir):
    return DenseRetriever(CORPUS, encoder=encoder, cache_dir=cache_dir)


# ---- corpus ------------------------------------------------------------------------------


def test_load_corpus_from_rows_and_jsonl(tmp_path):
    docs = load_corpus(CORPUS)
    assert docs[0] == {"id": "obs", "title": "Tellimar Observatory", "text": FACTS[0][2]}
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in CORPUS) + "\n\n")
    assert load_corpus(path) == docs and load_corpus(str(path)) is load_corpus(path)  # cached by mtime
    assert corpus_fingerprint(load_corpus(path)) == corpus_fingerprint(docs)
    assert corpus_fingerprint(docs) != corpus_fingerprint(docs[:-1])
    assert load_corpus([{"text": "no id or title"}]) == [{"id": "0", "title": "", "text": "no id or title"}]


@pytest.mark.parametrize("rows,needle", [
    ([], "empty"),
    ([{"id": 1, "title": "x"}], "no 'text'"),
    ([{"id": 1, "text": "a"}, {"id": "1", "text": "b"}], "duplicate document id '1'"),
    (["plain string"], "not an object"),
])
def test_bad_corpora_are_explained(rows, needle):
    with pytest.raises(ValueError, match=needle):
        load_corpus(rows)


def test_bad_corpus_files(tmp_path):
    with pytest.raises(ValueError, match="cannot be read"):
        load_corpus(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "ok"}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        load_corpus(bad)


# ---- BM25 --------------------------------------------------------------------------------


@pytest.mark.parametrize("query,expected", [
    ("Tellimar telescope", "obs"),
    ("cod herring trawlers", "harbor"),
    ("wine grapes", "vineyard"),
    ("Which railway links Ostrakan and Velmora?", "rail"),
    ("glaciers of the Marrow Peaks", "glacier"),  # "glaciers" matches "Glacier" only through stemming
])
def test_bm25_finds_keyword_matches(query, expected):
    rows = BM25Retriever(CORPUS).search(query, 3)
    assert rows[0]["id"] == expected
    assert set(rows[0]) == {"id", "title", "text", "score"} and rows[0]["score"] > 0


def test_bm25_edge_cases_and_cache():
    r = BM25Retriever(CORPUS)
    assert r.search("zzzqqq unknownword", 3) == []  # no shared term: nothing, not random docs
    assert r.search("the of and", 3) == []  # stop words only
    assert r.search("", 3) == [] and r.search("Tellimar", 0) == []
    assert len(r.search("Township", 500)) == 40  # k beyond the corpus is clamped
    t0 = time.perf_counter()
    again = BM25Retriever([dict(d) for d in CORPUS])  # equal content, new objects
    assert again.index is r.index and time.perf_counter() - t0 < 0.5


def test_bm25_builds_a_few_thousand_docs_fast():
    docs = _filler(3000, seed=7)
    t0 = time.perf_counter()
    r = BM25Retriever(docs)
    assert time.perf_counter() - t0 < 10
    assert r.search(docs[1234]["title"], 1)[0]["title"] == docs[1234]["title"]


# ---- dense -------------------------------------------------------------------------------


PARAPHRASES = [
    ("where do scientists look at planets through lenses at night", "obs"),
    ("a shop selling fresh loaves and croissants", "bakery"),
    ("a place where sick people receive medical care", "hospital"),
    ("mountain that erupts molten rock", "volcano"),
    ("a school for musicians", "school"),
]


@pytest.mark.parametrize("query,expected", PARAPHRASES)
def test_dense_finds_paraphrases(dense, query, expected):
    rows = dense.search(query, 3)
    assert rows[0]["id"] == expected, [r["id"] for r in rows]
    assert rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]


def test_dense_embeddings_are_normalised_and_cached_on_disk(dense, encoder, cache_dir, monkeypatch):
    assert dense.embeddings.shape == (len(CORPUS), 384)
    assert np.allclose(np.linalg.norm(dense.embeddings, axis=1), 1.0, atol=1e-5)
    assert dense.cache_file.exists() and dense.cache_file.parent == cache_dir
    R._EMB_CACHE.clear()
    calls = []
    real = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda texts: calls.append(len(texts)) or real(texts))
    again = DenseRetriever(CORPUS, encoder=encoder, cache_dir=cache_dir)
    assert calls == [] and np.array_equal(again.embeddings, dense.embeddings)  # read from disk
    assert again.search("a school for musicians", 1)[0]["id"] == "school" and calls == [1]
    R._EMB_CACHE.clear()
    dense.cache_file.write_bytes(b"torn file")  # a corrupt cache is recomputed, not trusted
    calls.clear()
    fixed = DenseRetriever(CORPUS, encoder=encoder, cache_dir=cache_dir)
    assert calls == [len(CORPUS)] and np.allclose(fixed.embeddings, dense.embeddings, atol=1e-5)


def test_dense_embedding_matches_batch_independent(encoder):
    texts = ["short", "a much longer sentence about glaciers and the ice that forms them over years"]
    both = encoder.encode(texts)
    alone = encoder.encode(texts[:1])
    assert np.allclose(both[0], alone[0], atol=1e-5)  # padding must not leak into the mean


# ---- hybrid ------------------------------------------------------------------------------


# RRF rewards documents both retrievers find, so the paraphrases here share a word or two with
# their document; a paraphrase with no word in common can lose to documents BM25 matches weakly.
@pytest.mark.parametrize("query,expected", [("Tellimar telescope", "obs"), ("cod herring trawlers", "harbor"),
                                            ("mountain that erupts molten rock", "volcano"),
                                            ("astronomers looking at faraway galaxies", "obs"),
                                            ("old books kept for readers", "library")])
def test_hybrid_finds_both_kinds(dense, query, expected):
    h = HybridRetriever([BM25Retriever(CORPUS), dense])
    rows = h.search(query, 3)
    assert expected in [r["id"] for r in rows[:2]], rows
    assert rows[0]["score"] >= rows[-1]["score"]


def test_make_retriever(dense, cache_dir):
    assert isinstance(make_retriever(CORPUS, "bm25"), BM25Retriever)
    assert isinstance(make_retriever(CORPUS, "hybrid", cache_dir=cache_dir), HybridRetriever)
    with pytest.raises(ValueError, match="choose one of"):
        make_retriever(CORPUS, "magic")
    with pytest.raises(ValueError, match="needs url="):
        make_retriever(backend="remote")
    with pytest.raises(ValueError, match="needs a corpus"):
        make_retriever(None, "bm25")


# ---- the tool ----------------------------------------------------------------------------


async def test_search_tool_output_format():
    tool = SearchTool(CORPUS, backend="bm25", top_k=2)
    r = await tool({"query": "Quorvane fishing port or a township"}, ToolContext())
    assert not r.error and r.metrics["results"] == 2
    first = r.text.split("\n\n")[0]
    assert first == f"[1] Quorvane Harbor\n{FACTS[1][2]}"
    assert r.text.split("\n\n")[1].startswith("[2] ")
    r = await tool({"query": "Tellimar", "top_k": 1}, ToolContext())
    assert r.text.startswith("[1] Tellimar Observatory") and "[2]" not in r.text
    r = await tool({"query": "xyzzy plugh"}, ToolContext())
    assert not r.error and r.text.startswith('No results for "xyzzy plugh"')


@pytest.mark.parametrize("backend,query,title", [
    ("dense", "a place where sick people receive medical care", "Drovak Infirmary"),
    ("hybrid", "mountain that erupts molten rock", "Mount Pyrrhos"),
])
async def test_search_tool_dense_backends(dense, cache_dir, backend, query, title):
    tool = SearchTool(CORPUS, backend=backend, cache_dir=cache_dir)
    r = await tool({"query": query}, ToolContext())
    assert r.text.startswith(f"[1] {title}\n"), r.text


async def test_search_tool_arguments_are_validated():
    ts = ToolSet([SearchTool(CORPUS, max_top_k=5)])
    bad = await ts.call([ToolCall("search", {"query": "x", "top_k": 50}), ToolCall("search", {}),
                         ToolCall("search", {"q": "x"}), ToolCall("search", {"query": "Township", "top_k": "2"})],
                        ToolContext())
    assert "must be at most 5" in bad[0].text
    assert "missing required argument 'query'" in bad[1].text
    assert "unknown argument 'q'" in bad[2].text
    assert not bad[3].error and "[2]" in bad[3].text


def test_search_tool_construction_errors():
    with pytest.raises(ValueError, match="unknown backend"):
        SearchTool(CORPUS, backend="elastic")
    with pytest.raises(ValueError, match="top_k"):
        SearchTool(CORPUS, top_k=0)
    with pytest.raises(ValueError, match="empty"):
        SearchTool([])


async def test_lazy_build_and_retriever_property():
    tool = SearchTool(CORPUS, lazy=True)
    assert tool._retriever is None
    r = await tool({"query": "Halvorn manuscripts"}, ToolContext())
    assert r.text.startswith("[1] Halvorn Library")
    assert tool.retriever.search("Halvorn", 1)[0]["id"] == "library"


def test_snippet_is_centred_on_the_match():
    text = " ".join(f"Sentence {i} is about nothing in particular." for i in range(40)) + \
        " The treasure is buried under the old oak. " + "Padding text follows here. " * 40
    s = make_snippet(text, "where is the treasure buried", 120)
    assert "treasure is buried" in s and s.startswith("… ") and s.endswith(" …") and len(s) <= 125
    assert make_snippet("short text", "q", 100) == "short text"
    assert make_snippet("a  b\n\nc", "q", 100) == "a b c"


# ---- remote ------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/slow":
            time.sleep(1.0)
        if self.path == "/broken":
            return self._send(200, b"<html>not json</html>")
        if self.path == "/fail":
            return self._send(503, b"index rebuilding")
        if self.path == "/shape":
            return self._send(200, json.dumps({"hits": []}).encode())
        words = set(body["query"].lower().split())
        hits = [{"id": d["id"], "title": d["title"], "text": d["text"]} for d in CORPUS
                if words & set(d["text"].lower().replace(".", "").split())]
        self._send(200, json.dumps({"results": hits[: body["top_k"]]}).encode())

    def _send(self, code, payload):
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (the timeout test): expected

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


async def test_remote_backend_against_a_real_server(server):
    tool = SearchTool(backend="remote", url=server + "/search", top_k=2)
    r = await tool({"query": "herring"}, ToolContext())
    assert not r.error and r.text.startswith("[1] Quorvane Harbor")
    rows = RemoteRetriever(server + "/search").search("telescope", 5)  # the sync path
    assert [x["id"] for x in rows] == ["obs"]
    r = await tool({"query": "nothingmatches"}, ToolContext())
    assert not r.error and "No results" in r.text


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_remote_backend_errors(server):
    ctx = ToolContext()
    down = SearchTool(backend="remote", url=f"http://127.0.0.1:{_closed_port()}/search", timeout_s=2)
    t0 = time.perf_counter()
    r = await down({"query": "x"}, ctx)
    assert r.error and "unreachable" in r.text and "Search failed" in r.text
    assert time.perf_counter() - t0 < 2
    r = await SearchTool(backend="remote", url=server + "/slow", timeout_s=0.2)({"query": "x"}, ctx)
    assert r.error and "did not answer within 0.2 s" in r.text
    r = await SearchTool(backend="remote", url=server + "/broken")({"query": "x"}, ctx)
    assert r.error and "not JSON" in r.text
    r = await SearchTool(backend="remote", url=server + "/fail")({"query": "x"}, ctx)
    assert r.error and "HTTP 503: index rebuilding" in r.text
    r = await SearchTool(backend="remote", url=server + "/shape")({"query": "x"}, ctx)
    assert r.error and "no 'results' list" in r.text
    with pytest.raises(RetrieverError, match="unreachable"):
        RemoteRetriever(f"http://127.0.0.1:{_closed_port()}/").search("x", 1)
    with pytest.raises(ValueError, match="http://"):
        RemoteRetriever("ftp://example")
