"""Tool-call parsers: the formats they accept, the errors they report, and that they never raise."""

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools.parsers import (CodeBlockParser, HermesParser, OpenAIParser, ParseResult, ToolCall, get_parser,
                           parser_names, register_parser)

HINT = '{"name": "<tool name>", "arguments"'


def tc(name, args):
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": args})}\n</tool_call>'


# ---- hermes ------------------------------------------------------------------------------


def test_hermes_single_call_and_prose():
    r = HermesParser().parse("Let me look.\n" + tc("search", {"query": "Oslo"}) + "\n")
    assert r.ok and r.text == "Let me look."
    assert [(c.name, c.arguments) for c in r.calls] == [("search", {"query": "Oslo"})]
    assert r.calls[0].raw.startswith("<tool_call>") and r.calls[0].raw.endswith("</tool_call>")
    assert r.calls[0].id == "call_0"


def test_hermes_several_blocks_keep_order_and_unique_ids():
    text = tc("a", {"x": 1}) + " mid " + tc("b", {}) + tc("c", {"y": [1, 2]})
    r = HermesParser().parse(text)
    assert [c.name for c in r.calls] == ["a", "b", "c"]
    assert len({c.id for c in r.calls}) == 3
    assert r.text == "mid"


def test_hermes_tolerates_string_arguments_parameters_key_and_fences():
    p = HermesParser()
    r = p.parse('<tool_call>{"name": "f", "arguments": "{\\"k\\": 2}"}</tool_call>')
    assert r.calls[0].arguments == {"k": 2}
    r = p.parse('<tool_call>{"name": "f", "parameters": {"k": 3}}</tool_call>')
    assert r.calls[0].arguments == {"k": 3}
    r = p.parse('<tool_call>\n```json\n{"name": "f", "arguments": {"k": 4}}\n```\n</tool_call>')
    assert r.calls[0].arguments == {"k": 4}
    r = p.parse('<tool_call>{"name": "f"}</tool_call>')  # no arguments: a no-argument call
    assert r.ok and r.calls[0].arguments == {}
    r = p.parse('<tool_call>[{"name": "f", "arguments": {}}, {"name": "g", "arguments": {}}]</tool_call>')
    assert [c.name for c in r.calls] == ["f", "g"]


@pytest.mark.parametrize("body,needle", [
    ('{"name": "f", "arguments": {"k": 1}', "not valid JSON"),
    ("", "is empty"),
    ('"just a string"', "not a JSON object"),
    ("[1, 2]", "not a JSON object"),
    ('{"arguments": {}}', 'no "name" key'),
    ('{"name": 7, "arguments": {}}', '"name" = 7'),
    ('{"name": "f", "arguments": [1]}', "must be a JSON object"),
    ('{"name": "f", "arguments": "{not json"}', "not valid JSON"),
])
def test_hermes_malformed_blocks_give_clear_errors(body, needle):
    r = HermesParser().parse(f"ok <tool_call>{body}</tool_call> done")
    assert r.calls == []
    assert len(r.errors) == 1 and needle in r.errors[0]
    assert "Tool call #1" in r.errors[0]
    assert r.text == "ok  done"


def test_hermes_errors_show_the_expected_format():
    r = HermesParser().parse("<tool_call>{oops}</tool_call>")
    assert HINT in r.errors[0] and "<tool_call>" in r.errors[0]


def test_hermes_good_and_bad_blocks_mix():
    r = HermesParser().parse(tc("a", {}) + "<tool_call>{bad</tool_call>" + tc("b", {}))
    assert [c.name for c in r.calls] == ["a", "b"]
    assert len(r.errors) == 1 and "#2" in r.errors[0]


def test_hermes_unclosed_block():
    text = 'thinking <tool_call>{"name": "f", "arguments": {"k": 1}}'
    r = HermesParser().parse(text)
    assert r.calls == [] and "never closed" in r.errors[0]
    lenient = HermesParser(allow_unclosed=True).parse(text)
    assert lenient.ok and lenient.calls[0].arguments == {"k": 1}
    # lenient still reports an unclosed block that is cut mid-JSON
    assert HermesParser(allow_unclosed=True).parse('<tool_call>{"name": "f", "argu').errors


