"""``@tool``: a type-hinted function with a docstring becomes a ``Tool``.

    @tool
    async def lookup(city: str, units: Literal["metric", "imperial"] = "metric") -> str:
        '''Current weather in a city.

        Args:
            city: the city's name, e.g. "Lyon".
            units: unit system of the reply.
        '''

Name from the function (``@tool(name=...)`` overrides), description from the docstring's first
paragraph, per-argument descriptions from its Google-style ``Args:`` section, JSON Schema from
the hints. A parameter named ``ctx`` (or annotated ``ToolContext``) receives the episode's
context and is left out of the schema. Sync functions run in a worker thread so they never
block the event loop. The function returns ``str`` or ``ToolResult``; other values are shown
as JSON.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Union

from .base import Tool, ToolContext, ToolResult

__all__ = ["FunctionTool", "parse_docstring", "schema_from_function", "tool"]

_SECTIONS = {"args", "arguments", "parameters", "params", "returns", "return", "yields", "raises",
             "examples", "example", "notes", "note", "attributes", "see also", "warnings", "todo"}
_ARG_SECTIONS = {"args", "arguments", "parameters", "params"}
_ARG_LINE = re.compile(r"^\*{0,2}(\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(summary paragraph, {arg: description}) from a Google-style docstring."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    i = 0
    while i < len(lines) and lines[i].strip() and not _is_header(lines[i]):
        summary.append(lines[i].strip())
        i += 1
    args: dict[str, str] = {}
    section = None
    arg_indent: int | None = None
    current: str | None = None
    for line in lines[i:]:
        if _is_header(line) and (len(line) - len(line.lstrip())) == 0:
            section = line.strip()[:-1].lower()
            arg_indent, current = None, None
            continue
        if section not in _ARG_SECTIONS or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if arg_indent is None:
            arg_indent = indent
        m = _ARG_LINE.match(line.strip()) if indent == arg_indent else None
        if m:
            current = m.group(1)
            args[current] = m.group(3).strip()
        elif current is not None and indent > arg_indent:
            args[current] = (args[current] + " " + line.strip()).strip()
    return " ".join(summary), args


def _is_header(line: str) -> bool:
    s = line.strip()
    return s.endswith(":") and s[:-1].lower() in _SECTIONS


def _json_schema(hint: Any, where: str) -> dict[str, Any]:
    """JSON Schema for one type hint; raises TypeError for hints with no JSON counterpart."""
    origin = typing.get_origin(hint)
    targs = typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty or hint is object:
        return {}
    if origin is typing.Annotated:
        sub = _json_schema(targs[0], where)
        text = next((a for a in targs[1:] if isinstance(a, str)), None)
        return {**sub, "description": text} if text else sub
    if hint is str:
        return {"type": "string"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is type(None):
        return {"type": "null"}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum_schema([m.value for m in hint], where)
    if origin is Literal:
        return _enum_schema(list(targs), where)
    if origin in (Union, types.UnionType):
        members = [t for t in targs if t is not type(None)]
        subs = [_json_schema(t, where) for t in members]
        nullable = len(members) < len(targs)
        if len(subs) == 1:
            sub = subs[0]
            if nullable and isinstance(sub.get("type"), str):
                return {**sub, "type": [sub["type"], "null"]}
            return {"anyOf": [sub, {"type": "null"}]} if nullable else sub
        return {"anyOf": subs + ([{"type": "null"}] if nullable else [])}
    if hint in (list, tuple, set, frozenset) or origin in (list, tuple, set, frozenset, Sequence,
                                                            typing.Sequence):
        schema: dict[str, Any] = {"type": "array"}
        if origin is tuple and targs and targs[-1] is not Ellipsis:
            schema.update(minItems=len(targs), maxItems=len(targs))
            if len(set(targs)) == 1:
                schema["items"] = _json_schema(targs[0], where)
        elif targs:
            schema["items"] = _json_schema(targs[0], where)
        if origin in (set, frozenset) or hint in (set, frozenset):
            schema["uniqueItems"] = True
        return schema
    if hint is dict or origin in (dict, Mapping, typing.Mapping):
        schema = {"type": "object"}
        if len(targs) == 2 and targs[1] is not Any:
            schema["additionalProperties"] = _json_schema(targs[1], where)
        else:
            schema["additionalProperties"] = True
        return schema
    raise TypeError(f"@tool: {where} has type {hint!r}, which has no JSON Schema equivalent; use str, "
                    "int, float, bool, list[...], dict[str, ...], Literal[...], an Enum or Optional[...]")


def _enum_schema(values: list[Any], where: str) -> dict[str, Any]:
    kinds = {"string" if isinstance(v, str) else "boolean" if isinstance(v, bool) else
             "integer" if isinstance(v, int) else "number" if isinstance(v, float) else
             "null" if v is None else "?" for v in values}
    if "?" in kinds:
        raise TypeError(f"@tool: {where}: enum values must be str, int, float, bool or None")
    if kinds == {"integer", "number"}:
        kinds = {"number"}
    schema: dict[str, Any] = {"enum": list(values)}
    if len(kinds) == 1:
        schema = {"type": kinds.pop(), **schema}
    return schema


def _is_ctx_param(p: inspect.Parameter, hint: Any) -> bool:
    return p.name == "ctx" or hint is ToolContext or (
        isinstance(hint, str) and hint.split(".")[-1] == "ToolContext")


def schema_from_function(fn: Callable[..., Any]) -> tuple[dict[str, Any], str | None, str]:
    """(parameters schema, name of the context parameter or None, summary) for ``fn``."""
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as e:  # unresolvable forward refs: say which function, not a bare NameError
        raise TypeError(f"@tool: cannot resolve the type hints of {fn.__qualname__}: {e}") from e
    summary, arg_docs = parse_docstring(fn.__doc__)
    props: dict[str, Any] = {}
    required: list[str] = []
    ctx_name = None
    for p in sig.parameters.values():
        hint = hints.get(p.name, p.annotation)
        if _is_ctx_param(p, hint):
            ctx_name = p.name
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"@tool: {fn.__qualname__} takes *{p.name}; tools need named parameters")
        if p.kind is p.POSITIONAL_ONLY:
            raise TypeError(f"@tool: {fn.__qualname__}: parameter {p.name!r} is positional-only; "
                            "tool arguments are passed by name")
        if hint is inspect.Parameter.empty:
            raise TypeError(f"@tool: parameter {p.name!r} of {fn.__qualname__} needs a type hint")
        schema = _json_schema(hint, f"parameter {p.name!r} of {fn.__qualname__}")
        if p.name in arg_docs and "description" not in schema:
            schema["description"] = arg_docs[p.name]
        if p.default is inspect.Parameter.empty:
            required.append(p.name)
        elif p.default is not None:
            default = p.default.value if isinstance(p.default, enum.Enum) else p.default
            try:
                json.dumps(default)
                schema["default"] = default
            except (TypeError, ValueError):
                pass  # a non-JSON default stays in Python only
        props[p.name] = schema
    params: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        params["required"] = required
    return params, ctx_name, summary


class FunctionTool(Tool):
    """A Tool made from a function by ``@tool``; the function stays reachable as ``.fn``."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None,
                 terminal: bool = False, concurrent: bool = True) -> None:
        params, ctx_name, summary = schema_from_function(fn)
        self.fn = fn
        self.name = name or fn.__name__
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.name):
            raise ValueError(f"@tool: name {self.name!r} must be 1-64 letters, digits, '_' or '-' "
                             "(the OpenAI function-name rule)")
        self.description = description if description is not None else summary
        self.parameters = params
        self.terminal = terminal
        self.concurrent = concurrent
        self._ctx_name = ctx_name
        self._is_async = inspect.iscoroutinefunction(fn)
        # JSON carries an Enum's value; the function expects the member.
        hints = typing.get_type_hints(fn)
        self._enums = {k: h for k, h in hints.items() if isinstance(h, type) and issubclass(h, enum.Enum)}
        functools.update_wrapper(self, fn, updated=())

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        kwargs = dict(args)
        for k, cls in self._enums.items():
            if k in kwargs and not isinstance(kwargs[k], cls):
                kwargs[k] = cls(kwargs[k])
        if self._ctx_name is not None:
            kwargs[self._ctx_name] = ctx
        if self._is_async:
            out = await self.fn(**kwargs)
        else:
            out = await asyncio.to_thread(functools.partial(self.fn, **kwargs))
            if inspect.isawaitable(out):  # a sync def that returns a coroutine
                out = await out
        return _as_result(out)


def _as_result(out: Any) -> ToolResult:
    if isinstance(out, ToolResult):
        return out
    if isinstance(out, str):
        return ToolResult(out)
    if out is None:
        return ToolResult("(no output)")
    try:
        return ToolResult(json.dumps(out, ensure_ascii=False, default=str))
    except (TypeError, ValueError):
        return ToolResult(str(out))


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None,
         terminal: bool = False, concurrent: bool = True) -> Any:
    """Decorator: ``@tool`` or ``@tool(name=..., description=..., terminal=..., concurrent=...)``."""
    def wrap(f: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(f, name=name, description=description, terminal=terminal, concurrent=concurrent)

    return wrap(fn) if fn is not None else wrap
