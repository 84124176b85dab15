"""Task sets: sizes, disjoint splits, independently re-checked answers, loading, determinism.

One session-scoped build into a private cache (AGENT_RL_CACHE) serves every test.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

sympy = pytest.importorskip("sympy")

import tasks  # noqa: E402
from tasks import registry  # noqa: E402
from tasks._io import normalize_question  # noqa: E402
from tasks.sql_dbs import HELDOUT_DBS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MINIMUMS = {"math": (2000, 300), "searchqa": (1000, 200), "sql": (1000, 200)}


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("agent-rl-tasks")
    old = os.environ.get("AGENT_RL_CACHE")
    os.environ["AGENT_RL_CACHE"] = str(root)
    try:
        for name in tasks.names():
            tasks.build(name)
        yield root
    finally:
        if old is None:
            os.environ.pop("AGENT_RL_CACHE", None)
        else:
            os.environ["AGENT_RL_CACHE"] = old


@pytest.fixture(scope="session")
def data(cache) -> dict[str, dict[str, list[dict]]]:
    return {n: {s: tasks.load(n, s) for s in tasks.SPLITS} for n in tasks.names()}


def _sample(rows: list[dict], k: int, seed: int = 0) -> list[dict]:
    return rows if len(rows) <= k else random.Random(seed).sample(rows, k)


# --- structure ----------------------------------------------------------------------------------


def test_names_and_sizes(data):
    assert set(tasks.names()) == {"math", "searchqa", "sql"}
    for name, (n_train, n_held) in MINIMUMS.items():
        assert len(data[name]["train"]) >= n_train, name
        assert len(data[name]["heldout"]) >= n_held, name


def test_schema_and_unique_ids(data):
    for name, splits in data.items():
        ids = [r["id"] for s in splits.values() for r in s]
        assert len(ids) == len(set(ids)), f"duplicate ids in {name}"
        for split, rows in splits.items():
            for r in rows:
                assert r["id"].startswith(name + "/")
                assert r["split"] == split
                assert isinstance(r["question"], str) and r["question"].strip()
                assert isinstance(r["answer"], str) and r["answer"].strip()
                assert isinstance(r["metadata"], dict)


def test_splits_disjoint_ids_and_text(data):
    for name, splits in data.items():
        train_ids = {r["id"] for r in splits["train"]}
        assert not train_ids & {r["id"] for r in splits["heldout"]}, name
        train_q = {normalize_question(r["question"]) for r in splits["train"]}
        held_q = {normalize_question(r["question"]) for r in splits["heldout"]}
        assert not train_q & held_q, f"{name}: held-out question text also in train"


def test_math_splits_disjoint_by_template_instance(data):
    key = lambda r: (r["metadata"]["family"], r["metadata"]["params"])  # noqa: E731
    train = collections.Counter(key(r) for r in data["math"]["train"])
    held = collections.Counter(key(r) for r in data["math"]["heldout"])
    assert not set(train) & set(held)
    assert max(train.values()) == 1 and max(held.values()) == 1  # no instance asked twice


def test_search_splits_disjoint(data):
    tr, he = data["searchqa"]["train"], data["searchqa"]["heldout"]
    inst = lambda r: (r["metadata"]["template"], r["metadata"]["subject"])  # noqa: E731
    assert not {inst(r) for r in tr} & {inst(r) for r in he}
    # Held-out answers are entities never used as an answer in train.
    tr_ans = {r["metadata"]["answer_entity"] for r in tr} - {""}
    he_ans = {r["metadata"]["answer_entity"] for r in he} - {""}
    assert he_ans and not tr_ans & he_ans


def test_sql_split_by_database(data):
    tr_dbs = {r["db_id"] for r in data["sql"]["train"]}
    he_dbs = {r["db_id"] for r in data["sql"]["heldout"]}
    assert he_dbs == set(HELDOUT_DBS) and not tr_dbs & he_dbs
    assert len(tr_dbs) + len(he_dbs) >= 8
    assert set(tasks.sql_db_ids("heldout")) == he_dbs and set(tasks.sql_db_ids("train")) == tr_dbs


def test_limit_and_errors(cache):
    assert len(tasks.load("math", "heldout", limit=7)) == 7
    with pytest.raises(tasks.TaskSetError, match="heldout"):
        tasks.load("math", "test")
    with pytest.raises(tasks.TaskSetError, match="unknown task set"):
        tasks.load("nope")
    with pytest.raises(tasks.TaskSetError, match="unknown SQL database"):
        tasks.sql_db_path("nope")


# --- math answers, recomputed another way --------------------------------------------------------


def _jdn(iso: str) -> int:
    """Julian day number from the Gregorian calendar (Fliegel & Van Flandern), not datetime."""
    y, m, d = map(int, iso.split("-"))
    a = (14 - m) // 12
    y2, m2 = y + 4800 - a, m + 12 * a - 3
    return d + (153 * m2 + 2) // 5 + 365 * y2 + y2 // 4 - y2 // 100 + y2 // 400 - 32045


def _from_jdn(j: int) -> str:
    a = j + 32044
    b = (4 * a + 3) // 146097
    c = a - 146097 * b // 4
    d = (4 * c + 3) // 1461
    e = c - 1461 * d // 4
    m = (5 * e + 2) // 153
    day = e - (153 * m + 2) // 5 + 1
    month = m + 3 - 12 * (m // 10)
    year = 100 * b + d - 4800 + m // 10
    return f"{year:04d}-{month:02d}-{day:02d}"


def _zeller(iso: str) -> str:
    y, m, d = map(int, iso.split("-"))
    if m < 3:
        m, y = m + 12, y - 1
    h = (d + 13 * (m + 1) // 5 + y % 100 + (y % 100) // 4 + (y // 100) // 4 + 5 * (y // 100)) % 7
    return ["Saturday", "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday"][h]


def _square_multiply(a: int, e: int, m: int) -> int:
    result, a = 1 % m, a % m
    while e:
        if e & 1:
            result = result * a % m
        a, e = a * a % m, e >> 1
    return result


def _count_bounded(k: int, n: int, lower: int) -> int:
    ways = [1] + [0] * n  # ways[s]: tuples of the variables so far summing to s
    for _ in range(k):
        ways = [sum(ways[s - v] for v in range(lower, s + 1)) for s in range(n + 1)]
    return ways[n]


def _divisible_count(limit: int, divs: list[int]) -> int | None:
    period = functools.reduce(sympy.ilcm, divs)
    if period > 300_000:
        return None  # too long to enumerate; other samples cover the family
    hits = [any(x % d == 0 for d in divs) for x in range(1, period + 1)]
    full, rest = divmod(limit, period)
    return full * sum(hits) + sum(hits[:rest])


def _frac(v) -> str:
    v = sympy.Rational(v)
    return f"{v.p}/{v.q}"


def _recompute(task: dict) -> str | None:
    md = task["metadata"]
    fam, p = md["family"], json.loads(md["params"])
    I = sympy.Integer  # noqa: E741
    if fam == "bigint_mul":
        v = I(p["a"]) * I(p["b"]) - (I(p["c"]) if p["op"] == "mul_sub" else 0)
    elif fam == "bigint_power":
        v = I(p["base"]) ** p["exp"]
    elif fam == "digit_sum":
        n = sympy.factorial(p["n"]) if p["kind"] == "factorial" else I(p["base"]) ** p["exp"]
        v = sum(sympy.ntheory.digits(n)[1:])
    elif fam == "modexp":
        v = _square_multiply(p["a"], p["e"], p["m"])
    elif fam == "modinv":
        v = sympy.mod_inverse(p["a"], p["m"])
    elif fam == "crt":
        v = sympy.ntheory.modular.crt(p["moduli"], p["residues"])[0]
    elif fam == "nth_prime":
        v = sympy.prime(p["n"])
    elif fam == "prime_sum":
        v = sum(sympy.primerange(p["lo"], p["hi"] + 1))
    elif fam == "divisor_function":
        v = {"count": sympy.divisor_count, "sum": sympy.divisor_sigma,
             "totient": sympy.totient}[p["kind"]](p["n"])
    elif fam == "gcd_big":
        v = (sympy.gcd if p["op"] == "gcd" else sympy.lcm)(p["a"], p["b"])
    elif fam == "binomial":
        if p["kind"] == "choose":
            v = sympy.binomial(p["n"], p["k"])
        else:
            x = sympy.Symbol("x")
            v = sympy.Poly((p["a"] * x + p["b"]) ** p["n"], x).coeff_monomial(x ** p["k"])
    elif fam == "arrangements":
        word = re.search(r"\b([A-Z]{4,})\b", task["question"]).group(1)
        assert "".join(sorted(word)) == p["letters"]
        counts = collections.Counter(word).values()
        v = sympy.factorial(len(word)) / sympy.prod([sympy.factorial(c) for c in counts])
    elif fam == "stars_and_bars":
        v = _count_bounded(p["k"], p["n"], p["lower"])
    elif fam == "divisible_count":
        v = _divisible_count(p["limit"], p["divs"])
    elif fam == "derangements":
        v = sympy.subfactorial(p["n"])
    elif fam == "linear_system":
        sol = sympy.Matrix(p["matrix"]).LUsolve(sympy.Matrix(p["rhs"]))
        asked = json.loads(md["extra"])["asked"]
        v = sol["xyzw".index(asked)]
    elif fam == "fraction_sum":
        return _frac(sum(sympy.Rational(a, b) for a, b in p["terms"]))
    elif fam == "days_between":
        v = _jdn(p["b"]) - _jdn(p["a"])
    elif fam == "weekday":
        return _zeller(p["date"])
    elif fam == "date_add":
        return _from_jdn(_jdn(p["date"]) + p["offset"])
    elif fam in ("rg_basic_arithmetic", "rg_products"):
        v = sympy.sympify(p["expression"])
    elif fam == "rg_gcd":
        v = functools.reduce(sympy.gcd, p["numbers"])
    elif fam == "rg_lcm":
        v = functools.reduce(sympy.lcm, p["numbers"])
    elif fam == "rg_prime_factorization":
        return " × ".join(str(q) for q, e in sorted(sympy.factorint(p["number"]).items()) for _ in range(e))
    elif fam == "rg_count_primes":
        v = sympy.primepi(p["end"]) - sympy.primepi(p["start"] - 1)
    elif fam == "rg_fraction_simplification":
        return _frac(sympy.Rational(p["numerator"], p["denominator"]))
    else:
        raise AssertionError(f"no independent checker for math family {fam!r}: add one here")
    return None if v is None else str(int(v))


_ANSWER_FORMS = {
    "integer": re.compile(r"-?(0|[1-9]\d*)"),
    "fraction": re.compile(r"-?[1-9]\d*/[1-9]\d*"),
    "date": re.compile(r"\d{4}-\d{2}-\d{2}"),
    "weekday": re.compile(r"(Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day"),
    "factorization": re.compile(r"\d+( × \d+)*"),
}


def test_math_answers_recomputed(data):
    by_family: dict[str, list[dict]] = collections.defaultdict(list)
    for split in tasks.SPLITS:
        for r in data["math"][split]:
            by_family[r["metadata"]["family"]].append(r)
    assert len(by_family) >= 20
    checked = 0
    for fam, rows in sorted(by_family.items()):
        for r in _sample(rows, 12):
            assert _ANSWER_FORMS[r["metadata"]["answer_type"]].fullmatch(r["answer"]), r
            if r["metadata"]["answer_type"] == "fraction":
                assert str(Fraction(r["answer"])) == r["answer"]  # reduced
            expected = _recompute(r)
            if expected is None:
                continue
            assert expected == r["answer"], (fam, r["question"], r["answer"], expected)
            checked += 1
    assert checked >= 200


def test_math_reasoning_gym_included_when_available(data):
    from tasks import math_rg

    sources = {r["metadata"]["source"] for s in tasks.SPLITS for r in data["math"][s]}
    assert "agent_rl" in sources
    assert ("reasoning_gym" in sources) == (math_rg.available() is not None)


# --- search -------------------------------------------------------------------------------------


def test_search_corpus_and_support(data):
    docs = {d["id"]: d for d in tasks.load_corpus("searchqa")}
    assert len(docs) >= 2000
    titles = [d["title"] for d in docs.values()]
    assert len(titles) == len(set(titles)), "entity names must be unique"
    hops = collections.Counter()
    for split in tasks.SPLITS:
        for r in data["searchqa"][split]:
            md = r["metadata"]
            hops[md["hops"]] += 1
            assert md["hops"] == len(md["supporting_docs"]) == len(md["relations"])
            assert r["answer"] in md["aliases"]
            support = [docs[i] for i in md["supporting_docs"]]
            # Each hop's article names the entity reached so far; the last one states the answer.
            assert docs[md["supporting_docs"][0]]["title"] in r["question"] or \
                md["subject"] in r["question"]
            assert any(a in support[-1]["text"] for a in md["aliases"]), r
            for prev, nxt in zip(support, support[1:]):
                assert nxt["title"] in prev["text"], (r["id"], prev["id"], nxt["id"])
    assert hops[1] and hops[2] and hops[3]


# --- sql ----------------------------------------------------------------------------------------


def test_sql_gold_queries_run(data):
    conns: dict[str, sqlite3.Connection] = {}
    try:
        for split in tasks.SPLITS:
            for r in data["sql"][split]:
                md = r["metadata"]
                assert md["gold_sql"] == r["answer"]
                assert md["difficulty"] in {"easy", "medium", "hard"}
                assert not md["ordered"] or "ORDER BY" in r["answer"]
                if r["db_id"] not in conns:
                    path = tasks.sql_db_path(r["db_id"])
                    conns[r["db_id"]] = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                rows = conns[r["db_id"]].execute(r["answer"]).fetchall()
                assert rows and len(rows) == md["result_rows"], r
        for db_id, conn in conns.items():
            # Realistic sizes, NULLs present somewhere, and foreign keys declared.
            schema = tasks.sql_schema(db_id)
            assert "FOREIGN KEY" in schema
            tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            assert all(f"CREATE TABLE {t} " in schema for t in tables)
            total = sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables)
            assert total >= 500, db_id
    finally:
        for c in conns.values():
            c.close()
    diffs = collections.Counter(r["metadata"]["difficulty"] for r in data["sql"]["train"])
    assert min(diffs.values()) >= 200


# --- loading through datasets, hub, determinism -----------------------------------------------


def test_load_dataset(cache, data):
    for name in tasks.names():
        ds = tasks.load_dataset(name, "heldout")
        assert len(ds) == len(data[name]["heldout"])
        assert ds[0]["id"] == data[name]["heldout"][0]["id"]
    assert "db_id" in tasks.load_dataset("sql", "heldout").column_names


def test_hub_needs_network_error(cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        rows = tasks.load("hub:gsm8k", "heldout")
    except tasks.TaskSetError as exc:
        assert "network" in str(exc) and "tasks.load('math'" in str(exc)
    else:  # a warm HF cache served it: then it must be normalised
        assert rows and {"id", "question", "answer", "split", "metadata"} <= rows[0].keys()


def test_version_keys_the_cache(cache, monkeypatch, tmp_path):
    monkeypatch.setenv("AGENT_RL_CACHE", str(tmp_path))
    calls = []

    def builder(out: Path) -> dict[str, list[dict]]:
        calls.append(out)
        row = {"id": "toy/0", "question": "q", "answer": "a", "split": "train", "metadata": {}}
        return {"train": [row], "heldout": []}

    version = ["v1"]
    monkeypatch.setitem(registry.REGISTRY, "toy", registry.TaskSet(
        "toy", "test set", lambda: version[0], lambda: builder))
    p1 = tasks.build("toy")
    assert p1 == tmp_path / "toy" / "v1" and tasks.build("toy") == p1 and len(calls) == 1
    version[0] = "v2"
    assert tasks.build("toy") == tmp_path / "toy" / "v2" and len(calls) == 2
    tasks.build("toy", force=True)
    assert len(calls) == 3 and tasks.load("toy")[0]["answer"] == "a"
    assert not [p for p in (tmp_path / "toy").iterdir() if p.name.startswith(".build-")]


def test_deterministic_and_concurrent_builds(cache, tmp_path):
    """Two processes with different hash seeds build into one fresh cache at once; the result
    is byte-identical to the session build."""
    code = "import tasks; [tasks.build(n) for n in tasks.names()]"
    procs = []
    for seed in ("1", "12345"):
        env = dict(os.environ, AGENT_RL_CACHE=str(tmp_path), PYTHONHASHSEED=seed)
        procs.append(subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
    for name in tasks.names():
        mine = json.loads((tasks.set_dir(name) / "manifest.json").read_text())
        other_dir = tmp_path / name / tasks.set_dir(name).name
        theirs = json.loads((other_dir / "manifest.json").read_text())
        assert mine == theirs, name
        for rel, digest in mine["files"].items():
            assert (other_dir / rel).exists()
