"""The ``sql`` task set: text-to-SQL questions with gold queries over generated SQLite databases.

A task::

    {"id": "sql/store/00012", "db_id": "store", "question": "...", "answer": "<gold SQL>",
     "split": "train",
     "metadata": {"difficulty": "easy|medium|hard", "gold_sql": "<gold SQL>", "ordered": false,
                  "template": "count_cat", "tables": ["customers"], "result_rows": 1}}

Paths differ per machine, so tasks store ``db_id``; ``sql_db_path(db_id)`` finds the file and
``sql_schema(db_id)`` gives the CREATE statements for the prompt. ``ordered`` says whether row
order is part of the answer (an ORDER BY the question asks for), for execution-match rewards.

Templates are schema-generic (they read column roles from ``sql_schema``) plus a few
domain-specific ones per database. Every gold query is executed at build time; queries that
return nothing, only NULL/0, too many rows, or a tie at a LIMIT boundary are dropped.
Held-out = whole databases (``sql_dbs.HELDOUT_DBS``) never seen in train.
"""

from __future__ import annotations

import random
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ._io import normalize_question
from .sql_dbs import DATABASES, HELDOUT_DBS, write_sqlite
from .sql_schema import CAT, DATE, FK, NUM, Col, Database, Table

GENERATOR_VERSION = "sql-v1"
SEED = 4242
QUOTA_TRAIN_DB = {"easy": 95, "medium": 85, "hard": 60}
QUOTA_HELDOUT_DB = {"easy": 60, "medium": 55, "hard": 45}
MAX_RESULT_ROWS = 100


@dataclass
class Candidate:
    template: str
    difficulty: str
    question: str
    sql: str
    ordered: bool = False


def lit(v: object) -> str:
    """A SQL literal (our data never needs more than quote doubling)."""
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(v)


def _plural_label(c: Col) -> str:
    return c.nl + "s"


class Ctx:
    """One database plus cached value lists that templates draw parameters from."""

    def __init__(self, db: Database, conn: sqlite3.Connection) -> None:
        self.db, self.conn = db, conn
        self._cache: dict[tuple, list] = {}

    def values(self, table: str, col: str) -> list:
        key = ("v", table, col)
        if key not in self._cache:
            self._cache[key] = [r[0] for r in self.conn.execute(
                f"SELECT DISTINCT {col} FROM {table} WHERE {col} IS NOT NULL ORDER BY {col}")]
        return self._cache[key]

    def unique_values(self, table: str, col: str) -> list:
        """Values that identify exactly one row: safe to name an entity by."""
        key = ("u", table, col)
        if key not in self._cache:
            self._cache[key] = [r[0] for r in self.conn.execute(
                f"SELECT {col} FROM {table} WHERE {col} IS NOT NULL GROUP BY {col} "
                f"HAVING COUNT(*) = 1 ORDER BY {col}")]
        return self._cache[key]

    def tables(self, need: Callable[[Table], bool] = lambda t: True) -> list[Table]:
        return [t for t in self.db.tables if need(t)]

    def fks(self, need_parent_label: bool = True) -> list[tuple[Table, Col, Table]]:
        out = []
        for t in self.db.tables:
            for c in t.by_role(FK):
                parent = self.db.table(c.ref)
                if need_parent_label and parent.label is None:
                    continue
                out.append((t, c, parent))
        return out

    def entity(self, t: Table, rng: random.Random) -> str | None:
        vals = self.unique_values(t.name, t.label.name) if t.label else []
        return rng.choice(vals) if vals else None


def _p(t: Table, v: object) -> str:
    return f'the {t.singular} "{v}"'


