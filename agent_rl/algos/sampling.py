"""Dynamic sampling (DAPO): drop prompt groups that carry no learning signal.

A group whose sampled responses all got the same reward (all solved, or all failed) has
zero group-relative advantage for every member, so it only dilutes the batch (and, under
token-mean aggregation, shrinks the gradient of the groups that do teach something). DAPO
oversamples prompts, filters such groups out, and keeps sampling until the batch is full;
the filter is here, the refill loop belongs to the trainer.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .advantages import _as_float, group_index

__all__ = ["filter_uniform_groups", "group_reward_range", "kept_group_ids"]


def group_reward_range(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """Per-sequence ``max_g(r) - min_g(r)`` of its group (0 for uniform groups and singletons)."""
    rewards = _as_float(rewards)
    inverse, num = group_index(group_ids)
    inverse = inverse.to(rewards.device)
    hi = torch.full((num,), -torch.inf, dtype=rewards.dtype, device=rewards.device)
    lo = torch.full((num,), torch.inf, dtype=rewards.dtype, device=rewards.device)
    hi = hi.scatter_reduce(0, inverse, rewards, reduce="amax")
    lo = lo.scatter_reduce(0, inverse, rewards, reduce="amin")
    return (hi - lo)[inverse]


def filter_uniform_groups(rewards: Tensor, group_ids: Tensor, *, atol: float = 0.0) -> Tensor:
    """BoolTensor[N]: True for sequences whose group's rewards are not all equal.

    A group is uniform when ``max - min <= atol`` (exact equality by default; rewards from
    the same verifier are bit-identical for identical outcomes, but pass a small ``atol``
    for rewards computed along different float paths). Singleton groups are uniform, so they
    are dropped: with nothing to compare against they carry no group-relative signal.
    """
    return group_reward_range(rewards, group_ids) > atol


def kept_group_ids(rewards: Tensor, group_ids: Tensor, *, atol: float = 0.0) -> Tensor:
    """The sorted unique group ids that :func:`filter_uniform_groups` keeps."""
    group_ids = torch.as_tensor(group_ids)
    keep = filter_uniform_groups(rewards, group_ids, atol=atol).to(group_ids.device)
    return torch.unique(group_ids[keep])
