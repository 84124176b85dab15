"""The Tool API: results, validation, the @tool decorator, ToolSet guards, OpenAI export."""

import asyncio
import dataclasses
import enum
import threading
import time
from typing import Annotated, Literal, Optional

import pytest

import tools
from tools import (AnswerTool, ArgumentError, Tool, ToolCall, ToolContext, ToolResult, ToolSet, cap_text,
                   get_tool, list_tools, register_tool, to_openai_schema, tool, validate_args)
from tools.decorator import parse_docstring

# ---- ToolResult / ToolContext ------------------------------------------------------------


def test_tool_result_is_frozen_with_defaults():
    r = ToolResult("hi")
    assert (r.text, r.images, r.error, r.metrics) == ("hi", (), False, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.text = "x"
    assert ToolResult.fail("bad", n=1) == ToolResult("bad", error=True, metrics={"n": 1})
    assert ToolResult("a").metrics is not ToolResult("b").metrics


def test_tool_context_keeps_per_episode_state():
    a, b = ToolContext(episode_id="a"), ToolContext(episode_id="b", task={"q": 1})
    a.state["x"] = 1
    assert b.state == {} and b.task == {"q": 1} and a.sandbox_factory is None


# ---- validation --------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "minLength": 1},
        "k": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
        "ratio": {"type": "number"},
        "exact": {"type": "boolean"},
        "mode": {"type": "string", "enum": ["fast", "slow"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "opts": {"type": "object", "properties": {"depth": {"type": "integer"}}, "required": ["depth"]},
        "maybe": {"type": ["integer", "null"]},
    },
    "required": ["query"],
    "additionalProperties": False,
}


def test_validate_accepts_and_fills_defaults():
    out = validate_args({"query": "x", "tags": ["a"], "opts": {"depth": 2}, "maybe": None}, SCHEMA)
    assert out == {"query": "x", "k": 3, "tags": ["a"], "opts": {"depth": 2}, "maybe": None}


@pytest.mark.parametrize("given,expected", [
    ({"k": "4"}, 4), ({"k": 4.0}, 4), ({"k": " 7 "}, 7), ({"ratio": "0.5"}, 0.5), ({"exact": "TRUE"}, True),
    ({"exact": "false"}, False), ({"tags": '["a", "b"]'}, ["a", "b"]), ({"opts": '{"depth": 1}'}, {"depth": 1}),
])
def test_validate_coerces_lossless_cases(given, expected):
    key = next(iter(given))
    assert validate_args({"query": "x", **given}, SCHEMA)[key] == expected


def test_string_coercion_of_numbers():
    s = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    assert validate_args({"answer": 42}, s) == {"answer": "42"}
    assert validate_args({"answer": 2.5}, s) == {"answer": "2.5"}
    with pytest.raises(ArgumentError):
        validate_args({"answer": True}, s)


@pytest.mark.parametrize("given,needle", [
    ({}, "missing required argument 'query' (string)"),
    ({"query": ""}, "at least 1 character"),
    ({"query": "x", "k": 3.5}, "argument 'k' must be an integer, got number 3.5"),
    ({"query": "x", "k": True}, "argument 'k' must be an integer, got boolean true"),
    ({"query": "x", "k": "many"}, "must be an integer"),
    ({"query": "x", "k": 11}, "must be at most 10"),
    ({"query": "x", "exact": 1}, "must be a boolean"),
    ({"query": "x", "mode": "medium"}, 'must be one of "fast", "slow"'),
    ({"query": "x", "tags": ["a", {"b": 1}]}, "argument 'tags[1]' must be a string, got object"),
    ({"query": "x", "tags": ["a"] * 4}, "at most 3 items"),
    ({"query": "x", "opts": {}}, "missing required argument 'opts.depth'"),
    ({"query": "x", "quary": "y"}, "unknown argument 'quary' (did you mean 'query'?)"),
    ({"query": "x", "ratio": "nan"}, "must be a number"),
    ({"query": ["x"]}, "must be a string, got array"),
])
def test_validate_reports_exact_problem(given, needle):
    with pytest.raises(ArgumentError) as e:
        validate_args(given, SCHEMA)
    assert any(needle in p for p in e.value.problems), e.value.problems


def test_validate_reports_every_problem_and_non_objects():
    with pytest.raises(ArgumentError) as e:
        validate_args({"k": "x", "zz": 1}, SCHEMA)
    assert len(e.value.problems) == 3
    with pytest.raises(ArgumentError, match="must be a JSON object, got array"):
        validate_args([1], SCHEMA)


def test_validate_unions_and_additional_properties():
    s = {"type": "object", "properties": {"v": {"anyOf": [{"type": "integer"}, {"type": "string"}]}},
         "additionalProperties": {"type": "integer"}}
    assert validate_args({"v": "7"}, s) == {"v": "7"}  # an exact match wins over coercion
    assert validate_args({"v": 7, "extra": "3"}, s) == {"v": 7, "extra": 3}
    with pytest.raises(ArgumentError, match="integer or string"):
        validate_args({"v": [1]}, s)
    assert validate_args({"anything": 1}, {"type": "object"}) == {"anything": 1}


# ---- decorator ---------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@tool
async def lookup(city: str, units: Literal["metric", "imperial"] = "metric", days: Optional[int] = None,  # noqa: UP045
                 tags: list[str] | None = None, weights: dict[str, float] | None = None,
                 color: Color = Color.RED, note: Annotated[str, "a free note"] = "",
                 ctx: ToolContext | None = None) -> str:
    """Current weather in a city.

    More detail that is not part of the summary.

    Args:
        city: the city's name,
            for example "Lyon".
        units (str): unit system of the reply.
        days: how many days ahead.

    Returns:
        A forecast.
    """
    return f"{city}|{units}|{days}|{tags}|{weights}|{color.value}|{note}|{ctx.episode_id}"


def test_decorator_builds_schema_from_hints_and_docstring():
    assert isinstance(lookup, Tool) and lookup.name == "lookup"
    assert lookup.description == "Current weather in a city."
    p = lookup.parameters
    assert p["required"] == ["city"] and p["additionalProperties"] is False
    props = p["properties"]
    assert "ctx" not in props
    assert props["city"] == {"type": "string", "description": 'the city\'s name, for example "Lyon".'}
    assert props["units"] == {"type": "string", "enum": ["metric", "imperial"],
                              "description": "unit system of the reply.", "default": "metric"}
    assert props["days"]["type"] == ["integer", "null"] and "default" not in props["days"]
    assert props["tags"]["type"] == ["array", "null"] and props["tags"]["items"] == {"type": "string"}
    assert props["weights"]["additionalProperties"] == {"type": "number"}
    assert props["color"] == {"type": "string", "enum": ["red", "blue"], "default": "red"}
    assert props["note"]["description"] == "a free note"


async def test_decorated_tool_runs_with_injected_ctx_and_enum():
    out = await lookup({"city": "Oslo", "color": "blue", "days": 2}, ToolContext(episode_id="ep9"))
    assert out == ToolResult("Oslo|metric|2|None|None|blue||ep9")


async def test_decorator_options_sync_functions_and_return_types():
    main_thread = threading.get_ident()

    @tool(name="blocking", description="Sleeps.", terminal=True, concurrent=False)
    def blocking(seconds: float) -> dict:
        time.sleep(seconds)
        return {"thread_is_main": threading.get_ident() == main_thread}

    assert (blocking.name, blocking.description, blocking.terminal, blocking.concurrent) == \
        ("blocking", "Sleeps.", True, False)
    ticks = 0

    async def ticker():
        nonlocal ticks
        for _ in range(5):
            await asyncio.sleep(0.02)
            ticks += 1

    res, _ = await asyncio.gather(blocking({"seconds": 0.2}, ToolContext()), ticker())
    assert res.text == '{"thread_is_main": false}' and ticks == 5  # the loop kept running

    @tool
    async def returns_result(x: int) -> ToolResult:
        """Echo."""
        return ToolResult(str(x), error=x < 0)

    assert (await returns_result({"x": -1}, ToolContext())).error
    assert blocking.fn is not None and returns_result.__doc__ == "Echo."


def test_decorator_rejects_unusable_signatures():
    with pytest.raises(TypeError, match="needs a type hint"):
        tool(lambda x: x)

    def varargs(*xs: int) -> str:
        return ""

    with pytest.raises(TypeError, match="named parameters"):
        tool(varargs)

    def weird(x: complex) -> str:
        return ""

    with pytest.raises(TypeError, match="no JSON Schema equivalent"):
        tool(weird)
    with pytest.raises(ValueError, match="OpenAI function-name rule"):
        tool(name="has space")(lookup.fn)


def test_parse_docstring_sections():
    summary, args = parse_docstring("""Do a thing
    across two lines.

    Arguments:
        a (int): first.
        b: second,
            continued.
    Raises:
        c: not an argument.
    """)
    assert summary == "Do a thing across two lines."
    assert args == {"a": "first.", "b": "second, continued."}
    assert parse_docstring(None) == ("", {})


# ---- ToolSet -----------------------------------------------------------------------------


@tool
async def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


@tool
async def boom(msg: str) -> str:
    """Always fails."""
    raise KeyError(msg)


@tool
async def nap(seconds: float) -> str:
    """Sleep."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@tool
async def loud(n: int) -> str:
    """Print a lot."""
    return "H" * 100 + "x" * n + "T" * 100


def make_set(**kw):
    return ToolSet([add, boom, nap, loud], **kw)


async def test_toolset_mapping_and_duplicates():
    ts = make_set()
    assert list(ts) == ["add", "boom", "nap", "loud"] and len(ts) == 4 and ts["add"] is add and "nap" in ts
    assert ts.tools["add"] is add
    with pytest.raises(ValueError, match="two tools"):
        ToolSet([add, add])


async def test_toolset_guards_every_failure():
    ts = make_set(timeout_s=0.3)
    calls = [ToolCall("add", {"a": 1, "b": "2"}, "c0"), ToolCall("ad", {"a": 1}, "c1"),
             ToolCall("add", {"a": 1}, "c2"), ToolCall("boom", {"msg": "kaput"}, "c3"),
             ToolCall("nap", {"seconds": 5}, "c4"), {"name": "add", "arguments": {"a": 2, "b": 2}},
             ToolCall("add", "not a dict", "c6"), {"arguments": {}}]
    t0 = time.perf_counter()
    res = await ts.call(calls, ToolContext())
    assert time.perf_counter() - t0 < 2
    assert res[0] == dataclasses.replace(res[0], text="3", error=False)
    assert res[1].error
    assert res[1].text == "Unknown tool 'ad'. Did you mean 'add'? Available tools: add, boom, nap, loud."
    assert res[2].error and "missing required argument 'b' (integer)" in res[2].text
    assert "Expected: add(a: integer, b: integer)" in res[2].text and '"required":["a","b"]' in res[2].text
    assert res[3].error and res[3].text == "Tool 'boom' failed: KeyError: 'kaput'"
    assert res[4].error and "timed out after 0.3 s" in res[4].text and res[4].metrics["timed_out"] == 1
    assert res[5].text == "4"
    assert res[6].error and "must be a JSON object" in res[6].text
    assert res[7].error and "no valid tool name" in res[7].text
    assert all("latency_s" in r.metrics for r in res)


async def test_toolset_runs_calls_concurrently_and_serialises_non_concurrent_tools():
    order = []

    @tool(concurrent=False)
    async def step(i: int) -> str:
        """Order-sensitive."""
        order.append(("start", i))
        await asyncio.sleep(0.05)
        order.append(("end", i))
        return str(i)

    ts = ToolSet([nap, step])
    t0 = time.perf_counter()
    res = await ts.call([ToolCall("nap", {"seconds": 0.3}), ToolCall("step", {"i": 1}),
                         ToolCall("nap", {"seconds": 0.3}), ToolCall("step", {"i": 2})], ToolContext())
    elapsed = time.perf_counter() - t0
    assert [r.text for r in res] == ["slept 0.3", "1", "slept 0.3", "2"]
    assert elapsed < 0.55  # the two naps overlapped
    assert order == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]


async def test_toolset_caps_output_keeping_head_and_tail():
    ts = make_set(max_output_chars=1000)
    r = (await ts.call([ToolCall("loud", {"n": 50_000})], ToolContext()))[0]
    assert len(r.text) <= 1000
    assert r.text.startswith("H" * 100) and r.text.endswith("T" * 100)
    marker = r.text.split("\n")[1]
    assert f"[... {r.metrics['chars_cut']} characters cut" in marker
    assert r.metrics["chars_cut"] == 50_200 - (len(r.text) - len(marker) - 2)
    small = (await ts.call([ToolCall("loud", {"n": 5})], ToolContext()))[0]
    assert "chars_cut" not in small.metrics and len(small.text) == 205


def test_cap_text():
    assert cap_text("abc", 10) == ("abc", 0)
    text, cut = cap_text("a" * 500 + "b" * 500, 200)
    assert len(text) <= 200 and text.startswith("a") and text.endswith("b") and cut == 1000 - 120
    assert f"[... {cut} characters cut" in text


class Counting(Tool):
    name = "counting"
    description = "Counts setups."
    parameters = {"type": "object", "properties": {}}

    def __init__(self, name="counting", fail_setup=False, fail_teardown=False):
        self.name, self.fail_setup, self.fail_teardown = name, fail_setup, fail_teardown

    async def __call__(self, args, ctx):
        return ToolResult(str(ctx.state.get(self.name)))

    async def setup(self, ctx):
        if self.fail_setup:
            raise RuntimeError("no setup")
        ctx.state[self.name] = "ready"

    async def teardown(self, ctx):
        ctx.state[self.name] = "torn"
        if self.fail_teardown:
            raise RuntimeError("no teardown")


async def test_setup_and_teardown_lifecycle():
    ctx = ToolContext()
    ts = ToolSet([Counting("a", fail_teardown=True), Counting("b")])
    await ts.setup(ctx)
    assert (await ts.call([ToolCall("a", {})], ctx))[0].text == "ready"
    await ts.teardown(ctx)  # a failing teardown doesn't stop the others or raise
    assert ctx.state == {"a": "torn", "b": "torn"}
    ctx2 = ToolContext()
    with pytest.raises(RuntimeError, match="no setup"):
        await ToolSet([Counting("a"), Counting("b", fail_setup=True)]).setup(ctx2)
    assert ctx2.state == {"a": "torn"}  # the part already set up was torn down


async def test_toolset_reports_bad_return_values():
    class Bad(Tool):
        name, description = "bad", "returns junk"

        async def __call__(self, args, ctx):
            return 42

    res = (await ToolSet([Bad()]).call([ToolCall("bad", {})], ToolContext()))[0]
    assert res.error and "returned int" in res.text


# ---- schema export, answer, registry -----------------------------------------------------


def test_to_openai_schema_shapes():
    one = to_openai_schema(add)
    assert one == [{"type": "function", "function": {
        "name": "add", "description": "Add two integers.",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                       "additionalProperties": False, "required": ["a", "b"]}}}]
    assert [s["function"]["name"] for s in to_openai_schema([add, nap])] == ["add", "nap"]
    ts = ToolSet([add, nap])
    assert to_openai_schema(ts) == ts.openai_schema() == to_openai_schema([add, nap])
    assert add.openai_schema() == one[0]
    one[0]["function"]["parameters"]["properties"].clear()  # a copy: the tool is untouched
    assert add.parameters["properties"]
    with pytest.raises(TypeError):
        to_openai_schema([object()])


def test_openai_schema_renders_in_a_chat_template():
    jinja2 = pytest.importorskip("jinja2")
    template = ("{% for t in tools %}{{ t.function.name }}:{{ t.function.parameters.required | join(',') }};"
                "{% endfor %}")
    out = jinja2.Template(template).render(tools=to_openai_schema([add, lookup]))
    assert out == "add:a,b;lookup:city;"


async def test_answer_tool_is_terminal():
    a = AnswerTool()
    assert a.terminal and not add.terminal and a.name == "answer"
    ts = ToolSet([a])
    ok, blank, num = await ts.call([ToolCall("answer", {"answer": " Paris "}), ToolCall("answer", {"answer": " "}),
                                    ToolCall("answer", {"answer": 42})], ToolContext())
    assert ok.text == "Paris" and not ok.error
    assert blank.error and "empty" in blank.text
    assert num.text == "42"
    assert AnswerTool(name="submit").name == "submit"


def test_tool_registry():
    assert {"answer", "python", "shell", "search", "sql"} <= set(list_tools())
    assert isinstance(get_tool("answer"), AnswerTool)
    assert get_tool("sql", max_rows=5).max_rows == 5
    register_tool("adder", lambda: add)
    assert get_tool("adder") is add
    with pytest.raises(KeyError, match="known: "):
        get_tool("nope")


def test_package_exports_and_lazy_builtins():
    for name in tools.__all__:
        assert getattr(tools, name) is not None
    with pytest.raises(AttributeError):
        tools.NoSuchThing  # noqa: B018