def _pick_threshold(ctx: Ctx, t: Table, c: Col, rng: random.Random) -> object | None:
    vals = ctx.values(t.name, c.name)
    if len(vals) < 4:
        return None
    v = vals[rng.randrange(len(vals) // 10, len(vals) - len(vals) // 10)]
    return round(v, 2) if isinstance(v, float) else v


_AGG_WORDS = {"AVG": "average", "MAX": "highest", "MIN": "lowest", "SUM": "total"}


def _agg_sql(agg: str, expr: str) -> str:
    return f"ROUND(AVG({expr}), 2)" if agg == "AVG" else f"{agg}({expr})"


def _agg_note(agg: str) -> str:
    return " Round to 2 decimal places." if agg == "AVG" else ""


# --- easy: one table --------------------------------------------------------------------------


def count_cat(ctx: Ctx, rng: random.Random) -> Candidate | None:
    t = rng.choice(ctx.tables(lambda t: bool(t.by_role(CAT))))
    c = rng.choice(t.by_role(CAT))
    v = rng.choice(ctx.values(t.name, c.name))
    q = rng.choice([f'How many {t.plural} have "{v}" as their {c.nl}?',
                    f'Count the {t.plural} whose {c.nl} is "{v}".'])
    return Candidate("count_cat", "easy", q, f"SELECT COUNT(*) FROM {t.name} WHERE {c.name} = {lit(v)}")


def count_num_cmp(ctx: Ctx, rng: random.Random) -> Candidate | None:
    t = rng.choice(ctx.tables(lambda t: bool(t.by_role(NUM))))
    c = rng.choice(t.by_role(NUM))
    x = _pick_threshold(ctx, t, c, rng)
    if x is None:
        return None
    op, word = rng.choice([(">", "greater than"), ("<", "less than"), (">=", "at least")])
    return Candidate("count_num_cmp", "easy", f"How many {t.plural} have a {c.nl} {word} {x}?",
                     f"SELECT COUNT(*) FROM {t.name} WHERE {c.name} {op} {x}")


def list_num_cmp(ctx: Ctx, rng: random.Random) -> Candidate | None:
    t = rng.choice(ctx.tables(lambda t: bool(t.by_role(NUM)) and t.label is not None))
    c = rng.choice(t.by_role(NUM))
    vals = ctx.values(t.name, c.name)
    if len(vals) < 10:
        return None
    # Near the top of the range, so the list stays short enough to read and check.
    x = vals[-rng.randint(2, min(12, len(vals) - 1))]
    return Candidate("list_num_cmp", "easy",
                     f"List the {_plural_label(t.label)} of all {t.plural} with a {c.nl} greater than {x}.",
                     f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} > {x}")


def list_cat(ctx: Ctx, rng: random.Random) -> Candidate | None:
    t = rng.choice(ctx.tables(lambda t: bool(t.by_role(CAT)) and t.label is not None))
    c = rng.choice(t.by_role(CAT))
    v = rng.choice(ctx.values(t.name, c.name))
    return Candidate("list_cat", "easy",
                     f'List the {_plural_label(t.label)} of all {t.plural} whose {c.nl} is "{v}".',
                     f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} = {lit(v)}")


def aggregate(ctx: Ctx, rng: random.Random) -> Candidate | None:
    t = rng.choice(ctx.tables(lambda t: bool(t.by_role(NUM))))
    c = rng.choice(t.by_role(NUM))
    agg = rng.choice(sorted(_AGG_WORDS))
    cats = t.by_role(CAT)
    if cats and rng.random() < 0.7:
        cat = rng.choice(cats)
        v = rng.choice(ctx.values(t.name, cat.name))
        return Candidate(f"aggregate_{agg.lower()}_filtered", "easy",
                         f'What is the {_AGG_WORDS[agg]} {c.nl} of {t.plural} whose {cat.nl} is "{v}"?'
                         + _agg_note(agg),
                         f"SELECT {_agg_sql(agg, c.name)} FROM {t.name} WHERE {cat.name} = {lit(v)}")
    return Candidate(f"aggregate_{agg.lower()}", "easy",
                     f"What is the {_AGG_WORDS[agg]} {c.nl} of all {t.plural}?" + _agg_note(agg),
                     f"SELECT {_agg_sql(agg, c.name)} FROM {t.name}")


def count_year(ctx: Ctx, rng: random.Random) -> Candidate | None:
    t = rng.choice(ctx.tables(lambda t: bool(t.by_role(DATE))))
    c = rng.choice(t.by_role(DATE))
    years = sorted({v[:4] for v in ctx.values(t.name, c.name)})
    y = rng.choice(years)
    return Candidate("count_year", "easy", f"How many {t.plural} have a {c.nl} in {y}?",
                     f"SELECT COUNT(*) FROM {t.name} WHERE strftime('%Y', {c.name}) = '{y}'")


def count_date_range(ctx: Ctx, rng: random.Random) -> Candidate | None:
    t = rng.choice(ctx.tables(lambda t: bool(t.by_role(DATE))))
    c = rng.choice(t.by_role(DATE))
    vals = ctx.values(t.name, c.name)
    a, b = sorted(rng.sample(vals, 2))
    return Candidate("count_date_range", "easy",
                     f"How many {t.plural} have a {c.nl} between {a} and {b}, inclusive?",
                     f"SELECT COUNT(*) FROM {t.name} WHERE {c.name} BETWEEN '{a}' AND '{b}'")


def count_null(ctx: Ctx, rng: random.Random) -> Candidate | None:
    opts = [(t, c) for t in ctx.db.tables for c in t.cols if c.nullable and c.nl]
    t, c = rng.choice(opts)
    if rng.random() < 0.5:
        return Candidate("count_null", "easy", f"How many {t.plural} have no {c.nl} recorded?",
                         f"SELECT COUNT(*) FROM {t.name} WHERE {c.name} IS NULL")
    return Candidate("count_not_null", "easy", f"How many {t.plural} have a recorded {c.nl}?",
                     f"SELECT COUNT(*) FROM {t.name} WHERE {c.name} IS NOT NULL")


def lookup(ctx: Ctx, rng: random.Random) -> Candidate | None:
    t = rng.choice(ctx.tables(lambda t: t.label is not None))
    cols = [c for c in t.cols if c.role in {CAT, NUM, DATE} and c.nl]
    if not cols:
        return None
    c = rng.choice(cols)
    v = ctx.entity(t, rng)
    if v is None:
        return None
    return Candidate("lookup", "easy",
                     f'What is the {c.nl} of the {t.singular} whose {t.label.nl} is "{v}"?',
                     f"SELECT {c.name} FROM {t.name} WHERE {t.label.name} = {lit(v)}")


def count_distinct(ctx: Ctx, rng: random.Random) -> Candidate | None:
    t = rng.choice(ctx.tables(lambda t: bool(t.by_role(CAT))))
    c = rng.choice(t.by_role(CAT))
    return Candidate("count_distinct", "easy",
                     f"How many distinct values of {c.nl} occur among the {t.plural}?",
                     f"SELECT COUNT(DISTINCT {c.name}) FROM {t.name}")


def top_k(ctx: Ctx, rng: random.Random) -> Candidate | None:
    t = rng.choice(ctx.tables(lambda t: bool(t.by_role(NUM)) and t.label is not None))
    c = rng.choice(t.by_role(NUM))
    k = rng.randint(3, 10)
    desc = rng.random() < 0.7
    word, order = ("highest", "DESC") if desc else ("lowest", "ASC")
    return Candidate("top_k", "easy",
                     f"List the {_plural_label(t.label)} of the {k} {t.plural} with the {word} "
                     f"{c.nl}, from {word} to {'lowest' if desc else 'highest'}.",
                     f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} IS NOT NULL "
                     f"ORDER BY {c.name} {order} LIMIT {k}", ordered=True)


def extreme_date(ctx: Ctx, rng: random.Random) -> Candidate | None:
    t = rng.choice(ctx.tables(lambda t: bool(t.by_role(DATE)) and t.label is not None))
    c = rng.choice(t.by_role(DATE))
    word, order = rng.choice([("earliest", "ASC"), ("latest", "DESC")])
    return Candidate("extreme_date", "easy",
                     f"Which {t.singular} has the {word} {c.nl}? Give its {t.label.nl}.",
                     f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} IS NOT NULL "
                     f"ORDER BY {c.name} {order} LIMIT 1")


