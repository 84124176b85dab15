"""Tools served over HTTP: an env whose tools run in another process's sandboxes."""

from __future__ import annotations

import json
import socket

import gymnasium as gym
import httpx
import pytest

import envs  # noqa: F401
from agent_rl.experts import get_expert, run_episode, tool_call
from tools.server import RemoteToolSet, ToolServer


@pytest.fixture(scope="module")
def server():
    env = gym.make("agent_rl/Math-v0").unwrapped
    srv = ToolServer(env.tools, port=0).start()
    yield srv
    srv.stop()


async def test_env_over_a_tool_server_solves_tasks(server):
    env = gym.make("agent_rl/Math-v0", split="heldout", tool_server=server.url).unwrapped
    assert isinstance(env.tools, RemoteToolSet) and set(env.tools) == {"python", "answer"}
    for i in range(3):
        rec = await run_episode(env, get_expert("agent_rl/Math-v0"), options={"index": i})
        assert rec["reward"] == 1.0
    assert httpx.get(f"{server.url}/healthz").json()["episodes"] == 0  # every episode was closed


async def test_state_lives_on_the_server_per_episode(server):
    env = gym.make("agent_rl/Math-v0", tool_server=server.url).unwrapped
    await env.areset(seed=0)
    await env.astep(tool_call("python", code="secret = 99"))
    obs, *_ = await env.astep(tool_call("python", code="print(secret)"))
    assert obs[0]["content"] == "99"
    other = gym.make("agent_rl/Math-v0", tool_server=server.url).unwrapped
    await other.areset(seed=1)
    obs, *_ = await other.astep(tool_call("python", code="print(secret)"))
    assert "NameError" in obs[0]["content"]
    obs, *_ = await env.astep(tool_call("nope", x=1))
    assert "Unknown tool 'nope'" in obs[0]["content"]
    await env.aclose()
    await other.aclose()


def test_bad_requests_get_clear_errors(server):
    r = httpx.post(f"{server.url}/v1/episodes", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    r = httpx.post(f"{server.url}/v1/episodes/nope/calls", json={"calls": []})
    assert r.status_code == 404 and "open one first" in r.json()["error"]
    r = httpx.post(f"{server.url}/v1/episodes/nope/calls", json={"calls": "x"})
    assert r.status_code == 400
    r = httpx.get(f"{server.url}/v1/elsewhere")
    assert r.status_code == 404
    tools = httpx.get(f"{server.url}/v1/tools").json()["tools"]
    assert {t["name"]: t["terminal"] for t in tools} == {"python": False, "answer": True}
    json.dumps(tools)


async def test_a_server_that_goes_away_is_an_observation(server):
    env = gym.make("agent_rl/Math-v0", tool_server=server.url).unwrapped
    await env.areset(seed=0)
    env.tools.url = "http://127.0.0.1:9"  # nothing listens on the discard port
    env.tools._client = None
    obs, reward, term, trunc, info = await env.astep(tool_call("python", code="1"))
    assert "tool server" in obs[0]["content"] and not term and info["tool_errors"] == 1


def test_no_server_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match="serve-tools"):
        RemoteToolSet(f"http://127.0.0.1:{port}")
