"""Losses: clipped policy gradient, KL penalties, entropy bonus, clipped value loss, and the
token-level aggregation they share.

Every ``[B, T]`` function takes a ``mask`` that is 1 on the policy's own tokens and 0 on
prompt, tool-output and padding tokens. Here the mask is a *weight*: any non-negative float
works (e.g. :func:`agent_rl.algos.arpo.shared_token_weights` to count branch-shared tokens
once), and a boolean or 0/1 mask is the usual case. Values on positions where the mask is 0
never reach the result or its gradient, even if they are inf or nan: we select with
``torch.where`` rather than multiply, because ``0 * inf`` is nan.

Stats come back as detached 0-dim tensors (no host sync); call ``.item()`` to log them.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "AGG_MODES",
    "aggregate",
    "entropy_bonus",
    "kl_penalty",
    "masked_mean",
    "masked_sum",
    "policy_loss",
    "value_loss",
]

AggMode = Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
AGG_MODES: tuple[str, ...] = (
    "token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-mean",
    "seq-mean-token-sum-norm",
)

# exp() of a log-ratio beyond this overflows float16/bfloat16 dynamic range soon after;
# any token this far off-policy is clipped anyway (or, for A < 0 without dual clip, would
# give an exploding gradient), so clamping only removes infs.
_MAX_LOG_RATIO = 20.0


def _weights(mask: Tensor, like: Tensor) -> Tensor:
    return torch.as_tensor(mask, device=like.device).to(like.dtype)


def _masked(x: Tensor, mask: Tensor) -> Tensor:
    """``x * mask`` where mask != 0, exactly 0 elsewhere (no nan from ``0 * inf``)."""
    w = _weights(mask, x)
    return torch.where(w != 0, x * w, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """``sum(x * mask)`` over ``dim`` (all dims if None)."""
    xm = _masked(x, mask)
    return xm.sum() if dim is None else xm.sum(dim=dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """``sum(x * mask) / sum(mask)`` over ``dim`` (all dims if None); 0 where the mask sums to 0."""
    w = _weights(mask, x)
    num = masked_sum(x, w, dim)
    den = w.sum() if dim is None else w.sum(dim=dim)
    return num / torch.where(den != 0, den, torch.ones_like(den))


def aggregate(
    loss_mat: Tensor, mask: Tensor, agg: AggMode = "token-mean", max_len: int | None = None
) -> Tensor:
    """Reduce a per-token ``[B, T]`` loss to a scalar. With ``m`` the mask, ``L`` the losses:

    * ``"token-mean"`` (DAPO): ``sum_bt L m / sum_bt m``; every token weighs the same, so
      long sequences are not down-weighted.
    * ``"seq-mean-token-sum"``: ``mean_b sum_t L m``.
    * ``"seq-mean-token-mean"`` (original GRPO): ``mean_b (sum_t L m / sum_t m)``; each
      sequence weighs the same, so a token in a long sequence counts less.
    * ``"seq-mean-token-sum-norm"`` (Dr. GRPO): ``sum_bt L m / (B * max_len)``, a constant
      normaliser (``max_len`` defaults to ``T``; pass the generation budget so it does not
      change with each batch's padding).

    The ``seq-mean-*`` modes average over rows with a non-zero mask only, so an empty row
    (padding, or a sample dropped by weight 0) does not dilute the mean; the ``-norm`` mode
    divides by all ``B`` rows on purpose (its normaliser must not depend on the data).
    """
    if loss_mat.dim() != 2:
        raise ValueError(f"loss_mat must be [B, T], got {tuple(loss_mat.shape)}")
    w = _weights(mask, loss_mat)
    if agg == "token-mean":
        return masked_mean(loss_mat, w)
    if agg == "seq-mean-token-sum-norm":
        denom = loss_mat.shape[0] * (loss_mat.shape[1] if max_len is None else max_len)
        return masked_sum(loss_mat, w) / max(denom, 1)
    if agg == "seq-mean-token-sum":
        per_seq = masked_sum(loss_mat, w, dim=-1)
    elif agg == "seq-mean-token-mean":
        per_seq = masked_mean(loss_mat, w, dim=-1)
    else:
        raise ValueError(f"unknown agg {agg!r}; expected one of {AGG_MODES}")
    rows = (w != 0).any(dim=-1).to(loss_mat.dtype)
    return masked_sum(per_seq, rows) / rows.sum().clamp(min=1)


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    agg: AggMode = "token-mean",
    dual_clip: float | None = None,
    max_len: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped surrogate with clip-higher (DAPO) and optional dual clip.

    With ``rho = exp(logprobs - old_logprobs)`` per token and advantage ``A`` (``[B, T]``,
    e.g. :func:`broadcast_to_tokens` of GRPO advantages):

        ``L = max(-A rho, -A clip(rho, 1 - clip_low, 1 + clip_high))``

    Clip-higher (``clip_high > clip_low``) lets low-probability tokens with ``A > 0`` grow
    further before clipping, which keeps entropy from collapsing. With ``dual_clip = c > 1``
    the loss of ``A < 0`` tokens is capped at ``-A c`` (Ye et al. 2020), so a token the new
    policy already likes far more than the old one cannot produce an unbounded update.
    ``L`` is reduced with :func:`aggregate` (``agg``, ``max_len``). Gradients flow through
    ``logprobs`` only; ``old_logprobs`` and ``advantages`` are detached. Half-precision
    log-probs are upcast to float32 first. The log-ratio is clamped to ``[-20, 20]``.

    Stats (masked token means): ``clipfrac_high`` (``A > 0`` and ``rho > 1 + clip_high``),
    ``clipfrac_low`` (``A < 0`` and ``rho < 1 - clip_low``), ``clipfrac`` (their sum; these
    are the tokens whose gradient the clip zeroes), ``dual_clipfrac`` (``A < 0`` and
    ``rho > c``), ``approx_kl`` (k3 estimate of KL(old || new) from tokens sampled by the old
    policy: ``mean(rho - 1 - log rho)``, >= 0), ``ratio_mean``, ``ratio_max``, ``pg_loss``.
    """
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    if logprobs.dtype in (torch.float16, torch.bfloat16):
        # exp of a difference of two nearly equal bf16 numbers is mostly rounding noise.
        logprobs = logprobs.float()
    m = torch.as_tensor(mask, device=logprobs.device) != 0
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    log_ratio = torch.where(m, logprobs - old_logprobs.detach().to(logprobs.dtype), zero).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    ratio = torch.exp(log_ratio)
    adv = torch.where(m, advantages.detach().to(logprobs.dtype), zero)

    pg_unclipped = -adv * ratio
    pg_clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    pg = torch.maximum(pg_unclipped, pg_clipped)
    if dual_clip is not None:
        pg = torch.where(adv < 0, torch.minimum(pg, -adv * dual_clip), pg)
    loss = aggregate(pg, mask, agg, max_len)

    with torch.no_grad():
        r = ratio.detach()
        high = ((adv > 0) & (r > 1.0 + clip_high)).to(r.dtype)
        low = ((adv < 0) & (r < 1.0 - clip_low)).to(r.dtype)
        dual = ((adv < 0) & (r > dual_clip)).to(r.dtype) if dual_clip is not None else torch.zeros_like(r)
        stats = {
            "clipfrac_high": masked_mean(high, mask),
            "clipfrac_low": masked_mean(low, mask),
            "clipfrac": masked_mean(high + low, mask),
            "dual_clipfrac": masked_mean(dual, mask),
            "approx_kl": masked_mean(r - 1.0 - log_ratio.detach(), mask),
            "ratio_mean": masked_mean(r, mask),
            "ratio_max": torch.where(m, r, zero).max() if r.numel() else zero,
            "pg_loss": loss.detach(),
        }
    return loss, stats


def kl_penalty(
    logprobs: Tensor,
    ref_logprobs: Tensor,
    kind: Literal["k1", "k2", "k3"] = "k3",
    *,
    mask: Tensor | None = None,
    clamp: float | None = None,
) -> Tensor:
    """Per-token estimate of KL(pi || ref) from tokens sampled by ``pi`` (Schulman's k1-k3).

    With ``d = logprobs - ref_logprobs``:

    * ``"k1"``: ``d``; unbiased but can be negative per token. The usual choice as a reward
      penalty (REINFORCE++, PPO-RLHF).
    * ``"k2"``: ``d^2 / 2``; >= 0, biased, low variance.
    * ``"k3"``: ``exp(-d) + d - 1 = exp(ref - lp) - (ref - lp) - 1``; unbiased, always >= 0,
      low variance. The usual choice as a loss term (GRPO).

    Gradients flow through both inputs (detach ``ref_logprobs`` yourself if it has a graph).
    ``mask`` zeroes masked positions; ``clamp`` bounds the result to ``[-clamp, clamp]``.
    """
    d = logprobs - ref_logprobs
    if mask is not None:
        m = torch.as_tensor(mask, device=d.device) != 0
        d = torch.where(m, d, torch.zeros((), dtype=d.dtype, device=d.device))
    if kind == "k1":
        k = d
    elif kind == "k2":
        k = 0.5 * d**2
    elif kind == "k3":
        k = torch.exp(-d) + d - 1.0
    else:
        raise ValueError(f"unknown kl kind {kind!r}; expected 'k1', 'k2' or 'k3'")
    if clamp is not None:
        k = k.clamp(-clamp, clamp)
    return k


def entropy_bonus(
    entropy: Tensor, mask: Tensor, agg: AggMode = "token-mean", max_len: int | None = None
) -> Tensor:
    """Aggregated per-token entropy (``aggregate(entropy, mask, agg)``), a positive number.

    It is a bonus: the trainer *subtracts* it, ``loss = pg + beta * kl - coef * bonus``.
    """
    return aggregate(entropy, mask, agg, max_len)


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    *,
    clip: float | None = 0.2,
    agg: AggMode = "token-mean",
    max_len: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped value loss, ``L = 0.5 * max((V - R)^2, (V_clip - R)^2)`` with
    ``V_clip = V_old + clip(V - V_old, -clip, clip)`` (``clip=None``: plain ``0.5 (V - R)^2``).

    Clipping keeps the value head from moving far from the values the advantages were
    computed with in one update. Stats: ``vf_clipfrac`` (share of tokens where the clipped
    term is the larger one), ``vf_loss``, ``value_mean``.
    """
    m = torch.as_tensor(mask, device=values.device) != 0
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    old = old_values.detach().to(values.dtype)
    ret = returns.detach().to(values.dtype)
    err = torch.where(m, values - ret, zero)
    unclipped = err**2
    if clip is None:
        lm = 0.5 * unclipped
        clipped_more = torch.zeros_like(unclipped, dtype=torch.bool)
    else:
        v_clip = old + (values - old).clamp(-clip, clip)
        clipped = torch.where(m, v_clip - ret, zero) ** 2
        lm = 0.5 * torch.maximum(unclipped, clipped)
        clipped_more = clipped.detach() > unclipped.detach()
    loss = aggregate(lm, mask, agg, max_len)
    with torch.no_grad():
        stats = {
            "vf_clipfrac": masked_mean(clipped_more.to(values.dtype), mask),
            "vf_loss": loss.detach(),
            "value_mean": masked_mean(values.detach(), mask),
        }
    return loss, stats