# --- medium: grouping and one join -------------------------------------------------------------


def group_count(ctx: Ctx, rng: random.Random) -> Candidate | None:
    t = rng.choice(ctx.tables(lambda t: bool(t.by_role(CAT))))
    c = rng.choice(t.by_role(CAT))
    where, note = (f" WHERE {c.name} IS NOT NULL", f" Ignore {t.plural} without a {c.nl}.") \
        if c.nullable else ("", "")
    return Candidate("group_count", "medium",
                     f"For each {c.nl}, how many {t.plural} are there? Give the {c.nl} and the count." + note,
                     f"SELECT {c.name}, COUNT(*) FROM {t.name}{where} GROUP BY {c.name}")


def group_agg(ctx: Ctx, rng: random.Random) -> Candidate | None:
    t = rng.choice(ctx.tables(lambda t: bool(t.by_role(CAT)) and bool(t.by_role(NUM))))
    c, n = rng.choice(t.by_role(CAT)), rng.choice(t.by_role(NUM))
    agg = rng.choice(sorted(_AGG_WORDS))
    where = f" WHERE {c.name} IS NOT NULL" if c.nullable else ""
    return Candidate(f"group_{agg.lower()}", "medium",
                     f"What is the {_AGG_WORDS[agg]} {n.nl} of {t.plural} for each {c.nl}? "
                     f"Give the {c.nl} and the {_AGG_WORDS[agg]} {n.nl}." + _agg_note(agg),
                     f"SELECT {c.name}, {_agg_sql(agg, n.name)} FROM {t.name}{where} GROUP BY {c.name}")


