"""Isolation and execution for untrusted code.

``sandboxes.create()`` gives the strongest backend this machine offers::

    async with sandboxes.create(limits=Limits(wall_s=5)) as sb:
        r = await sb.exec("python3 -c 'print(1)'")

Backends: ``local`` (bubblewrap namespaces; rlimits only where bwrap cannot run, with a
warning) and ``docker`` (the docker SDK; images from ``dockerfiles/``).
"""

from __future__ import annotations

from typing import Any

from .base import ExecResult, Isolation, Limits, Sandbox, SandboxError, SandboxUnavailable
from .local import LocalSandbox, WeakIsolationWarning
from .pool import SandboxPool
from .pysession import PyResult, PythonSession

__all__ = [
    "ExecResult", "Isolation", "Limits", "LocalSandbox", "PyResult", "PythonSession", "Sandbox",
    "SandboxError", "SandboxPool", "SandboxUnavailable", "WeakIsolationWarning", "available", "create",
]

KINDS = ("auto", "local", "docker")


def available() -> dict[str, str]:
    """Each backend and whether it can run here (``"ok"`` or the reason it cannot)."""
    from . import bwrap

    out: dict[str, str] = {}
    path, why = bwrap.probe()
    out["local"] = f"ok (bubblewrap at {path})" if path else f"weak: rlimits only ({why})"
    try:
        from .docker import engine_status  # type: ignore[attr-defined]

        out["docker"] = engine_status()
    except Exception as e:  # noqa: BLE001 - any failure means "not usable", with why
        out["docker"] = f"unavailable: {e}"
    return out


def create(kind: str = "auto", limits: Limits | None = None, **kwargs: Any) -> Sandbox:
    """A new, not yet started sandbox (``async with`` starts and closes it).

    ``auto`` is the local bubblewrap backend where it works (fastest, fully isolated), else
    Docker if an engine answers, else the local rlimits fallback with a loud warning.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown sandbox kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "local":
        return LocalSandbox(limits, **kwargs)
    if kind == "docker":
        from .docker import DockerSandbox

        return DockerSandbox(limits, **kwargs) if limits is not None else DockerSandbox(**kwargs)
    from . import bwrap

    if bwrap.probe()[0] is not None:
        return LocalSandbox(limits, **kwargs)
    try:
        from .docker import DockerSandbox, engine_status  # type: ignore[attr-defined]

        if engine_status().startswith("ok"):
            return DockerSandbox(limits, **kwargs) if limits is not None else DockerSandbox(**kwargs)
    except Exception:  # noqa: BLE001 - docker is optional: fall through to the local fallback
        pass
    return LocalSandbox(limits, **kwargs)
