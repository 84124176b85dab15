"""``answer``: the finish action. The env ends the episode when this call succeeds and scores
its ``answer`` argument; the tool itself only checks that there is an answer to score."""

from __future__ import annotations

from typing import Any

from .base import Tool, ToolContext, ToolResult


class AnswerTool(Tool):
    """``terminal = True`` is how an env recognises the finish action among its tools."""

    terminal = True
    name = "answer"
    description = ("Submit your final answer and end the task. Call it once, when you are done; "
                   "give only the answer itself, without explanation.")
    parameters = {
        "type": "object",
        "properties": {"answer": {"type": "string", "description": "the final answer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }

    def __init__(self, name: str = "answer", description: str | None = None) -> None:
        self.name = name
        if description is not None:
            self.description = description

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        answer = args["answer"]
        if not answer.strip():
            return ToolResult.fail("The answer is empty. Call answer again with your final answer.")
        return ToolResult(answer.strip(), metrics={"answer_chars": len(answer)})
