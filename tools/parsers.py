"""Tool-call parsers: an assistant turn -> the calls it makes, the problems found, and its prose.

Every parser is total: for any input (random bytes, megabytes of text, half-written JSON) it
returns a ``ParseResult`` and never raises. Problems become entries in ``errors``, each written
for the agent: what was wrong, where, and the format that would have worked. Scanning uses
``str.find`` and line walks, never backtracking regexes, so cost is linear in the input.

Formats:

- ``hermes``/``qwen``: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks.
- ``code``: fenced code blocks in chosen languages become calls of one tool (``python``).
- ``openai``: an OpenAI message's ``tool_calls`` (a dict, a list, or their JSON text).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CodeBlockParser", "HermesParser", "OpenAIParser", "ParseResult", "ToolCall",
           "ToolCallParser", "get_parser", "parser_names", "register_parser"]

_SNIPPET = 160


@dataclass(frozen=True)
class ToolCall:
    """One call the agent asked for. ``raw`` is the exact text it came from."""

    name: str
    arguments: dict[str, Any]
    id: str = ""
    raw: str = ""


@dataclass
class ParseResult:
    """``text`` is the turn with tool-call blocks removed (where a final answer is looked for)."""

    calls: list[ToolCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    text: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors


class ToolCallParser:
    """Base: subclasses implement ``_parse``; ``parse`` adds the never-raise guarantee."""

    name = "base"
    #: How a correct call looks, quoted in error messages.
    format_hint = ""

    def parse(self, output: Any) -> ParseResult:
        try:
            return self._parse(output)
        except Exception as e:  # a parser bug must cost one turn, not the rollout
            text = output if isinstance(output, str) else ""
            return ParseResult([], [f"The tool-call parser failed on this message ({type(e).__name__}); "
                                    f"please re-send the call in this format:\n{self.format_hint}"], text)

    def _parse(self, output: Any) -> ParseResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def render(self, name: str, arguments: Mapping[str, Any]) -> str:
        """The text of one call in this format (for prompts, few-shot examples, SFT data)."""
        raise NotImplementedError


def _snippet(s: str) -> str:
    s = s.strip()
    if len(s) > _SNIPPET:
        s = s[: _SNIPPET - 20] + " ... " + s[-15:]
    return s


def _json_error(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} at line {e.lineno}, column {e.colno}"
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e)


def _decode_call(obj: Any, label: str, hint: str) -> tuple[str, dict[str, Any]] | str:
    """(name, arguments) from a decoded ``{"name", "arguments"}`` object, or an error message."""
    if not isinstance(obj, dict):
        kind = "an array" if isinstance(obj, list) else f"a {type(obj).__name__}"
        return f"{label} holds {kind}, not a JSON object. Expected:\n{hint}"
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        got = "no \"name\" key" if "name" not in obj else f"\"name\" = {json.dumps(name)[:60]}"
        return f"{label} has {got}; it needs \"name\" (the tool's name, a string). Expected:\n{hint}"
    # "parameters" is what some models (Llama 3.x) write for the arguments.
    key = "arguments" if "arguments" in obj else "parameters" if "parameters" in obj else None
    args: Any = {} if key is None else obj[key]
    if isinstance(args, str):
        if not args.strip():
            args = {}
        else:
            try:
                args = json.loads(args)
            except (ValueError, RecursionError) as e:
                return (f"{label} (tool '{name}'): \"{key}\" is a string that is not valid JSON "
                        f"({_json_error(e)}): {_snippet(obj[key])!r}. Give the arguments as a JSON object.")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return (f"{label} (tool '{name}'): \"{key}\" must be a JSON object of argument names to values, "
                f"got {type(args).__name__}. Expected:\n{hint}")
    return name.strip(), args


class HermesParser(ToolCallParser):
    """Qwen/Hermes format: ``<tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>``.

    Tolerated: several blocks per turn; ``arguments`` given as a JSON string; ``parameters`` in
    place of ``arguments``; a ```json fence inside the block; a JSON array of call objects in one
    block. With ``allow_unclosed`` a final block lacking ``</tool_call>`` is accepted when its
    JSON is complete (useful when the sampler stops *at* ``</tool_call>`` and drops it).
    """

    name = "hermes"

    def __init__(self, open_tag: str = "<tool_call>", close_tag: str = "</tool_call>",
                 allow_unclosed: bool = False) -> None:
        if not open_tag or not close_tag:
            raise ValueError("HermesParser: open_tag and close_tag must be non-empty")
        self.open_tag, self.close_tag = open_tag, close_tag
        self.allow_unclosed = allow_unclosed
        self.format_hint = f'{open_tag}\n{{"name": "<tool name>", "arguments": {{"<arg>": <value>}}}}\n{close_tag}'

    def render(self, name: str, arguments: Mapping[str, Any]) -> str:
        body = json.dumps({"name": name, "arguments": dict(arguments)}, ensure_ascii=False)
        return f"{self.open_tag}\n{body}\n{self.close_tag}"

    def _parse(self, output: Any) -> ParseResult:
        if not isinstance(output, str):
            return ParseResult([], [f"Expected the assistant's text, got {type(output).__name__}."], "")
        text = output
        op, cl = self.open_tag, self.close_tag
        calls: list[ToolCall] = []
        errors: list[str] = []
        prose: list[str] = []
        pos, n_block = 0, 0
        close_at = 0  # cached next close tag: re-searching from every block would be quadratic
        while True:
            start = text.find(op, pos)
            if start < 0:
                tail = text[pos:]
                if cl in tail:
                    errors.append(f"Found {cl} without a matching {op} before it. Expected:\n{self.format_hint}")
                    tail = tail.replace(cl, "")
                prose.append(tail)
                break
            before = text[pos:start]
            if cl in before:
                errors.append(f"Found {cl} without a matching {op} before it. Expected:\n{self.format_hint}")
                before = before.replace(cl, "")
            prose.append(before)
            n_block += 1
            body_start = start + len(op)
            if 0 <= close_at < body_start:
                close_at = text.find(cl, body_start)
            end = close_at
            nxt = text.find(op, body_start)
            if end < 0 or (0 <= nxt < end):
                stop = nxt if nxt >= 0 else len(text)
                body = text[body_start:stop]
                accepted = False
                if self.allow_unclosed and nxt < 0:
                    before_n = len(calls)
                    trial: list[str] = []
                    self._block(body, text[start:], n_block, calls, trial)
                    accepted = not trial and len(calls) > before_n
                    if not accepted:
                        del calls[before_n:]
                if not accepted:
                    errors.append(f"Tool call #{n_block}: the {op} block was never closed with {cl} "
                                  f"(it starts with {_snippet(body)!r}). Expected:\n{self.format_hint}")
                pos = stop
                if nxt < 0:
                    break
                continue
            self._block(text[body_start:end], text[start:end + len(cl)], n_block, calls, errors)
            pos = end + len(cl)
        return ParseResult(calls, _cap_errors(errors), "".join(prose).strip())

    def _block(self, body: str, raw: str, n: int, calls: list[ToolCall], errors: list[str]) -> None:
        label = f"Tool call #{n}"
        src = _strip_fence(body.strip())
        if not src:
            errors.append(f"{label} is empty. Expected:\n{self.format_hint}")
            return
        try:
            obj = json.loads(src)
        except (ValueError, RecursionError) as e:
            errors.append(f"{label} is not valid JSON ({_json_error(e)}): {_snippet(src)!r}. "
                          f"Expected:\n{self.format_hint}")
            return
        objs = obj if isinstance(obj, list) and obj and all(isinstance(o, dict) for o in obj) else [obj]
        for i, o in enumerate(objs):
            got = _decode_call(o, label if len(objs) == 1 else f"{label}[{i}]", self.format_hint)
            if isinstance(got, str):
                errors.append(got)
            else:
                calls.append(ToolCall(got[0], got[1], f"call_{len(calls)}", raw))


_MAX_ERRORS = 8


def _cap_errors(errors: list[str]) -> list[str]:
    # Thousands of broken blocks would otherwise become one enormous error message.
    if len(errors) <= _MAX_ERRORS:
        return errors
    return errors[:_MAX_ERRORS] + [f"... and {len(errors) - _MAX_ERRORS} more problems like these."]


def _strip_fence(s: str) -> str:
    if s.startswith("```"):
        nl = s.find("\n")
        s = s[nl + 1:] if nl >= 0 else ""
        if s.rstrip().endswith("```"):
            s = s.rstrip()[:-3]
    return s.strip()


