"""``sql``: run one read-only query against an SQLite database and show the rows as a table.

Read-only is enforced four ways, each covering another's gap: the file is opened with
``mode=ro``; ``PRAGMA query_only`` is on; an authorizer denies every action but reading (so
``ATTACH`` can't open other files and pragmas can't be set); and only statements that start
with SELECT, WITH, VALUES, EXPLAIN or PRAGMA are run at all (``VACUUM INTO`` would otherwise
write a new file). A progress handler stops a query past its time limit, and SQLite's length
limit bounds what one cell can allocate.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import Tool, ToolContext, ToolResult

__all__ = ["SQLTool", "render_table", "run_query"]

_ALLOWED_START = {"select", "with", "values", "explain", "pragma"}
_WRITE_WORDS = {"insert", "update", "delete", "replace", "drop", "create", "alter", "attach", "detach",
                "vacuum", "reindex", "analyze", "begin", "commit", "end", "rollback", "savepoint",
                "release", "upsert"}
# Pragmas that only describe the schema; everything else is denied. The first group takes a
# table or index name as argument; the second may only be read (an argument would set it).
_SCHEMA_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
                   "foreign_key_list"}
_READ_PRAGMAS = {"collation_list", "function_list", "pragma_list", "encoding", "user_version",
                 "schema_version", "page_count", "page_size"}
_READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                 getattr(sqlite3, "SQLITE_RECURSIVE", 33)}
_ACTION_WORDS = {
    sqlite3.SQLITE_INSERT: "INSERT", sqlite3.SQLITE_UPDATE: "UPDATE", sqlite3.SQLITE_DELETE: "DELETE",
    sqlite3.SQLITE_ATTACH: "ATTACH", sqlite3.SQLITE_DETACH: "DETACH", sqlite3.SQLITE_TRANSACTION: "a transaction",
    sqlite3.SQLITE_ALTER_TABLE: "ALTER TABLE",
}
_MAX_CELL_BYTES = 10_000_000
_COUNT_CAP = 1_000_000


class QueryError(Exception):
    """A query that can't be run; the message is for the agent."""


def _first_keyword(sql: str) -> str:
    """The statement's first word, skipping blanks, comments and opening parentheses."""
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace() or c == "(":
            i += 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            break
    j = i
    while j < n and (sql[j].isalnum() or sql[j] == "_"):
        j += 1
    return sql[i:j].lower()


def _read_only_message(what: str) -> str:
    return (f"The database is read-only: {what} is not allowed. Only one query that reads data "
            "(SELECT ... or WITH ... SELECT ...) can be run.")


def _connect(path: Path, deadline: list[float], denied: list[str]) -> sqlite3.Connection:
    conn = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=1.0, check_same_thread=False,
                           isolation_level=None)
    conn.execute("PRAGMA query_only = ON")
    if hasattr(conn, "setlimit"):
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, _MAX_CELL_BYTES)
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)

    def authorize(action: int, arg1: Any, arg2: Any, _db: Any, _src: Any) -> int:
        if action in _READ_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA:
            pragma = str(arg1).lower()
            if pragma in _SCHEMA_PRAGMAS or (pragma in _READ_PRAGMAS and arg2 is None):
                return sqlite3.SQLITE_OK
        denied.append(f"PRAGMA {arg1}" if action == sqlite3.SQLITE_PRAGMA else _ACTION_WORDS.get(action, "writing"))
        return sqlite3.SQLITE_DENY

    conn.set_authorizer(authorize)
    # Every 1000 VM steps: cheap, and a runaway query stops within a millisecond of its deadline.
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline[0]), 1000)
    return conn


def run_query(path: str | os.PathLike, sql: str, *, max_rows: int = 50, timeout_s: float = 5.0
              ) -> tuple[list[str], list[tuple], int | None, bool]:
    """(columns, first ``max_rows`` rows, rows not shown or None if uncounted, timed out while counting).

    Raises QueryError with a message for the agent.
    """
    word = _first_keyword(sql)
    if not word:
        raise QueryError("The query is empty. Write one SELECT statement.")
    if word in _WRITE_WORDS:
        raise QueryError(_read_only_message(f"{word.upper()}"))
    if word not in _ALLOWED_START:
        raise QueryError(f"'{word.upper()}' is not a query. Write one SELECT (or WITH ... SELECT) statement.")
    p = Path(path).resolve()  # as_uri() needs an absolute path
    if not p.is_file():
        raise QueryError(f"The database file for this task is missing ({p.name}).")
    deadline = [time.monotonic() + timeout_s]
    denied: list[str] = []
    try:
        conn = _connect(p, deadline, denied)
    except sqlite3.Error as e:
        raise QueryError(f"The database could not be opened: {e}") from e
    try:
        try:
            cur = conn.execute(sql)
            columns = [d[0] for d in cur.description or ()]
            rows = cur.fetchmany(max_rows)
        except sqlite3.ProgrammingError as e:
            if "one statement" in str(e):
                raise QueryError("Only one SQL statement can be run per call; remove everything after "
                                 "the first ';' and run the others in separate calls.") from e
            raise QueryError(f"SQLite error: {e}") from e
        except sqlite3.Error as e:
            raise _translate(e, denied, timeout_s) from e
        if cur.description is None:
            raise QueryError(_read_only_message("a statement that returns no rows"))
        more: int | None = 0
        counting_timed_out = False
        if len(rows) == max_rows:
            try:  # count the rest without keeping it: the note says how much the agent didn't see
                while more < _COUNT_CAP:
                    chunk = cur.fetchmany(1000)
                    if not chunk:
                        break
                    more += len(chunk)
                else:
                    more = None
            except sqlite3.Error:
                counting_timed_out = True
        return columns, rows, more, counting_timed_out
    finally:
        conn.close()