def group_top(ctx: Ctx, rng: random.Random) -> Candidate | None:
    t = rng.choice(ctx.tables(lambda t: bool(t.by_role(CAT))))
    c = rng.choice(t.by_role(CAT))
    word, order = rng.choice([("most", "DESC"), ("fewest", "ASC")])
    where = f" WHERE {c.name} IS NOT NULL" if c.nullable else ""
    return Candidate("group_top", "medium", f"Which {c.nl} has the {word} {t.plural}?",
                     f"SELECT {c.name} FROM {t.name}{where} GROUP BY {c.name} "
                     f"ORDER BY COUNT(*) {order} LIMIT 1")


def fk_count(ctx: Ctx, rng: random.Random) -> Candidate | None:
    child, fk, parent = rng.choice(ctx.fks())
    v = ctx.entity(parent, rng)
    if v is None:
        return None
    return Candidate("fk_count", "medium",
                     "How many " + fk.phrase.format(p=_p(parent, v)) + " are there?",
                     f"SELECT COUNT(*) FROM {child.name} c JOIN {parent.name} p ON c.{fk.name} = p.id "
                     f"WHERE p.{parent.label.name} = {lit(v)}")


def fk_list(ctx: Ctx, rng: random.Random) -> Candidate | None:
    opts = [x for x in ctx.fks() if x[0].label is not None]
    if not opts:
        return None
    child, fk, parent = rng.choice(opts)
    v = ctx.entity(parent, rng)
    if v is None:
        return None
    return Candidate("fk_list", "medium",
                     f"List the {_plural_label(child.label)} of the " + fk.phrase.format(p=_p(parent, v)) + ".",
                     f"SELECT c.{child.label.name} FROM {child.name} c JOIN {parent.name} p "
                     f"ON c.{fk.name} = p.id WHERE p.{parent.label.name} = {lit(v)}")


def fk_agg(ctx: Ctx, rng: random.Random) -> Candidate | None:
    opts = [x for x in ctx.fks() if x[0].by_role(NUM)]
    child, fk, parent = rng.choice(opts)
    n = rng.choice(child.by_role(NUM))
    agg = rng.choice(sorted(_AGG_WORDS))
    v = ctx.entity(parent, rng)
    if v is None:
        return None
    return Candidate(f"fk_{agg.lower()}", "medium",
                     f"What is the {_AGG_WORDS[agg]} {n.nl} of the " + fk.phrase.format(p=_p(parent, v))
                     + "?" + _agg_note(agg),
                     f"SELECT {_agg_sql(agg, 'c.' + n.name)} FROM {child.name} c JOIN {parent.name} p "
                     f"ON c.{fk.name} = p.id WHERE p.{parent.label.name} = {lit(v)}")