class CodeBlockParser(ToolCallParser):
    """Fenced code blocks (```python ... ```) become calls ``tool_name({arg_name: code})``.

    Only blocks whose info string names one of ``languages`` count; other blocks stay in the
    text. ``bare=True`` also takes fences with no language. Fences follow CommonMark: three or
    more backticks (or tildes), up to three spaces of indent, closed by a fence at least as long.
    """

    name = "code"

    def __init__(self, tool_name: str = "python", languages: Sequence[str] = ("python", "py"),
                 arg_name: str = "code", bare: bool = False) -> None:
        self.tool_name, self.arg_name, self.bare = tool_name, arg_name, bare
        self.languages = tuple(lang.lower() for lang in languages)
        lang = self.languages[0] if self.languages else ""
        self.format_hint = f"```{lang}\n<code>\n```"

    def render(self, name: str, arguments: Mapping[str, Any]) -> str:
        lang = self.languages[0] if self.languages else ""
        return f"```{lang}\n{arguments.get(self.arg_name, '')}\n```"

    def _parse(self, output: Any) -> ParseResult:
        if not isinstance(output, str):
            return ParseResult([], [f"Expected the assistant's text, got {type(output).__name__}."], "")
        lines = output.splitlines(keepends=True)
        calls: list[ToolCall] = []
        errors: list[str] = []
        prose: list[str] = []
        i, n = 0, len(lines)
        while i < n:
            fence = _fence_open(lines[i])
            if fence is None:
                prose.append(lines[i])
                i += 1
                continue
            char, width, info = fence
            j = i + 1
            while j < n and not _fence_close(lines[j], char, width):
                j += 1
            lang = info.split()[0].lower() if info.split() else ""
            wanted = lang in self.languages or (self.bare and not lang)
            if not wanted:
                prose.extend(lines[i:j + 1])
                i = j + 1
                continue
            block_no = len(calls) + 1
            if j >= n:
                errors.append(f"Code block #{block_no} (```{lang}) was never closed with ```; it was not run. "
                              f"Expected:\n{self.format_hint}")
                prose.extend(lines[i:])
                break
            code = "".join(lines[i + 1:j])
            if code.endswith("\n"):
                code = code[:-1]
            if not code.strip():
                errors.append(f"Code block #{block_no} (```{lang}) is empty.")
            else:
                calls.append(ToolCall(self.tool_name, {self.arg_name: code}, f"call_{len(calls)}",
                                      "".join(lines[i:j + 1])))
            i = j + 1
        return ParseResult(calls, _cap_errors(errors), "".join(prose).strip())


