"""Turning chat messages into token ids once, as the chat template renders them.

Token-in, token-out means the history is never re-tokenized: the opening is tokenized once, the
policy's turns are kept as sampled, and each observation is rendered as the template's text for
it (plus the end of the assistant turn the template expects, and the next generation prompt)
and tokenized once, on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_PROBE = "\x00AGENT-RL-PROBE\x00"


class ChatRenderer:
    def __init__(self, tokenizer: Any, tools: Sequence[dict] | None = None) -> None:
        self.tok = tokenizer
        self.tools = list(tools) if tools else None
        user = {"role": "user", "content": "x"}
        base = self._render([user], gen=True)
        with_turn = self._render([user, {"role": "assistant", "content": _PROBE}])
        if not with_turn.startswith(base) or _PROBE not in with_turn:
            raise ValueError("the chat template does not render an assistant turn after its generation prompt; "
                             "token-in/token-out rollouts need an append-only template")
        # What the template writes after an assistant's content (Qwen: "<|im_end|>\n").
        self.turn_tail = with_turn.split(_PROBE, 1)[1]

    def _render(self, messages: Sequence[dict], gen: bool = False) -> str:
        return self.tok.apply_chat_template(list(messages), tools=self.tools, tokenize=False,
                                            add_generation_prompt=gen)

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def opening(self, messages: Sequence[dict]) -> list[int]:
        """The prompt: the opening messages and the generation prompt, tokenized once."""
        return self.encode(self._render(messages, gen=True))

    def observation(self, generated_text: str, messages: Sequence[dict]) -> tuple[str, list[int]]:
        """Ids to append after a policy turn whose decoded text is ``generated_text``: the rest of
        the template's end of turn, the observation ``messages``, the next generation prompt."""
        tail = self.turn_tail
        # The turn ended with (part of) the template's tail, e.g. the stop token <|im_end|>.
        done = max((k for k in range(len(tail) + 1) if generated_text.endswith(tail[:k])), default=0)
        anchor = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _PROBE}]
        before = self._render(anchor)
        after = self._render([*anchor, *messages], gen=True)
        if not after.startswith(before):
            raise ValueError("the chat template re-renders earlier messages when new ones are added")
        text = tail[done:] + after[len(before):]
        return text, self.encode(text)

    def decode_turn(self, ids: Sequence[int]) -> str:
        """The text of a policy turn as the env should read it: special tokens (the stop token)
        dropped, added tokens such as <tool_call> kept."""
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def decode_raw(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)
