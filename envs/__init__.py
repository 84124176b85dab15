"""Gymnasium environments over sandboxed tools.

    import gymnasium as gym, envs
    env = gym.make("agent_rl/Math-v0")
    messages, info = env.reset(seed=0)
    messages, reward, terminated, truncated, info = env.step('<tool_call>{"name": "python", ...}</tool_call>')

Importing this package registers the built-in ids and those of installed plug-ins
(entry-point group ``agent_rl.envs``).
"""

from .registry import ENTRY_POINT_GROUP, list_envs, load_plugins, register_builtin
from .spaces import Messages, TurnText
from .tool_env import Episode, ToolEnv, extract_answer

register_builtin()
load_plugins()

__all__ = ["ENTRY_POINT_GROUP", "Episode", "Messages", "ToolEnv", "TurnText", "extract_answer",
           "list_envs", "load_plugins", "register_builtin"]
