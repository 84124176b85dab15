"""Env ids for ``gymnasium.make``: the built-in ones and those of plug-in packages.

A third-party package adds envs by declaring an entry point in the group ``agent_rl.envs``::

    [project.entry-points."agent_rl.envs"]
    MyEnv-v0 = "my_pkg.envs:make_my_env"        # a factory returning a gymnasium.Env

The entry point's name becomes the id ``agent_rl/<name>`` unless it already holds a ``/``
(then it is used as is). An entry point may instead point at a zero-argument function that
registers ids itself; such a function is called and returns ``None``.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
from typing import Any

import gymnasium as gym

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "agent_rl.envs"
NAMESPACE = "agent_rl"

BUILTIN: dict[str, tuple[str, str]] = {
    f"{NAMESPACE}/Math-v0": ("envs.math_env:make_math_env",
                             "computational math with a persistent Python interpreter; reward: math equivalence"),
    f"{NAMESPACE}/SearchQA-v0": ("envs.search_env:make_search_env",
                                 "multi-hop QA over a generated corpus with BM25/dense search; reward: exact match"),
    f"{NAMESPACE}/SQL-v0": ("envs.sql_env:make_sql_env",
                            "text-to-SQL over SQLite databases with a read-only sql tool; reward: execution match"),
}

_plugin_ids: dict[str, str] = {}
_plugins_loaded = False


def register_builtin() -> None:
    for env_id, (entry, _desc) in BUILTIN.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry, disable_env_checker=False)


def load_plugins(*, force: bool = False) -> dict[str, str]:
    """Register envs of installed packages; return ``{env_id: "dist:object"}``.

    A broken plug-in is logged and skipped: one bad package must not break every env.
    """
    global _plugins_loaded
    if _plugins_loaded and not force:
        return dict(_plugin_ids)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        env_id = ep.name if "/" in ep.name else f"{NAMESPACE}/{ep.name}"
        source = f"{ep.dist.name if ep.dist else '?'}:{ep.value}"
        try:
            target = ep.load()
        except Exception as e:
            log.warning("agent_rl.envs plug-in %r (%s) failed to import: %s", ep.name, source, e)
            continue
        if _registers_itself(target):
            target()
            _plugin_ids[env_id] = source
            continue
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=target)
        _plugin_ids[env_id] = source
    _plugins_loaded = True
    return dict(_plugin_ids)


def _registers_itself(target: Any) -> bool:
    if isinstance(target, type) or not callable(target):
        return False
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return False
    return bool(getattr(target, "__agent_rl_registers__", False)) and not sig.parameters


def list_envs() -> list[dict[str, str]]:
    """Every agent_rl env id with where it comes from, built-ins first."""
    register_builtin()
    plugins = load_plugins()
    rows = [{"id": k, "source": "built-in", "description": d} for k, (_e, d) in BUILTIN.items()]
    for env_id, source in sorted(plugins.items()):
        spec = gym.registry.get(env_id)
        doc = ""
        if spec is not None and callable(spec.entry_point):
            doc = (inspect.getdoc(spec.entry_point) or "").split("\n")[0]
        rows.append({"id": env_id, "source": source, "description": doc})
    return rows