def _translate(e: sqlite3.Error, denied: list[str], timeout_s: float) -> QueryError:
    msg = str(e)
    if "interrupted" in msg:
        return QueryError(f"The query was stopped after {timeout_s:g} s (time limit). Make it cheaper: "
                          "filter earlier, avoid cross joins, add LIMIT.")
    if denied or "not authorized" in msg:
        return QueryError(_read_only_message(denied[0] if denied else "this statement"))
    if "readonly" in msg or "read-only" in msg:
        return QueryError(_read_only_message("changing data"))
    return QueryError(f"SQLite error: {msg}")


def _cell(v: Any, limit: int) -> str:
    if v is None:
        s = "NULL"
    elif isinstance(v, bytes):
        s = f"<blob {len(v)} bytes>"
    elif isinstance(v, float):
        s = repr(v)
        if len(s) > 14 and "e" not in s:
            s = f"{v:.10g}"
    else:
        s = str(v)
    # The table is line-based: a newline inside a cell would break every column after it.
    s = s.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r").replace("\t", " ")
    if len(s) > limit:
        s = s[: max(limit - 1, 1)] + "…"
    return s


def render_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, max_cell_chars: int = 200) -> str:
    """A fixed-width text table: header, a rule, one line per row; numbers right-aligned."""
    head = [_cell(c, max_cell_chars) for c in columns]
    body = [[_cell(v, max_cell_chars) for v in r] for r in rows]
    numeric = [bool(rows) and all(isinstance(r[i], (int, float)) or r[i] is None for r in rows)
               for i in range(len(columns))]
    widths = [max([len(head[i])] + [len(r[i]) for r in body]) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(c.rjust(w) if num else c.ljust(w)
                          for c, w, num in zip(cells, widths, numeric, strict=True)).rstrip()

    out = [line(head), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in body]
    return "\n".join(out)


class SQLTool(Tool):
    """Read-only SQL over SQLite.

    Args:
        db: the database file, or ``callable(ctx) -> path`` (e.g. mapping ``ctx.task["db_id"]``
            to a file); ``None`` reads ``ctx.task["db_path"]``.
        max_rows: rows shown; the rest are counted in a note.
        max_cell_chars: characters shown per cell.
        timeout_s: a query's time limit.
    """

    name = "sql"

    def __init__(self, db: Any = None, *, max_rows: int = 50, max_cell_chars: int = 200, timeout_s: float = 5.0,
                 name: str = "sql", description: str | None = None) -> None:
        if max_rows < 1:
            raise ValueError("SQLTool: max_rows must be at least 1")
        self.db = db
        self.max_rows, self.max_cell_chars, self.timeout_s = max_rows, max_cell_chars, timeout_s
        self.name = name
        self.description = description or (
            "Run one read-only SQL query (SQLite dialect) against the task's database and see the "
            f"result table (at most {max_rows} rows are shown). Only SELECT/WITH queries are allowed.")
        self.parameters = {
            "type": "object",
            "properties": {"query": {"type": "string", "minLength": 1,
                                     "description": "one SQLite SELECT statement"}},
            "required": ["query"],
            "additionalProperties": False,
        }

    def db_path(self, ctx: ToolContext) -> Path:
        """The database of this episode; raises QueryError when there is none."""
        src = self.db
        try:
            if src is None:
                src = ctx.task.get("db_path")
                if not src:
                    raise QueryError("This task has no database (no db_path in the task).")
            elif callable(src):
                src = src(ctx)
        except QueryError:
            raise
        except Exception as e:
            raise QueryError(f"This task's database could not be found ({type(e).__name__}: {e}).") from e
        return Path(src)

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        sql = args["query"]
        t0 = time.perf_counter()
        try:
            path = self.db_path(ctx)
            # A thread: sqlite3 blocks, and the event loop runs the other episodes' tools.
            cols, rows, more, partial = await asyncio.to_thread(
                run_query, path, sql, max_rows=self.max_rows, timeout_s=self.timeout_s)
        except QueryError as e:
            return ToolResult.fail(str(e), query_s=time.perf_counter() - t0)
        text = render_table(cols, rows, max_cell_chars=self.max_cell_chars)
        shown = len(rows)
        if more is None or partial:
            text += f"\n({shown} rows shown; more rows not counted)"
        elif more:
            text += f"\n({more} more rows; {shown} of {shown + more} shown. Use LIMIT or aggregate.)"
        else:
            text += f"\n({shown} row{'s' * (shown != 1)})"
        return ToolResult(text, metrics={"rows": shown + (more or 0), "query_s": time.perf_counter() - t0})
