"""Tools an agent calls: the Tool API, tool-call parsers, and built-in tools.

    from tools import ToolSet, ToolContext, tool, get_parser

    @tool
    async def add(a: int, b: int) -> str:
        '''Add two integers.'''
        return str(a + b)

    toolset = ToolSet([add])
    parsed = get_parser("hermes").parse('<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>')
    results = await toolset.call(parsed.calls, ToolContext(episode_id="ep0"))

Built-in tools (``SearchTool``, ``SQLTool``, ``PythonTool``, ``ShellTool``, ``AnswerTool``) are
imported lazily on first access, so importing this package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Tool, ToolContext, ToolResult, ToolSet, cap_text
from .decorator import FunctionTool, tool
from .parsers import (CodeBlockParser, HermesParser, OpenAIParser, ParseResult, ToolCall, ToolCallParser,
                      get_parser, register_parser)
from .registry import get_tool, list_tools, register_tool
from .schema import ArgumentError, describe_signature, to_openai_schema, validate_args

_LAZY = {
    "AnswerTool": "tools.answer",
    "SearchTool": "tools.search",
    "SQLTool": "tools.sql",
    "PythonTool": "tools.python",
    "ShellTool": "tools.shell",
    "BM25Retriever": "tools.retrievers",
    "DenseRetriever": "tools.retrievers",
    "HybridRetriever": "tools.retrievers",
    "RemoteRetriever": "tools.retrievers",
    "make_retriever": "tools.retrievers",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'tools' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


__all__ = ["ArgumentError", "CodeBlockParser", "FunctionTool", "HermesParser", "OpenAIParser",
           "ParseResult", "Tool", "ToolCall", "ToolCallParser", "ToolContext", "ToolResult", "ToolSet",
           "cap_text", "describe_signature", "get_parser", "get_tool", "list_tools", "register_parser",
           "register_tool", "to_openai_schema", "tool", "validate_args", *_LAZY]