def fk_parent_cat(ctx: Ctx, rng: random.Random) -> Candidate | None:
    opts = [x for x in ctx.fks(need_parent_label=False) if x[2].by_role(CAT)]
    if not opts:
        return None
    child, fk, parent = rng.choice(opts)
    c = rng.choice(parent.by_role(CAT))
    v = rng.choice(ctx.values(parent.name, c.name))
    group = f'{parent.plural} whose {c.nl} is "{v}"'
    return Candidate("fk_parent_cat", "medium", "Count the " + fk.phrase.format(p=group) + ".",
                     f"SELECT COUNT(*) FROM {child.name} c JOIN {parent.name} p ON c.{fk.name} = p.id "
                     f"WHERE p.{c.name} = {lit(v)}")


def fk_group_count(ctx: Ctx, rng: random.Random) -> Candidate | None:
    child, fk, parent = rng.choice(ctx.fks())
    return Candidate("fk_group_count", "medium",
                     f"How many {fk.rel} does each {parent.singular} have? Give the "
                     f"{parent.singular}'s {parent.label.nl} and the count, leaving out "
                     f"{parent.plural} with none.",
                     f"SELECT p.{parent.label.name}, COUNT(*) FROM {parent.name} p JOIN {child.name} c "
                     f"ON c.{fk.name} = p.id GROUP BY p.id")


def fk_group_agg(ctx: Ctx, rng: random.Random) -> Candidate | None:
    opts = [x for x in ctx.fks() if x[0].by_role(NUM)]
    child, fk, parent = rng.choice(opts)
    n = rng.choice(child.by_role(NUM))
    agg = rng.choice(["SUM", "AVG", "MAX"])
    return Candidate(f"fk_group_{agg.lower()}", "medium",
                     f"What is the {_AGG_WORDS[agg]} {n.nl} of the {fk.rel} of each "
                     f"{parent.singular}? Give the {parent.singular}'s {parent.label.nl} and the "
                     f"{_AGG_WORDS[agg]}, leaving out {parent.plural} with no {fk.rel}." + _agg_note(agg),
                     f"SELECT p.{parent.label.name}, {_agg_sql(agg, 'c.' + n.name)} FROM {parent.name} p "
                     f"JOIN {child.name} c ON c.{fk.name} = p.id GROUP BY p.id")


# --- hard: HAVING, nested queries, several joins -----------------------------------------------


def having_count(ctx: Ctx, rng: random.Random) -> Candidate | None:
    child, fk, parent = rng.choice(ctx.fks())
    counts = [r[0] for r in ctx.conn.execute(
        f"SELECT COUNT(*) FROM {child.name} GROUP BY {fk.name} ORDER BY 1")]
    if len(counts) < 3:
        return None
    n = counts[-rng.randint(2, min(15, len(counts)))]
    return Candidate("having_count", "hard",
                     f"Which {parent.plural} have more than {n} {fk.rel}? Give their "
                     f"{_plural_label(parent.label)}.",
                     f"SELECT p.{parent.label.name} FROM {parent.name} p JOIN {child.name} c "
                     f"ON c.{fk.name} = p.id GROUP BY p.id HAVING COUNT(*) > {n}")


def having_avg(ctx: Ctx, rng: random.Random) -> Candidate | None:
    opts = [x for x in ctx.fks() if x[0].by_role(NUM)]
    child, fk, parent = rng.choice(opts)
    n = rng.choice(child.by_role(NUM))
    avgs = [r[0] for r in ctx.conn.execute(
        f"SELECT AVG({n.name}) FROM {child.name} WHERE {n.name} IS NOT NULL GROUP BY {fk.name} "
        "ORDER BY 1")]
    if len(avgs) < 5:
        return None
    x = round(avgs[-rng.randint(2, min(15, len(avgs)))], 1)
    return Candidate("having_avg", "hard",
                     f"Which {parent.plural} have {fk.rel} with an average {n.nl} above {x}? Give "
                     f"their {_plural_label(parent.label)}.",
                     f"SELECT p.{parent.label.name} FROM {parent.name} p JOIN {child.name} c "
                     f"ON c.{fk.name} = p.id GROUP BY p.id HAVING AVG(c.{n.name}) > {x}")


