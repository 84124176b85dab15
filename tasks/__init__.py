"""Task sets for agent-rl: generated locally and deterministically, each with disjoint
``train`` and ``heldout`` splits.

    import tasks
    tasks.names()                          # ['math', 'searchqa', 'sql']
    rows = tasks.load("math", "train")     # list of task dicts (builds the cache on first use)
    ds = tasks.load_dataset("sql", "heldout")   # datasets.Dataset
    tasks.sql_db_path(rows[0]["db_id"])    # SQLite file for an SQL task
    tasks.sql_schema(db_id)                # its CREATE statements, for the prompt
    tasks.load_corpus("searchqa")          # the search corpus: {"id", "title", "text"} rows
    tasks.load("hub:gsm8k", "heldout")     # Hub sets, only where a network exists

Every task has ``id``, ``question``, ``answer``, ``split`` and ``metadata``; SQL tasks also have
``db_id``. The per-set fields are documented at the top of tasks.math_gen, tasks.search_gen and
tasks.sql_gen. Cache: ``$AGENT_RL_CACHE`` or ``~/.cache/agent-rl/tasks``, one directory per
generator version; ``python -m tasks build all`` fills it ahead of time.
"""

from ._io import SPLITS
from .registry import (
    TaskSetError,
    build,
    cache_root,
    corpus_path,
    last_build_seconds,
    load,
    load_corpus,
    load_dataset,
    names,
    set_dir,
)
from .sql_gen import sql_db_ids, sql_db_path, sql_schema

__all__ = [
    "SPLITS",
    "TaskSetError",
    "build",
    "cache_root",
    "corpus_path",
    "last_build_seconds",
    "load",
    "load_corpus",
    "load_dataset",
    "names",
    "set_dir",
    "sql_db_ids",
    "sql_db_path",
    "sql_schema",
]
