"""Tools by name, for configs and the CLI (``tools: [python, search]`` in a YAML file).

Built-ins are named by import path and imported only when asked for, so ``import tools`` never
pulls in torch or a sandbox. Other packages add tools through the entry-point group
``agent_rl.tools`` (``my_tool = "my_pkg.tools:MyTool"``, a Tool class or a factory).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Callable
from typing import Any

from .base import Tool

__all__ = ["ENTRY_POINT_GROUP", "get_tool", "list_tools", "register_tool"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "agent_rl.tools"

_BUILTIN: dict[str, str] = {
    "answer": "tools.answer:AnswerTool",
    "python": "tools.python:PythonTool",
    "shell": "tools.shell:ShellTool",
    "search": "tools.search:SearchTool",
    "sql": "tools.sql:SQLTool",
}
_registered: dict[str, Callable[..., Tool] | str] = dict(_BUILTIN)
_plugins_loaded = False


def register_tool(name: str, factory: Callable[..., Tool] | str) -> None:
    """Make ``get_tool(name, **kwargs)`` call ``factory(**kwargs)`` (a callable or ``"mod:attr"``)."""
    _registered[name] = factory


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        _registered.setdefault(ep.name, ep.value)


def list_tools() -> list[str]:
    _load_plugins()
    return sorted(_registered)


def get_tool(name: str, **kwargs: Any) -> Tool:
    """A new tool instance by registered name."""
    _load_plugins()
    factory = _registered.get(name)
    if factory is None:
        raise KeyError(f"unknown tool {name!r}; known: {', '.join(sorted(_registered))}")
    if isinstance(factory, str):
        mod, _, attr = factory.partition(":")
        try:
            factory = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise ImportError(f"tool {name!r} ({factory}) could not be loaded: {e}") from e
    made = factory(**kwargs)
    if not isinstance(made, Tool):
        raise TypeError(f"tool factory for {name!r} returned {type(made).__name__}, not a Tool")
    return made
