"""``agent_rl/Math-v0``: computational math with a persistent Python interpreter."""

from __future__ import annotations

from typing import Any

from .rewards import math_equivalent
from .tool_env import Episode, ToolEnv

SYSTEM_PROMPT = (
    "You solve math problems exactly. Compute with the python tool instead of by hand: it is a "
    "persistent Python 3 interpreter (print what you need to see). When you have the result, "
    "call the answer tool with only the final answer.\n\n"
    "To call a tool, write\n<tool_call>\n{{\"name\": <tool name>, \"arguments\": <JSON object>}}\n</tool_call>\n\n"
    "Tools:\n{tool_list}"
)


def math_reward(task: dict[str, Any], ep: Episode) -> dict[str, float]:
    """1 for an answer equivalent to the gold one (math-verify, exact for big integers)."""
    correct = math_equivalent(ep.answer or "", str(task["answer"])) if ep.answer is not None else 0.0
    return {"total": correct, "correct": correct}


def make_math_env(split: str = "train", *, max_turns: int = 6, tool_timeout_s: float = 10.0,
                  tasks: Any = None, **kwargs: Any) -> ToolEnv:
    """Computational math (big integers, number theory, combinatorics, linear systems, dates)
    with a python tool; reward 1 for a mathematically equivalent answer."""
    import tasks as task_sets
    from tools.python import PythonTool

    return ToolEnv(
        [PythonTool(timeout_s=tool_timeout_s)],
        tasks if tasks is not None else (lambda s: task_sets.load("math", s)),
        math_reward,
        split=split, system_prompt=SYSTEM_PROMPT, max_turns=max_turns, name="agent_rl/Math-v0", **kwargs,
    )
