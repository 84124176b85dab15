"""JSON Schema for tool arguments: validation (with a few forgiving coercions) and OpenAI export.

The validator covers the subset of JSON Schema that function-calling tools use: ``type`` (one
or a list), ``properties``/``required``/``additionalProperties``, ``items``, ``enum``/``const``,
numeric and length bounds, ``pattern``, ``anyOf``/``oneOf``, ``default``. Its messages are
written for the agent, which reads them as the tool's reply and should be able to fix the call.

Coercion policy (applied only where the value is otherwise invalid, and only when lossless):

- integer: ``"3"`` -> 3 and ``3.0`` -> 3; never a bool, never ``3.5``.
- number: ``"2.5"`` -> 2.5 (finite values only).
- boolean: ``"true"``/``"false"`` (any case) -> True/False; never 0/1.
- string: an int or float -> its JSON text (``42`` -> ``"42"``), because models often give a
  numeric answer unquoted; never a bool, list or object.
- array/object: a string holding JSON of that shape is decoded (models sometimes double-encode).

Unknown keys are rejected unless the schema sets ``additionalProperties`` (true or a schema):
a misspelt argument silently ignored is worse than an error the agent can fix. Missing optional
keys with a ``default`` in the schema are filled in.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["ArgumentError", "describe_signature", "to_openai_schema", "validate_args"]

_JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")


class ArgumentError(ValueError):
    """Arguments that don't match a tool's schema; ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def validate_args(args: Any, schema: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``args`` against an object schema; return a coerced copy or raise ArgumentError."""
    if not isinstance(args, Mapping):
        raise ArgumentError([f"the arguments must be a JSON object, got {_kind(args)}"])
    problems: list[str] = []
    out = _check(dict(args), schema, "", problems)
    if problems:
        raise ArgumentError(problems)
    return out


def describe_signature(name: str, schema: Mapping[str, Any]) -> str:
    """A one-line, human-readable signature, e.g. ``search(query: string, top_k?: integer)``."""
    props = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    parts = []
    for key, sub in props.items():
        opt = "" if key in required else "?"
        parts.append(f"{key}{opt}: {_type_label(sub)}")
    return f"{name}({', '.join(parts)})"


def to_openai_schema(tool_or_tools: Any) -> list[dict[str, Any]]:
    """Tools as OpenAI function specs, the form HF chat templates take via ``tools=``.

    Accepts one tool, an iterable of tools, or a name->tool mapping (e.g. a ``ToolSet``).
    """
    if isinstance(tool_or_tools, Mapping):
        items: Iterable[Any] = tool_or_tools.values()
    elif _looks_like_tool(tool_or_tools):
        items = [tool_or_tools]
    else:
        items = tool_or_tools
    specs = []
    for t in items:
        if not _looks_like_tool(t):
            raise TypeError(f"to_openai_schema: expected a Tool, got {type(t).__name__}")
        specs.append({"type": "function", "function": {
            "name": t.name,
            "description": t.description or "",
            "parameters": copy.deepcopy(dict(t.parameters)),
        }})
    return specs


# ---- internals ---------------------------------------------------------------------------


def _looks_like_tool(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("name", "description", "parameters")) and callable(obj)


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean {json.dumps(v)}"
    if isinstance(v, int):
        return f"integer {v}"
    if isinstance(v, float):
        return f"number {v!r}"
    if isinstance(v, str):
        s = v if len(v) <= 40 else v[:37] + "..."
        return f"string {json.dumps(s, ensure_ascii=False)}"
    if isinstance(v, Mapping):
        return "object"
    if isinstance(v, (list, tuple)):
        return "array"
    return type(v).__name__


def _type_label(sub: Mapping[str, Any]) -> str:
    if "enum" in sub:
        return " | ".join(json.dumps(v) for v in sub["enum"])
    t = sub.get("type")
    if isinstance(t, list):
        return " | ".join(t)
    if t == "array" and isinstance(sub.get("items"), Mapping):
        return f"array of {_type_label(sub['items'])}"
    if t:
        return str(t)
    for key in ("anyOf", "oneOf"):
        if key in sub:
            return " | ".join(_type_label(s) for s in sub[key])
    return "any"


def _where(path: str) -> str:
    return f"argument '{path}'" if path else "the arguments"


def _is_type(v: Any, t: str) -> bool:
    if t == "string":
        return isinstance(v, str)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "array":
        return isinstance(v, (list, tuple))
    if t == "object":
        return isinstance(v, Mapping)
    if t == "null":
        return v is None
    return True  # an unknown type name constrains nothing rather than failing every call


_NOT = object()


def _coerce(v: Any, t: str) -> Any:
    """A lossless conversion of ``v`` to JSON type ``t``, or _NOT."""
    if t == "integer":
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, str) and re.fullmatch(r"\s*[-+]?\d{1,30}\s*", v):
            return int(v)
        if isinstance(v, str) and re.fullmatch(r"\s*[-+]?\d{1,30}\.0*\s*", v):
            return int(float(v))
    elif t == "number":
        if isinstance(v, str) and len(v) < 64:
            try:
                f = float(v)
            except ValueError:
                return _NOT
            if math.isfinite(f):
                return int(f) if f.is_integer() and re.fullmatch(r"\s*[-+]?\d+\s*", v) else f
    elif t == "boolean":
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):
            return v.strip().lower() == "true"
    elif t == "string":
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return json.dumps(v)
    elif t in ("array", "object") and isinstance(v, str) and v.strip()[:1] in ("[", "{"):
        try:
            d = json.loads(v)
        except (ValueError, RecursionError):
            return _NOT
        if _is_type(d, t):
            return d
    return _NOT


def _check(v: Any, schema: Mapping[str, Any], path: str, problems: list[str]) -> Any:
    if not isinstance(schema, Mapping) or not schema:
        return v  # {} or true: anything goes

    for key in ("anyOf", "oneOf"):
        if key in schema:
            return _check_union(v, schema, key, path, problems)

    types = schema.get("type")
    if types is not None:
        tlist = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(v, t) for t in tlist):
            for t in tlist:
                c = _coerce(v, t)
                if c is not _NOT:
                    v = c
                    break
            else:
                want = " or ".join(tlist)
                problems.append(f"{_where(path)} must be {_article(want)}{want}, got {_kind(v)}")
                return v

    if "const" in schema and v != schema["const"]:
        problems.append(f"{_where(path)} must be {json.dumps(schema['const'])}, got {_kind(v)}")
    if "enum" in schema and not any(_same(v, e) for e in schema["enum"]):
        allowed = ", ".join(json.dumps(e, ensure_ascii=False) for e in schema["enum"])
        problems.append(f"{_where(path)} must be one of {allowed}; got {_kind(v)}")

    if isinstance(v, str):
        _check_string(v, schema, path, problems)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        _check_number(v, schema, path, problems)
    elif isinstance(v, (list, tuple)):
        v = _check_array(list(v), schema, path, problems)
    elif isinstance(v, Mapping):
        v = _check_object(dict(v), schema, path, problems)
    return v


def _article(word: str) -> str:
    return "an " if word[:1] in "aeiou" else "a "


def _same(a: Any, b: Any) -> bool:
    # JSON equality: True is not 1, 1 is 1.0
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _check_union(v: Any, schema: Mapping[str, Any], key: str, path: str, problems: list[str]) -> Any:
    options = schema[key]
    # Exact matches first, so coercion can't pick the wrong branch of e.g. [integer, string].
    for strict in (True, False):
        for sub in options:
            if strict and isinstance(sub, Mapping) and "type" in sub:
                ts = [sub["type"]] if isinstance(sub["type"], str) else sub["type"]
                if not any(_is_type(v, t) for t in ts):
                    continue
            trial: list[str] = []
            out = _check(v, sub, path, trial)
            if not trial:
                return out
    labels = " or ".join(_type_label(s) for s in options if isinstance(s, Mapping))
    problems.append(f"{_where(path)} must be {labels}, got {_kind(v)}")
    return v


def _check_string(v: str, schema: Mapping[str, Any], path: str, problems: list[str]) -> None:
    lo, hi = schema.get("minLength"), schema.get("maxLength")
    if lo is not None and len(v) < lo:
        problems.append(f"{_where(path)} must have at least {lo} character{'s' * (lo != 1)}"
                        + (" (it is empty)" if not v else f", got {len(v)}"))
    if hi is not None and len(v) > hi:
        problems.append(f"{_where(path)} must have at most {hi} characters, got {len(v)}")
    pat = schema.get("pattern")
    if pat is not None:
        try:
            ok = re.search(pat, v) is not None
        except re.error:
            ok = True  # a broken pattern is the tool author's bug, not the agent's
        if not ok:
            problems.append(f"{_where(path)} must match the pattern {pat!r}")


def _check_number(v: float, schema: Mapping[str, Any], path: str, problems: list[str]) -> None:
    if isinstance(v, float) and not math.isfinite(v):
        problems.append(f"{_where(path)} must be a finite number")
        return
    bounds = (("minimum", lambda a, b: a < b, "at least"), ("maximum", lambda a, b: a > b, "at most"),
              ("exclusiveMinimum", lambda a, b: a <= b, "greater than"),
              ("exclusiveMaximum", lambda a, b: a >= b, "less than"))
    for key, bad, words in bounds:
        lim = schema.get(key)
        if isinstance(lim, (int, float)) and not isinstance(lim, bool) and bad(v, lim):
            problems.append(f"{_where(path)} must be {words} {lim}, got {v}")


def _check_array(v: list, schema: Mapping[str, Any], path: str, problems: list[str]) -> list:
    lo, hi = schema.get("minItems"), schema.get("maxItems")
    if lo is not None and len(v) < lo:
        problems.append(f"{_where(path)} must have at least {lo} item{'s' * (lo != 1)}, got {len(v)}")
    if hi is not None and len(v) > hi:
        problems.append(f"{_where(path)} must have at most {hi} items, got {len(v)}")
    items = schema.get("items")
    if isinstance(items, Mapping):
        v = [_check(x, items, f"{path}[{i}]", problems) for i, x in enumerate(v)]
    if schema.get("uniqueItems"):
        seen: list[Any] = []
        for x in v:
            if any(_same(x, y) for y in seen):
                problems.append(f"{_where(path)} must not repeat items ({_kind(x)} appears twice)")
                break
            seen.append(x)
    return v


def _check_object(v: dict, schema: Mapping[str, Any], path: str, problems: list[str]) -> dict:
    props: Mapping[str, Any] = schema.get("properties") or {}
    required = list(schema.get("required") or ())
    # With no properties declared, an object schema constrains nothing (a plain dict hint).
    extra = schema.get("additionalProperties", not (props or "properties" in schema))
    prefix = f"{path}." if path else ""

    for key in required:
        if key not in v:
            sub = props.get(key, {})
            problems.append(f"missing required argument '{prefix}{key}' ({_type_label(sub)})")
    unknown = [k for k in v if k not in props]
    if unknown and extra is False:
        known = ", ".join(f"'{k}'" for k in props) or "none"
        for k in unknown:
            hint = _close(k, list(props))
            problems.append(f"unknown argument '{prefix}{k}'" + (f" (did you mean '{hint}'?)" if hint else "")
                            + f"; allowed: {known}")
    out: dict[str, Any] = {}
    for k, x in v.items():
        if k in props:
            out[k] = _check(x, props[k], prefix + k, problems)
        elif isinstance(extra, Mapping):
            out[k] = _check(x, extra, prefix + k, problems)
        else:
            out[k] = x
    for k, sub in props.items():
        if k not in out and isinstance(sub, Mapping) and "default" in sub:
            out[k] = copy.deepcopy(sub["default"])
    return out


def _close(word: str, options: list[str]) -> str | None:
    import difflib

    m = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return m[0] if m else None
