"""Declarative table descriptions for the SQL databases.

A schema says more than SQLite needs: each column's *role* (label, category, number, date,
foreign key) and its natural-language name. The question templates in ``sql_gen`` read these
to phrase questions and fill parameters from the data, so one set of templates works on every
database, held-out ones included.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any, Callable

# Roles the templates understand.
PK, LABEL, CAT, NUM, DATE, FK, TEXT = "pk", "label", "cat", "num", "date", "fk", "text"


@dataclass(frozen=True)
class Col:
    name: str
    sqltype: str  # INTEGER | REAL | TEXT (dates are ISO TEXT, as is usual in SQLite)
    role: str = TEXT
    nl: str = ""  # how a question names it ("signup date"); "" = never asked about
    ref: str = ""  # parent table of a foreign key
    nullable: bool = False
    # FK only: the child rows as a noun phrase about a parent ("orders placed by {p}"), and
    # what a parent "has" of them ("orders"; "departing flights" where two FKs share a parent).
    phrase: str = ""
    rel: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    singular: str
    plural: str
    cols: tuple[Col, ...]

    def col(self, name: str) -> Col:
        return next(c for c in self.cols if c.name == name)

    def by_role(self, role: str) -> list[Col]:
        return [c for c in self.cols if c.role == role and (c.nl or role == FK)]

    @property
    def label(self) -> Col | None:
        labels = self.by_role(LABEL)
        return labels[0] if labels else None

    def create_sql(self) -> str:
        lines = []
        for c in self.cols:
            line = f"  {c.name} {c.sqltype}"
            if c.role == PK:
                line += " PRIMARY KEY"
            elif not c.nullable:
                line += " NOT NULL"
            lines.append(line)
        for c in self.cols:
            if c.role == FK:
                lines.append(f"  FOREIGN KEY ({c.name}) REFERENCES {c.ref}(id)")
        return f"CREATE TABLE {self.name} (\n" + ",\n".join(lines) + "\n);"


# A custom template: (conn, rng) -> (template, difficulty, question, sql, ordered) or None.
CustomTemplate = Callable[[Any, random.Random], "tuple[str, str, str, str, bool] | None"]


@dataclass
class Database:
    db_id: str
    description: str
    tables: tuple[Table, ...]
    rows: dict[str, list[tuple]]
    custom: tuple[CustomTemplate, ...] = field(default_factory=tuple)

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


# --- value helpers used by the data generators ------------------------------------------------


def rand_date(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    return dt.date.fromordinal(rng.randint(start.toordinal(), end.toordinal()))


def iso(d: dt.date | None) -> str | None:
    return d.isoformat() if d else None


def maybe(rng: random.Random, p_null: float, value: Any) -> Any:
    """NULL with probability ``p_null``: real data has gaps, and questions probe them."""
    return None if rng.random() < p_null else value