def no_children(ctx: Ctx, rng: random.Random) -> Candidate | None:
    child, fk, parent = rng.choice(ctx.fks())
    return Candidate("no_children", "hard",
                     f"Which {parent.plural} have no {fk.rel}? Give their {_plural_label(parent.label)}.",
                     f"SELECT {parent.label.name} FROM {parent.name} WHERE id NOT IN "
                     f"(SELECT {fk.name} FROM {child.name} WHERE {fk.name} IS NOT NULL)")


def most_children(ctx: Ctx, rng: random.Random) -> Candidate | None:
    child, fk, parent = rng.choice(ctx.fks())
    return Candidate("most_children", "hard",
                     f"Which {parent.singular} has the most {fk.rel}? Give its {parent.label.nl}.",
                     f"SELECT p.{parent.label.name} FROM {parent.name} p JOIN {child.name} c "
                     f"ON c.{fk.name} = p.id GROUP BY p.id ORDER BY COUNT(*) DESC LIMIT 1")


def above_average(ctx: Ctx, rng: random.Random) -> Candidate | None:
    t = rng.choice(ctx.tables(lambda t: bool(t.by_role(NUM)) and bool(t.by_role(CAT)) and t.label is not None))
    n, c = rng.choice(t.by_role(NUM)), rng.choice(t.by_role(CAT))
    v = rng.choice(ctx.values(t.name, c.name))
    return Candidate("above_average", "hard",
                     f'List the {_plural_label(t.label)} of {t.plural} whose {c.nl} is "{v}" and whose '
                     f"{n.nl} is above the average {n.nl} of all {t.plural}.",
                     f"SELECT {t.label.name} FROM {t.name} WHERE {c.name} = {lit(v)} AND {n.name} > "
                     f"(SELECT AVG({n.name}) FROM {t.name})")


def above_group_average(ctx: Ctx, rng: random.Random) -> Candidate | None:
    t = rng.choice(ctx.tables(lambda t: bool(t.by_role(NUM)) and bool(t.by_role(CAT)) and t.label is not None))
    n, c = rng.choice(t.by_role(NUM)), rng.choice(t.by_role(CAT))
    vals = ctx.values(t.name, n.name)
    if len(vals) < 10:
        return None
    floor = vals[-rng.randint(5, min(40, len(vals) - 1))]
    return Candidate("above_group_average", "hard",
                     f"List the {_plural_label(t.label)} of {t.plural} whose {n.nl} is at least {floor} "
                     f"and above the average {n.nl} of {t.plural} with the same {c.nl}.",
                     f"SELECT a.{t.label.name} FROM {t.name} a WHERE a.{n.name} >= {floor} AND a.{n.name} > "
                     f"(SELECT AVG(b.{n.name}) FROM {t.name} b WHERE b.{c.name} = a.{c.name})")


def in_subquery(ctx: Ctx, rng: random.Random) -> Candidate | None:
    opts = [x for x in ctx.fks() if x[0].by_role(CAT)]
    child, fk, parent = rng.choice(opts)
    c = rng.choice(child.by_role(CAT))
    v = rng.choice(ctx.values(child.name, c.name))
    return Candidate("in_subquery", "hard",
                     f'List the {_plural_label(parent.label)} of {parent.plural} that have {fk.rel} '
                     f'whose {c.nl} is "{v}".',
                     f"SELECT {parent.label.name} FROM {parent.name} WHERE id IN (SELECT {fk.name} "
                     f"FROM {child.name} WHERE {c.name} = {lit(v)})")


def _chains(ctx: Ctx) -> list[tuple[Table, Col, Table, Col, Table]]:
    """grandchild -fk1-> child -fk2-> parent, the parent having a label to name it by."""
    out = []
    for gc, fk1, mid in ctx.fks(need_parent_label=False):
        for mid2, fk2, parent in ctx.fks():
            if mid2.name == mid.name and parent.name != gc.name:
                out.append((gc, fk1, mid, fk2, parent))
    return out