def _fence_open(line: str) -> tuple[str, int, str] | None:
    s = line.lstrip(" ")
    if len(line) - len(s) > 3 or s[:3] not in ("```", "~~~"):
        return None
    char = s[0]
    width = len(s) - len(s.lstrip(char))
    info = s[width:].strip()
    if char == "`" and "`" in info:  # CommonMark: a backtick fence's info string has no backticks
        return None
    return char, width, info


def _fence_close(line: str, char: str, width: int) -> bool:
    s = line.strip()
    return len(s) >= width and s == char * len(s)


class OpenAIParser(ToolCallParser):
    """OpenAI chat ``tool_calls``: ``[{"id", "type": "function", "function": {"name",
    "arguments": "<json>"}}]``.

    Input may be that list, an assistant message dict (``content`` + ``tool_calls``, or the
    legacy ``function_call``), or the JSON text of either. Plain text that isn't such JSON is a
    turn without calls.
    """

    name = "openai"
    format_hint = ('{"tool_calls": [{"id": "call_0", "type": "function", "function": '
                   '{"name": "<tool name>", "arguments": "{\\"<arg>\\": <value>}"}}]}')

    def render(self, name: str, arguments: Mapping[str, Any]) -> str:
        return json.dumps({"content": "", "tool_calls": [{"id": "call_0", "type": "function", "function": {
            "name": name, "arguments": json.dumps(dict(arguments), ensure_ascii=False)}}]}, ensure_ascii=False)

    def _parse(self, output: Any) -> ParseResult:
        if isinstance(output, str):
            s = output.strip()
            if not s.startswith(("{", "[")):
                return ParseResult([], [], output.strip())
            try:
                output = json.loads(s)
            except (ValueError, RecursionError):
                return ParseResult([], [], output.strip())
            if isinstance(output, dict) and not ({"tool_calls", "function_call", "content"} & output.keys()):
                return ParseResult([], [], s)  # some JSON the agent wrote, not a message
        content = ""
        if isinstance(output, Mapping):
            content = output.get("content") or ""
            if not isinstance(content, str):  # content parts: keep the text ones
                content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping)) \
                    if isinstance(content, list) else str(content)
            if output.get("tool_calls") is not None:
                raw_calls = output["tool_calls"]
            elif output.get("function_call") is not None:
                raw_calls = [{"type": "function", "function": output["function_call"]}]
            else:
                raw_calls = []
        elif isinstance(output, list):
            raw_calls = output
        else:
            return ParseResult([], [f"Expected an assistant message or a tool_calls list, "
                                    f"got {type(output).__name__}."], "")
        if not isinstance(raw_calls, list):
            return ParseResult([], [f"\"tool_calls\" must be a list. Expected:\n{self.format_hint}"], content.strip())
        calls: list[ToolCall] = []
        errors: list[str] = []
        for i, tc in enumerate(raw_calls):
            label = f"Tool call #{i + 1}"
            if not isinstance(tc, Mapping):
                errors.append(f"{label} is a {type(tc).__name__}, not an object. Expected:\n{self.format_hint}")
                continue
            fn = tc.get("function")
            if not isinstance(fn, Mapping):
                errors.append(f"{label} has no \"function\" object. Expected:\n{self.format_hint}")
                continue
            got = _decode_call(dict(fn), label, self.format_hint)
            if isinstance(got, str):
                errors.append(got)
                continue
            cid = tc.get("id")
            cid = cid if isinstance(cid, str) and cid else f"call_{i}"
            calls.append(ToolCall(got[0], got[1], cid, json.dumps(tc, ensure_ascii=False, default=str)))
        return ParseResult(calls, _cap_errors(errors), content.strip())


_PARSERS: dict[str, Callable[..., ToolCallParser]] = {
    "hermes": HermesParser,
    "qwen": HermesParser,
    "code": CodeBlockParser,
    "codeblock": CodeBlockParser,
    "openai": OpenAIParser,
}


def register_parser(name: str, factory: Callable[..., ToolCallParser]) -> None:
    """Make ``get_parser(name)`` build ``factory(**kwargs)``."""
    _PARSERS[name.lower()] = factory


def parser_names() -> list[str]:
    return sorted(_PARSERS)


def get_parser(name: str | ToolCallParser, **kwargs: Any) -> ToolCallParser:
    """A parser by name (``hermes``/``qwen``, ``code``, ``openai``); an instance passes through."""
    if isinstance(name, ToolCallParser):
        return name
    factory = _PARSERS.get(str(name).lower())
    if factory is None:
        raise ValueError(f"unknown tool-call parser {name!r}; known: {', '.join(parser_names())}")
    return factory(**kwargs)
