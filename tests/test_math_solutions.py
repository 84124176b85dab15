"""The scripted math expert: every task's solution program computes exactly its stored answer."""

from __future__ import annotations

import collections
import contextlib
import copy
import io
import json
import re

import pytest

import tasks
from tasks.math_families import FAMILIES, WEEKDAYS
from tasks.math_rg import SOURCES
from tasks.math_solutions import (
    SOLVERS,
    expert_answer_turn,
    expert_code_turn,
    expert_turns,
    solution_code,
)

_CALL = re.compile(r"<tool_call>\n(.*?)\n</tool_call>", re.S)


@pytest.fixture(scope="module")
def math_tasks() -> list[dict]:
    return tasks.load("math", "train") + tasks.load("math", "heldout")


def _run(code: str) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, "<solution>", "exec"), {"__name__": "__main__"})
    return buf.getvalue()


def _check(task: dict) -> str | None:
    """None when the task's program prints its answer and doesn't contain it; else why not."""
    code = solution_code(task)
    answer = task["answer"]
    # Long answers must be computed, not copied -- unless the question itself states them
    # (a prime's factorisation is the prime; a CRT solution may equal a residue).
    if (len(answer) > 6 and answer not in WEEKDAYS and answer in code
            and answer not in task["question"]):
        return f"{task['id']}: answer appears literally in the code"
    try:
        out = _run(code).strip()
    except Exception as e:  # noqa: BLE001 -- report which task broke, and how
        return f"{task['id']}: {type(e).__name__}: {e}"
    if out != answer:
        return f"{task['id']}: printed {out[:80]!r}, expected {answer[:80]!r}"
    return None


def test_every_family_has_a_solver():
    families = set(FAMILIES) | {f"rg_{s.name}" for s in SOURCES}
    assert families <= set(SOLVERS), sorted(families - set(SOLVERS))


def test_every_math_task_is_solved(math_tasks):
    assert len(math_tasks) >= 2300
    failures = [why for t in math_tasks if (why := _check(t))]
    per_family = collections.Counter(t["metadata"]["family"] for t in math_tasks)
    assert not failures, f"{len(failures)} failures, e.g. {failures[:5]} (families: {per_family})"


def test_reasoning_gym_tasks_solved_from_question_text(math_tasks):
    rg = [t for t in math_tasks if t["metadata"]["source"] == "reasoning_gym"]
    if not rg:
        pytest.skip("the math set was built without reasoning-gym")
    failures = []
    for t in rg:
        bare = copy.deepcopy(t)
        bare["metadata"]["params"] = "{}"
        if why := _check(bare):
            failures.append(why)
    assert not failures, failures[:5]


def test_unknown_family_raises():
    with pytest.raises(ValueError, match="no solution template for family 'nope'"):
        solution_code({"question": "?", "answer": "1", "metadata": {"family": "nope"}})


def test_expert_turns_format(math_tasks):
    by_family = {}
    for t in math_tasks:
        by_family.setdefault(t["metadata"]["family"], t)
    for fam, t in by_family.items():
        turn = expert_code_turn(t)
        assert turn.count("<tool_call>") == 1 and turn.endswith("</tool_call>")
        intro = turn.split("<tool_call>")[0].strip()
        assert intro and "\n" not in intro, fam
        call = json.loads(_CALL.search(turn).group(1))
        assert call == {"name": "python", "arguments": {"code": solution_code(t)}}

        output = _run(call["arguments"]["code"])
        turns = expert_turns(t, output)
        assert turns[0] == turn and len(turns) == 2 and expert_turns(t) == [turn]
        answer_call = json.loads(_CALL.search(turns[1]).group(1))
        assert answer_call == {"name": "answer", "arguments": {"answer": t["answer"]}}, fam

    # The answer is the last non-empty line, stripped.
    out = expert_answer_turn("checking...\n  2 × 3 × 7  \n\n")
    assert json.loads(_CALL.search(out).group(1))["arguments"]["answer"] == "2 × 3 × 7"
    assert json.loads(_CALL.search(expert_answer_turn(""))
                      .group(1))["arguments"]["answer"] == ""


def test_expert_turns_parse_with_hermes_parser(math_tasks):
    parsers = pytest.importorskip("tools.parsers")
    parser = parsers.get_parser("hermes")
    t = next(t for t in math_tasks if t["metadata"]["family"] == "linear_system")
    res = parser.parse(expert_code_turn(t))
    assert not res.errors and len(res.calls) == 1
    assert res.calls[0].name == "python" and res.calls[0].arguments["code"] == solution_code(t)
    res = parser.parse(expert_answer_turn("1 × 2\n"))
    assert not res.errors and res.calls[0].arguments == {"answer": "1 × 2"}