def two_hop_count(ctx: Ctx, rng: random.Random) -> Candidate | None:
    chains = _chains(ctx)
    if not chains:
        return None
    gc, fk1, mid, fk2, parent = rng.choice(chains)
    v = ctx.entity(parent, rng)
    if v is None:
        return None
    phrase = fk1.phrase.format(p=fk2.phrase.format(p=_p(parent, v)))
    return Candidate("two_hop_count", "hard", f"Count the {phrase}.",
                     f"SELECT COUNT(*) FROM {gc.name} g JOIN {mid.name} m ON g.{fk1.name} = m.id "
                     f"JOIN {parent.name} p ON m.{fk2.name} = p.id WHERE p.{parent.label.name} = {lit(v)}")


def two_hop_agg(ctx: Ctx, rng: random.Random) -> Candidate | None:
    chains = [c for c in _chains(ctx) if c[0].by_role(NUM)]
    if not chains:
        return None
    gc, fk1, mid, fk2, parent = rng.choice(chains)
    n = rng.choice(gc.by_role(NUM))
    agg = rng.choice(["SUM", "AVG", "MAX"])
    v = ctx.entity(parent, rng)
    if v is None:
        return None
    phrase = fk1.phrase.format(p=fk2.phrase.format(p=_p(parent, v)))
    return Candidate(f"two_hop_{agg.lower()}", "hard",
                     f"What is the {_AGG_WORDS[agg]} {n.nl} of the {phrase}?" + _agg_note(agg),
                     f"SELECT {_agg_sql(agg, 'g.' + n.name)} FROM {gc.name} g JOIN {mid.name} m "
                     f"ON g.{fk1.name} = m.id JOIN {parent.name} p ON m.{fk2.name} = p.id "
                     f"WHERE p.{parent.label.name} = {lit(v)}")


GENERIC: dict[str, list[Callable[[Ctx, random.Random], Candidate | None]]] = {
    "easy": [count_cat, count_num_cmp, list_num_cmp, list_cat, aggregate, count_year,
             count_date_range, count_null, lookup, count_distinct, top_k, extreme_date],
    "medium": [group_count, group_agg, group_top, fk_count, fk_list, fk_agg, fk_parent_cat,
               fk_group_count, fk_group_agg],
    "hard": [having_count, having_avg, no_children, most_children, above_average,
             above_group_average, in_subquery, two_hop_count, two_hop_agg],
}


# --- validation -------------------------------------------------------------------------------

_LIMIT = re.compile(r"^SELECT (?P<cols>.+?) FROM (?P<rest>.+) ORDER BY (?P<key>.+?) "
                    r"(?P<dir>ASC|DESC) LIMIT (?P<k>\d+)$", re.S)


def _ties_at_limit(conn: sqlite3.Connection, sql: str, ordered: bool) -> bool:
    """True when LIMIT k cuts through equal sort keys, so the gold rows aren't well defined."""
    m = _LIMIT.match(sql)
    if not m:
        return False
    k = int(m["k"])
    keys = [r[0] for r in conn.execute(
        f"SELECT {m['key']} FROM {m['rest']} ORDER BY {m['key']} {m['dir']} LIMIT {k + 1}")]
    if len(keys) > k and keys[k - 1] == keys[k]:
        return True
    # An ordered answer also needs a strict order inside the top k.
    return ordered and len(set(keys[:k])) < len(keys[:k])


def check(conn: sqlite3.Connection, cand: Candidate) -> int | None:
    """Row count of the gold result if the query is a usable gold query, else None."""
    try:
        rows = conn.execute(cand.sql).fetchall()
    except sqlite3.Error as exc:
        raise RuntimeError(f"gold SQL from template {cand.template} fails: {exc}\n{cand.sql}") from exc
    if not rows or len(rows) > MAX_RESULT_ROWS:
        return None
    if all(v is None or v == 0 for row in rows for v in row):
        return None
    if _ties_at_limit(conn, cand.sql, cand.ordered):
        return None
    return len(rows)


def _tables_in(sql: str, db: Database) -> list[str]:
    return [t.name for t in db.tables if re.search(rf"\b{t.name}\b", sql)]