def test_hermes_unclosed_block_followed_by_another():
    r = HermesParser().parse('<tool_call>{"name": "a"' + tc("b", {"q": 1}))
    assert [c.name for c in r.calls] == ["b"]
    assert "never closed" in r.errors[0]


def test_hermes_stray_close_tag():
    r = HermesParser().parse('{"name": "f"}</tool_call>')
    assert r.calls == [] and "without a matching" in r.errors[0]


def test_hermes_custom_tags_and_render_roundtrip():
    p = HermesParser("<call>", "</call>")
    text = p.render("f", {"x": "é"})
    r = p.parse(text)
    assert r.calls[0] == ToolCall("f", {"x": "é"}, "call_0", text)


def test_hermes_non_string_input():
    r = HermesParser().parse(None)
    assert r.calls == [] and r.errors


def test_hermes_many_errors_are_capped():
    r = HermesParser().parse("<tool_call>{x}</tool_call>" * 500)
    assert len(r.errors) <= 9 and "more problems" in r.errors[-1]


# ---- code blocks -------------------------------------------------------------------------


def test_code_blocks_map_to_python_calls():
    text = "Compute:\n```python\nx = 2\nprint(x)\n```\nand\n```py\nprint(3)\n```\n```bash\nls\n```\nend"
    r = CodeBlockParser().parse(text)
    assert [c.arguments["code"] for c in r.calls] == ["x = 2\nprint(x)", "print(3)"]
    assert {c.name for c in r.calls} == {"python"}
    assert "```bash\nls\n```" in r.text and "print" not in r.text
    assert r.text.startswith("Compute:") and r.text.endswith("end")


def test_code_block_options_and_edge_cases():
    p = CodeBlockParser(tool_name="shell", languages=("bash", "sh"), arg_name="command")
    r = p.parse("````bash\necho ```\n````")  # a longer fence may hold a shorter one
    assert r.calls[0].name == "shell" and r.calls[0].arguments == {"command": "echo ```"}
    assert CodeBlockParser().parse("```\nprint(1)\n```").calls == []
    assert CodeBlockParser(bare=True).parse("```\nprint(1)\n```").calls[0].arguments == {"code": "print(1)"}
    r = CodeBlockParser().parse("```python\n\n```")
    assert r.calls == [] and "empty" in r.errors[0]
    r = CodeBlockParser().parse("```python\nprint(1)\n")
    assert r.calls == [] and "never closed" in r.errors[0]
    r = CodeBlockParser().parse("~~~python\nprint(1)\n~~~")
    assert r.calls[0].arguments == {"code": "print(1)"}


# ---- openai ------------------------------------------------------------------------------


def _oa(name, args, cid="call_x"):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def test_openai_message_list_and_json_text():
    msg = {"role": "assistant", "content": "sure", "tool_calls": [_oa("f", {"a": 1}), _oa("g", {}, "c2")]}
    for value in (msg, json.dumps(msg), msg["tool_calls"]):
        r = OpenAIParser().parse(value)
        assert r.ok and [(c.name, c.arguments, c.id) for c in r.calls] == [("f", {"a": 1}, "call_x"), ("g", {}, "c2")]
    assert OpenAIParser().parse(msg).text == "sure"


def test_openai_plain_text_and_legacy_function_call():
    r = OpenAIParser().parse("The answer is 4.")
    assert r.calls == [] and r.errors == [] and r.text == "The answer is 4."
    r = OpenAIParser().parse('{"x": 1}')  # JSON the agent wrote, not a message
    assert r.calls == [] and r.errors == []
    r = OpenAIParser().parse({"content": None, "function_call": {"name": "f", "arguments": "{}"}})
    assert r.calls[0].name == "f"


