"""The sql tool on real SQLite files: tables, caps, read-only enforcement, limits, resolvers."""

import asyncio
import hashlib
import sqlite3
import time

import pytest

from tools import SQLTool, ToolCall, ToolContext, ToolSet
from tools.sql import render_table


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "shop.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT, credit REAL);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), total REAL);
    """)
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)",
                     [(i, f"Customer {i:03d}", ["Velmora", "Ostrakan", None][i % 3], i * 1.5) for i in range(1, 121)])
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(i, 1 + i % 120, i * 10.0) for i in range(1, 301)])
    conn.execute("INSERT INTO customers VALUES (999, ?, 'Long\nLine', NULL)", ("N" * 5000,))
    conn.commit()
    conn.close()
    return path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def run(tool, query, ctx=None):
    return (await ToolSet([tool]).call([ToolCall(tool.name, {"query": query})], ctx or ToolContext()))[0]


async def test_select_renders_a_table(db):
    r = await run(SQLTool(db), "SELECT id, name, credit FROM customers WHERE id <= 3 ORDER BY id")
    assert not r.error
    lines = r.text.splitlines()
    assert lines[0].split("|")[0].strip() == "id" and "name" in lines[0] and "credit" in lines[0]
    assert set(lines[1]) <= {"-", "+"}
    assert lines[2].split("|")[1].strip() == "Customer 001"
    assert lines[-1] == "(3 rows)"
    assert len({len(line) for line in lines[:5]}) == 1  # fixed width
    assert r.metrics["rows"] == 3


async def test_aggregates_joins_and_ctes(db):
    q = """WITH big AS (SELECT customer_id, SUM(total) AS s FROM orders GROUP BY customer_id)
           SELECT c.city, COUNT(*) AS n FROM big JOIN customers c ON c.id = big.customer_id
           GROUP BY c.city ORDER BY n DESC"""
    r = await run(SQLTool(db), q)
    assert not r.error and "Velmora" in r.text and "NULL" in r.text and r.text.endswith("(3 rows)")


async def test_rows_and_cells_are_capped(db):
    tool = SQLTool(db, max_rows=10, max_cell_chars=30)
    r = await run(tool, "SELECT * FROM customers ORDER BY id")
    assert len(r.text.splitlines()) == 2 + 10 + 1
    assert "(111 more rows; 10 of 121 shown" in r.text
    r = await run(tool, "SELECT name, city FROM customers WHERE id = 999")
    row = r.text.splitlines()[2]
    assert "N" * 29 + "…" in row and "N" * 31 not in row
    assert "Long\\nLine" in row  # a newline can't break the table


async def test_empty_result_keeps_the_header(db):
    r = await run(SQLTool(db), "SELECT id, name FROM customers WHERE id < 0")
    assert not r.error and r.text.splitlines()[0].startswith("id") and r.text.endswith("(0 rows)")


@pytest.mark.parametrize("query,needle", [
    ("INSERT INTO customers (name) VALUES ('x')", "INSERT is not allowed"),
    ("UPDATE customers SET credit = 0", "UPDATE is not allowed"),
    ("DELETE FROM orders", "DELETE is not allowed"),
    ("DROP TABLE orders", "DROP is not allowed"),
    ("CREATE TABLE t (x)", "CREATE is not allowed"),
    ("CREATE TEMP TABLE t (x)", "CREATE is not allowed"),
    ("ALTER TABLE orders ADD COLUMN y", "ALTER is not allowed"),
    ("ATTACH DATABASE ':memory:' AS m", "ATTACH is not allowed"),
    ("REPLACE INTO orders VALUES (1, 1, 1)", "REPLACE is not allowed"),
    ("VACUUM", "VACUUM is not allowed"),
    ("PRAGMA query_only = OFF", "PRAGMA query_only is not allowed"),
    ("PRAGMA journal_mode = WAL", "PRAGMA journal_mode is not allowed"),
    ("PRAGMA user_version = 7", "PRAGMA user_version is not allowed"),
    ("WITH x AS (SELECT 1) DELETE FROM orders", "DELETE is not allowed"),
    ("WITH x AS (SELECT 1) INSERT INTO orders SELECT 1000, 1, 1 FROM x", "INSERT is not allowed"),
    ("/* sneaky */ -- comment\n  DELETE FROM orders", "DELETE is not allowed"),
    ("BEGIN", "BEGIN is not allowed"),
])
async def test_writes_are_refused_and_the_file_is_unchanged(db, tmp_path, query, needle):
    before = digest(db)
    r = await run(SQLTool(db), query)
    assert r.error and "read-only" in r.text and needle in r.text, r.text
    assert digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.sqlite"]


async def test_vacuum_into_cannot_write_a_new_file(db, tmp_path):
    target = tmp_path / "copy.sqlite"
    r = await run(SQLTool(db), f"VACUUM INTO '{target}'")
    assert r.error and not target.exists()


async def test_schema_pragmas_are_allowed(db):
    r = await run(SQLTool(db), "PRAGMA table_info(customers)")
    assert not r.error and "credit" in r.text
    r = await run(SQLTool(db), "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    assert not r.error and "customers" in r.text and "orders" in r.text


@pytest.mark.parametrize("query,needle", [
    ("SELECT 1; SELECT 2", "Only one SQL statement"),
    ("SELECT 1; DROP TABLE orders", "Only one SQL statement"),
    ("SELECT * FROM nowhere", "SQLite error: no such table: nowhere"),
    ("SELECT nme FROM customers", "SQLite error: no such column: nme"),
    ("SELEC 1", "'SELEC' is not a query"),
    ("-- only a comment", "The query is empty"),
    ("SELECT randomblob(200000000)", "string or blob too big"),
])
async def test_bad_queries_give_sqlite_messages(db, query, needle):
    before = digest(db)
    r = await run(SQLTool(db), query)
    assert r.error and needle in r.text, r.text
    assert digest(db) == before


async def test_trailing_semicolon_and_comment_are_fine(db):
    r = await run(SQLTool(db), "SELECT COUNT(*) FROM orders; -- done\n")
    assert not r.error and "300" in r.text


async def test_blank_query_is_rejected_by_schema(db):
    r = await run(SQLTool(db), "")
    assert r.error and "at least 1 character" in r.text


async def test_runaway_query_times_out_without_blocking_the_loop(db):
    tool = SQLTool(db, timeout_s=0.5)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    t = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    r = await run(tool, "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT COUNT(*) FROM r")
    elapsed = time.perf_counter() - t0
    t.cancel()
    assert r.error and "stopped after 0.5 s" in r.text
    assert 0.4 < elapsed < 3
    assert ticks >= 5  # the event loop kept running while SQLite worked


async def test_db_from_task_via_resolver_and_db_path(db, tmp_path):
    dbs = {"shop": db}
    tool = SQLTool(lambda ctx: dbs[ctx.task["db_id"]])
    r = await run(tool, "SELECT COUNT(*) AS n FROM customers", ToolContext(task={"db_id": "shop"}))
    assert not r.error and "121" in r.text
    r = await run(tool, "SELECT 1", ToolContext(task={"db_id": "other"}))
    assert r.error and "could not be found" in r.text and "KeyError" in r.text
    r = await run(SQLTool(), "SELECT 1 AS one", ToolContext(task={"db_path": str(db)}))
    assert not r.error and "one" in r.text
    r = await run(SQLTool(), "SELECT 1", ToolContext(task={}))
    assert r.error and "no database" in r.text
    r = await run(SQLTool(tmp_path / "missing.sqlite"), "SELECT 1")
    assert r.error and "missing" in r.text and not (tmp_path / "missing.sqlite").exists()


async def test_relative_and_odd_paths(db, tmp_path, monkeypatch):
    odd = tmp_path / "a dir?#%" / "my db.sqlite"
    odd.parent.mkdir()
    odd.write_bytes(db.read_bytes())
    monkeypatch.chdir(odd.parent)
    for path in ("my db.sqlite", odd):
        r = await run(SQLTool(path), "SELECT COUNT(*) FROM orders")
        assert not r.error and "300" in r.text, r.text


async def test_concurrent_queries(db):
    tool = SQLTool(db)
    calls = [ToolCall("sql", {"query": f"SELECT name FROM customers WHERE id = {i}"}) for i in range(1, 21)]
    res = await ToolSet([tool]).call(calls, ToolContext())
    assert [r.text.splitlines()[2].strip() for r in res] == [f"Customer {i:03d}" for i in range(1, 21)]


def test_render_table_alignment():
    text = render_table(["name", "n"], [("a", 1), ("bbb", 22.5), ("c", None)])
    assert text.splitlines() == ["name |    n", "-----+-----", "a    |    1", "bbb  | 22.5", "c    | NULL"]
    assert render_table(["b"], [(b"\x00\x01",)]).splitlines()[2] == "<blob 2 bytes>"