def _questions_for(db: Database, conn: sqlite3.Connection, quota: dict[str, int],
                   rng: random.Random, seen_q: set[str]) -> list[dict]:
    ctx = Ctx(db, conn)
    custom: dict[str, list] = {"easy": [], "medium": [], "hard": []}
    for fn in db.custom:
        probe = fn(conn, random.Random(0))
        if probe:
            custom[probe[1]].append(fn)
    out: list[dict] = []
    seen_sql: set[str] = set()
    for difficulty in ("easy", "medium", "hard"):
        pool = GENERIC[difficulty] + custom[difficulty] * 2  # domain templates: rarer, so boosted
        got = 0
        for _ in range(60 * quota[difficulty]):
            if got >= quota[difficulty]:
                break
            fn = rng.choice(pool)
            made = fn(ctx, rng)
            if made is None:
                continue
            cand = made if isinstance(made, Candidate) else Candidate(*made)
            key_q = normalize_question(cand.question)
            if cand.sql in seen_sql or key_q in seen_q:
                continue
            n_rows = check(conn, cand)
            if n_rows is None:
                continue
            seen_sql.add(cand.sql)
            seen_q.add(key_q)
            got += 1
            out.append({"cand": cand, "rows": n_rows})
        if got < quota[difficulty]:
            raise RuntimeError(f"sql: database {db.db_id} yielded {got} {difficulty} questions, "
                               f"wanted {quota[difficulty]}; add templates or lower the quota")
    return out


def build(out_dir: Path) -> dict[str, list[dict]]:
    (out_dir / "dbs").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict]] = {"train": [], "heldout": []}
    # Shared across databases: schemas overlap (three have "departments"), and a question text
    # must not appear in both splits even when it targets another database.
    seen_q: set[str] = set()
    for db_id in sorted(DATABASES, key=lambda d: d in HELDOUT_DBS):
        make = DATABASES[db_id]
        db = make(random.Random(f"{SEED}:{db_id}:data"))
        path = out_dir / "dbs" / f"{db_id}.sqlite"
        write_sqlite(db, str(path))
        (out_dir / "dbs" / f"{db_id}.schema.sql").write_text(
            "\n\n".join(t.create_sql() for t in db.tables) + "\n", encoding="utf-8")
        split = "heldout" if db_id in HELDOUT_DBS else "train"
        quota = QUOTA_HELDOUT_DB if split == "heldout" else QUOTA_TRAIN_DB
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            made = _questions_for(db, conn, quota, random.Random(f"{SEED}:{db_id}:questions"),
                                  seen_q)
        finally:
            conn.close()
        for i, m in enumerate(made):
            c: Candidate = m["cand"]
            rows[split].append({
                "id": f"sql/{db_id}/{i:05d}",
                "db_id": db_id,
                "question": c.question,
                "answer": c.sql,
                "split": split,
                "metadata": {
                    "difficulty": c.difficulty,
                    "gold_sql": c.sql,
                    "ordered": c.ordered,
                    "template": c.template,
                    "tables": _tables_in(c.sql, db),
                    "result_rows": m["rows"],
                },
            })
    for split in rows:
        random.Random(f"{SEED}:order:{split}").shuffle(rows[split])
    return rows


# --- public helpers ---------------------------------------------------------------------------


def sql_db_ids(split: str | None = None) -> list[str]:
    """Database ids, optionally only those of one split."""
    if split is None:
        return list(DATABASES)
    return [d for d in DATABASES if (d in HELDOUT_DBS) == (split == "heldout")]


def sql_db_path(db_id: str) -> Path:
    """The SQLite file of ``db_id`` on this machine (building the set on first use).

    Open it read-only (``sqlite3.connect(f"file:{path}?mode=ro", uri=True)``): it is shared by
    every episode and process.
    """
    from .registry import TaskSetError, build

    if db_id not in DATABASES:
        raise TaskSetError(f"unknown SQL database {db_id!r}; known: {sorted(DATABASES)}")
    return build("sql") / "dbs" / f"{db_id}.sqlite"


def sql_schema(db_id: str) -> str:
    """The CREATE TABLE statements of ``db_id``, as an agent would see them in its prompt."""
    path = sql_db_path(db_id)
    return (path.parent / f"{db_id}.schema.sql").read_text(encoding="utf-8")