def test_openai_malformed_calls():
    bad = [{"type": "function"}, "nope", {"function": {"name": "f", "arguments": "{bad"}},
           {"function": {"arguments": "{}"}}, _oa("ok", {"q": "x"})]
    r = OpenAIParser().parse({"content": "", "tool_calls": bad})
    assert [c.name for c in r.calls] == ["ok"]
    assert len(r.errors) == 4
    assert any("not valid JSON" in e for e in r.errors)
    assert OpenAIParser().parse({"tool_calls": "x"}).errors
    assert OpenAIParser().parse(42).errors


def test_openai_render_roundtrip():
    p = OpenAIParser()
    assert p.parse(p.render("f", {"k": [1]})).calls[0].arguments == {"k": [1]}


# ---- registry ----------------------------------------------------------------------------


def test_get_parser_names_and_kwargs():
    assert isinstance(get_parser("hermes"), HermesParser)
    assert isinstance(get_parser("QWEN"), HermesParser)
    assert isinstance(get_parser("code"), CodeBlockParser)
    assert isinstance(get_parser("openai"), OpenAIParser)
    assert get_parser("code", tool_name="py2").tool_name == "py2"
    p = HermesParser()
    assert get_parser(p) is p
    with pytest.raises(ValueError, match="known: "):
        get_parser("xml")
    register_parser("mine", lambda: HermesParser("<c>", "</c>"))
    assert "mine" in parser_names() and get_parser("mine").open_tag == "<c>"


# ---- never raise, stay linear ------------------------------------------------------------

PARSERS = [HermesParser(), HermesParser(allow_unclosed=True), CodeBlockParser(), CodeBlockParser(bare=True),
           OpenAIParser()]

pieces = st.sampled_from(["<tool_call>", "</tool_call>", "{", "}", "[", "]", '"name"', '"arguments"', ":", ",",
                          '"f"', "```", "```python\n", "\n", "~~~", '"', "\\", "null", "1e999", "\u2028", "é",
                          "\x00", '{"name": "f", "arguments": {}}', '"tool_calls"', "function"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), st.lists(pieces, max_size=40).map("".join)))
def test_parsers_never_raise_on_text(text):
    for p in PARSERS:
        r = p.parse(text)
        assert isinstance(r, ParseResult)
        assert all(isinstance(c, ToolCall) and isinstance(c.arguments, dict) for c in r.calls)
        assert all(isinstance(e, str) and e for e in r.errors)
        assert isinstance(r.text, str)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_parsers_never_raise_on_structures(value):
    for p in PARSERS:
        assert isinstance(p.parse(value), ParseResult)
    assert isinstance(HermesParser().parse(f"<tool_call>{json.dumps(value)}</tool_call>"), ParseResult)
    assert isinstance(OpenAIParser().parse({"tool_calls": [value]}), ParseResult)
    assert isinstance(OpenAIParser().parse({"tool_calls": [{"function": value}]}), ParseResult)


MB = 1_000_000


@pytest.mark.parametrize("text", [
    "<tool_call>" * (MB // 11),
    "</tool_call>" * (MB // 12),
    "<tool_call>" + "[" * MB + "</tool_call>",
    "<tool_call>{" + '"a": 1, ' * (MB // 8) + "</tool_call>",
    tc("f", {"blob": "x" * MB}),
    "```python\n" * (MB // 10),
    "```\n" * (MB // 4),
    "`" * MB,
    "a" * MB,
    "é\u2028😀" * (MB // 3),
    "{" * MB,
])
def test_megabyte_inputs_parse_fast(text):
    for p in PARSERS:
        t0 = time.perf_counter()
        r = p.parse(text)
        elapsed = time.perf_counter() - t0
        assert isinstance(r, ParseResult)
        assert elapsed < 2.0, f"{type(p).__name__} took {elapsed:.2f}s on a {len(text)}-char input"


def test_megabyte_argument_survives_intact():
    r = HermesParser().parse(tc("f", {"blob": "x" * MB}))
    assert r.ok and len(r.calls[0].arguments["blob"]) == MB
