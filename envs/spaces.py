"""Gymnasium spaces for chat: an action is one assistant turn, an observation new messages.

Gymnasium's ``Text`` space limits its characters to a charset, and an agent's turn or a tool's
output may hold any unicode, so these spaces check structure and length instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

ROLES = ("system", "user", "assistant", "tool")
_SAMPLE_CHARS = list("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789{}[]<>\"':,._-/\n") + ["é", "λ", "中", "🙂"]


class TurnText(spaces.Space[str]):
    """Any string of at most ``max_length`` characters: one assistant turn."""

    def __init__(self, max_length: int = 65536, seed: int | np.random.Generator | None = None) -> None:
        self.max_length = int(max_length)
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        n = int(self.np_random.integers(0, min(self.max_length, 200) + 1))
        idx = self.np_random.integers(0, len(_SAMPLE_CHARS), size=n)
        return "".join(_SAMPLE_CHARS[i] for i in idx)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"TurnText(max_length={self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, TurnText) and other.max_length == self.max_length


class Messages(spaces.Space[list]):
    """A list of chat messages ``{"role", "content", "name"?}``.

    ``content`` is a string, or a list of parts (``{"type": "text", "text"}`` /
    ``{"type": "image", ...}``) for observations that carry screenshots.
    """

    def __init__(self, max_messages: int = 64, max_content: int = 1 << 20,
                 seed: int | np.random.Generator | None = None) -> None:
        self.max_messages = int(max_messages)
        self.max_content = int(max_content)
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> list[dict]:
        text = TurnText(200, seed=int(self.np_random.integers(1 << 31)))
        n = int(self.np_random.integers(1, 4))
        out = []
        for _ in range(n):
            role = ROLES[int(self.np_random.integers(len(ROLES)))]
            msg = {"role": role, "content": text.sample()}
            if role == "tool":
                msg["name"] = "python"
            out.append(msg)
        return out

    def _valid_message(self, m: Any) -> bool:
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            return False
        content = m.get("content")
        if isinstance(content, str):
            ok = len(content) <= self.max_content
        elif isinstance(content, list):
            ok = all(isinstance(p, dict) and p.get("type") in ("text", "image") for p in content)
        else:
            ok = False
        return ok and isinstance(m.get("name", ""), str)

    def contains(self, x: Any) -> bool:
        return (isinstance(x, list) and len(x) <= self.max_messages
                and all(self._valid_message(m) for m in x))

    def __repr__(self) -> str:
        return f"Messages(max_messages={self.max_messages}, max_content={self.max_content})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Messages) and (other.max_messages, other.max_content) == (
            self.max_messages, self.max_content)
