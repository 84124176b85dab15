"""The one interface every generation backend implements.

"Continue these token sequences, return the new ids, their logprobs and per-token entropies",
per sequence. A sequence lives in the backend between turns, so a backend may keep its KV cache:
after a tool result is appended, the next turn prefills only the appended tokens. A sequence can
be forked at its current point, the branches sharing the prefix (ARPO branching).

Token-in, token-out: the backend never re-tokenizes text. What the rollout appends is ids,
and what it gets back is ids exactly as sampled.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclasses.dataclass
class Generation:
    """What one ``generate`` call added to one sequence.

    ``logprobs[i]`` is log p(ids[i]) under the distribution actually sampled from (after
    temperature), and ``entropies[i]`` that distribution's entropy at step i.
    ``finish_reason`` is ``"stop"`` (a stop id was sampled, and is included in ``ids``) or
    ``"length"``.
    """

    ids: list[int]
    logprobs: list[float]
    entropies: list[float]
    finish_reason: str


SeqId = int


class Policy(abc.ABC):
    """A generation backend. ``tokenizer`` is a Hugging Face tokenizer with a chat template."""

    tokenizer: Any

    @abc.abstractmethod
    def new_sequence(self, prompt_ids: Sequence[int]) -> SeqId:
        """Start a sequence from ``prompt_ids`` (prefill may be deferred to ``generate``)."""

    @abc.abstractmethod
    def append(self, seq: SeqId, ids: Sequence[int]) -> None:
        """Append ids that the policy did not generate (a tool result, a chat-template turn)."""

    @abc.abstractmethod
    def fork(self, seq: SeqId, n: int) -> list[SeqId]:
        """``n`` new sequences that continue from ``seq``'s current point, sharing its prefix."""

    @abc.abstractmethod
    def release(self, seq: SeqId) -> None:
        """Free a sequence and whatever cache it holds."""

    @abc.abstractmethod
    def token_ids(self, seq: SeqId) -> list[int]:
        """Every id of the sequence so far, prompt included."""

    @abc.abstractmethod
    async def generate(self, seqs: Sequence[SeqId], params: SamplingParams) -> list[Generation]:
        """Continue every sequence in ``seqs`` (batched where the backend can) and append what
        was sampled to each."""

    def sync_weights(self, state_dict: dict[str, Any]) -> None:
        """Load new weights from the learner; a colocated backend that shares the module may
        do nothing."""
