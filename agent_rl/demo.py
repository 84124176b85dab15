"""``agent-rl demo``: a scripted agent plays an env through ``gymnasium.make`` and every
message, tool call and reward is printed."""

from __future__ import annotations

import textwrap

import gymnasium as gym

from agent_rl.experts import get_expert


def _show(role: str, text: str, width: int = 100, max_lines: int = 12) -> None:
    lines = []
    for para in str(text).splitlines() or [""]:
        lines += textwrap.wrap(para, width) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... ({len(lines) - max_lines} more lines)"]
    print(f"  [{role}] " + ("\n" + " " * (len(role) + 5)).join(lines))


def run_demo(env_id: str = "agent_rl/Math-v0", episodes: int = 3, seed: int = 0) -> int:
    import envs  # noqa: F401 - registers the ids

    expert = get_expert(env_id)
    env = gym.make(env_id, split="heldout")
    total = 0.0
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        task = env.unwrapped.episode.task
        print(f"\n=== {env_id} episode {i + 1}/{episodes}: task {info['task_id']} ===")
        _show("user", obs[-1]["content"])
        history = [obs]
        while True:
            action = expert(task, history)
            _show("assistant", action)
            obs, reward, terminated, truncated, info = env.step(action)
            for m in obs:
                _show(m["role"] + (":" + m["name"] if m.get("name") else ""), m["content"])
            history.append(obs)
            if terminated or truncated:
                break
        total += reward
        print(f"  -> reward {reward:.2f} (gold answer: {str(task['answer'])[:80]!r}; "
              f"turns {info['turn']}, tool calls {info['tool_calls']}, ended by {info['end_reason']})")
    env.close()
    print(f"\n{env_id}: mean reward {total / episodes:.2f} over {episodes} held-out episodes")
    return 0
