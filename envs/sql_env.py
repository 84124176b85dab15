"""``agent_rl/SQL-v0``: text-to-SQL over SQLite databases, with a read-only sql tool."""

from __future__ import annotations

from typing import Any

from .rewards import sql_execution_match
from .tool_env import Episode, ToolEnv

SYSTEM_PROMPT = (
    "You write SQLite queries that answer questions about a database. Explore it with the sql "
    "tool (read-only), check your query's result, then call the answer tool with the final SQL "
    "query only.\n\n"
    "To call a tool, write\n<tool_call>\n{{\"name\": <tool name>, \"arguments\": <JSON object>}}\n</tool_call>\n\n"
    "Tools:\n{tool_list}"
)


def sql_reward(task: dict[str, Any], ep: Episode) -> dict[str, float]:
    """1 when the answered query returns the gold query's result (order only where the gold's
    ORDER BY makes it matter)."""
    import tasks as task_sets

    if ep.answer is None:
        return {"total": 0.0, "execution_match": 0.0}
    md = task.get("metadata", {})
    score = sql_execution_match(ep.answer, md.get("gold_sql") or task["answer"],
                                task_sets.sql_db_path(task["db_id"]), ordered=md.get("ordered"))
    return {"total": score, "execution_match": score}


def sql_prompt(task: dict[str, Any]) -> str:
    """The question with the database's schema, as text-to-SQL prompts usually give it."""
    import tasks as task_sets

    return (f"Database `{task['db_id']}` has this schema:\n\n{task_sets.sql_schema(task['db_id'])}\n\n"
            f"Question: {task['question']}")


def make_sql_env(split: str = "train", *, max_turns: int = 6, tasks: Any = None, **kwargs: Any) -> ToolEnv:
    """Text-to-SQL over generated SQLite databases (held-out databases are unseen in train) with
    a read-only sql tool; reward: execution match with the gold query."""
    import tasks as task_sets
    from tools.sql import SQLTool

    return ToolEnv(
        [SQLTool(lambda ctx: task_sets.sql_db_path(ctx.task["db_id"]))],
        tasks if tasks is not None else (lambda s: task_sets.load("sql", s)),
        sql_reward,
        split=split, system_prompt=SYSTEM_PROMPT, prompt_fn=sql_prompt, max_turns=max_turns,
        name="agent_rl/SQL-v0", **kwargs,
    )
