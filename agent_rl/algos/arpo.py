"""ARPO advantage attribution over a branch tree.

ARPO's rollout forks a trajectory after a tool call when the policy's entropy rises, so the
sequences of one prompt form a tree: siblings share every token up to their fork. In the
batch each sequence is stored whole (the shared prefix repeated in every row that has it),
and the tree is given by ``segment_ids: LongTensor[B, T]``:

* ``segment_ids[b, t] >= 0`` names the shared segment token ``(b, t)`` belongs to. The same
  id in several rows means those positions hold the *same* sampled tokens (a common prefix
  up to a fork). Ids must be unique across the batch: two trees never reuse an id.
* ``segment_ids[b, t] < 0`` (use -1) marks a token private to row ``b`` (after its last fork),
  and padding.

An id that occurs in a single row is simply private too. Only positions with ``mask > 0``
(the policy's own tokens) are read; the rest come out as 0.

Let ``S(t)`` be the set of rows that contain token ``t``'s segment, ``d = |S(t)|``, and ``A_i``
the sequence advantage of row ``i`` (e.g. GRPO over the whole tree as one group).

* ``mode="hard"`` (ARPO's hard advantage estimation): a shared token gets the mean of the
  advantages of every sequence that passes through it, ``A_t = (1/d) sum_{i in S(t)} A_i``;
  a private token keeps its own sequence's ``A_i``. A prefix is credited with the average
  outcome of the continuations it led to, and each branch's own tokens with its own outcome.
* ``mode="soft"`` (ARPO's soft estimation, the paper's default): every token keeps its row's
  ``A_i``, i.e. plain GRPO on the expanded rows. A shared token then appears in ``d`` rows
  with identical log-probs, hence identical importance ratios ``rho``, so its unclipped
  surrogate sums to ``sum_i rho A_i = d * rho * mean_{S(t)}(A)``: the same averaged
  advantage as "hard", obtained implicitly by the objective.

The two coincide exactly as long as no copy is clipped and every copy has the same weight
in the aggregation (``token-mean``); they differ when the clip acts per copy (it depends on
the sign of each ``A_i`` in soft mode, on the sign of the mean in hard mode) and under
``seq-mean-token-mean`` (a copy's weight is ``1/len`` of its row). To count each shared token
once instead of ``d`` times, multiply the loss mask by :func:`shared_token_weights` (``1/d``).
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .advantages import _as_float, broadcast_to_tokens

__all__ = ["arpo_token_advantages", "segment_multiplicity", "shared_token_weights"]


def _segment_stats(
    seq_adv: Tensor | None, segment_ids: Tensor, mask: Tensor
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Per-token ``(d, sum of A over S(t) or None, shared)`` where ``shared`` is
    ``mask & (segment_id >= 0)``; ``d`` is 1 on unshared tokens."""
    seg = torch.as_tensor(segment_ids)
    if seg.dim() != 2:
        raise ValueError(f"segment_ids must be [B, T], got {tuple(seg.shape)}")
    m = torch.as_tensor(mask, device=seg.device) > 0
    if m.shape != seg.shape:
        raise ValueError(f"mask {tuple(m.shape)} and segment_ids {tuple(seg.shape)} disagree")
    shared = m & (seg >= 0)
    B = seg.shape[0]
    rows = torch.arange(B, device=seg.device)[:, None].expand_as(seg)

    d_tok = torch.ones(seg.shape, dtype=torch.long, device=seg.device)
    sum_tok = None
    if shared.any():
        seg_ids, seg_inv = torch.unique(seg[shared], return_inverse=True)
        # One entry per (segment, row) that contains it, however many tokens it has there.
        pair = seg_inv * B + rows[shared]
        uniq_pair = torch.unique(pair)
        pair_seg = uniq_pair // B
        pair_row = uniq_pair % B
        n_seg = seg_ids.numel()
        counts = torch.zeros(n_seg, dtype=torch.long, device=seg.device).index_add_(
            0, pair_seg, torch.ones_like(pair_seg)
        )
        d_tok[shared] = counts[seg_inv]
        if seq_adv is not None:
            sums = torch.zeros(n_seg, dtype=seq_adv.dtype, device=seg.device).index_add_(
                0, pair_seg, seq_adv[pair_row]
            )
            sum_tok = torch.zeros(seg.shape, dtype=seq_adv.dtype, device=seg.device)
            sum_tok[shared] = sums[seg_inv]
    return d_tok, sum_tok, shared


def segment_multiplicity(segment_ids: Tensor, mask: Tensor) -> Tensor:
    """LongTensor[B, T]: ``d``, the number of rows containing each token's segment (1 on
    private tokens, 0 where ``mask`` is 0)."""
    d, _, _ = _segment_stats(None, segment_ids, mask)
    m = torch.as_tensor(mask, device=d.device) > 0
    return torch.where(m, d, torch.zeros_like(d))


def shared_token_weights(segment_ids: Tensor, mask: Tensor) -> Tensor:
    """FloatTensor[B, T]: ``1/d`` on policy tokens, 0 elsewhere.

    Used as the loss mask (a weight, see :mod:`agent_rl.algos.losses`), each distinct token
    of the tree counts once in total, however many rows repeat it.
    """
    d = segment_multiplicity(segment_ids, mask)
    return torch.where(d > 0, 1.0 / d.clamp(min=1).to(torch.get_default_dtype()), 0.0)


def arpo_token_advantages(
    seq_adv: Tensor,
    segment_ids: Tensor,
    mask: Tensor,
    *,
    mode: Literal["hard", "soft"] = "hard",
) -> Tensor:
    """Token advantages ``[B, T]`` from sequence advantages ``[B]`` over a branch tree.

    ``hard``: ``A[b, t] = mean{seq_adv[i] : row i contains segment_ids[b, t]}`` on shared
    tokens, ``seq_adv[b]`` on private ones. ``soft``: ``A[b, t] = seq_adv[b]``. Zero where
    ``mask`` is 0. See the module docstring for the tree encoding and why soft works.
    """
    seq_adv = _as_float(seq_adv)
    if mode == "soft":
        return broadcast_to_tokens(seq_adv, mask)
    if mode != "hard":
        raise ValueError(f"unknown mode {mode!r}; expected 'hard' or 'soft'")
    seg = torch.as_tensor(segment_ids, device=seq_adv.device)
    if seq_adv.shape != seg.shape[:1]:
        raise ValueError(f"seq_adv {tuple(seq_adv.shape)} does not match segment_ids rows {seg.shape[0]}")
    d, sums, shared = _segment_stats(seq_adv, seg, mask)
    own = broadcast_to_tokens(seq_adv, mask)
    if sums is None:
        return own
    return torch.where(shared, sums / d.to(seq_adv.dtype), own)
