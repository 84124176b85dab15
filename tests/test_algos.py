"""agent_rl.algos on hand-computed numbers.

Every expected tensor below was worked out by hand; the arithmetic is in the comments.
"""
import math

import pytest
import torch

from agent_rl.algos import (
    AGG_MODES,
    aggregate,
    arpo_token_advantages,
    broadcast_to_tokens,
    entropy_bonus,
    filter_uniform_groups,
    gae_advantages,
    group_reward_range,
    grpo_advantages,
    kept_group_ids,
    kl_penalty,
    masked_mean,
    masked_sum,
    masked_whiten,
    mc_grpo_advantages,
    median_pivot_mask,
    policy_loss,
    reinforce_pp_advantages,
    rloo_advantages,
    segment_multiplicity,
    shared_token_weights,
    value_loss,
)

T = torch.tensor


def close(a, b, atol=1e-5):
    b = torch.as_tensor(b, dtype=a.dtype)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.allclose(a, b, atol=atol, rtol=0), f"\n{a}\n!=\n{b}"


# Groups interleaved and of unequal size: 3 -> {1, 0, 0}, 7 -> {1, 5}, 9 -> {2} (singleton).
REWARDS = T([1.0, 1.0, 5.0, 0.0, 2.0, 0.0])
GROUPS = T([7, 3, 7, 3, 9, 3])


# --------------------------------------------------------------------------- GRPO / RLOO / MC


def test_grpo_hand_computed():
    # group 3: mean 1/3, unbiased var ((2/3)^2 + 2 (1/3)^2) / 2 = 1/3, std 1/sqrt(3)
    #   r=1 -> (2/3) sqrt(3) = 1.154701 ; r=0 -> -(1/3) sqrt(3) = -0.577350
    # group 7: mean 3, var (4 + 4) / 1 = 8, std 2 sqrt(2) -> -+2 / 2.828427 = -+0.707107
    # group 9: singleton -> 0
    adv = grpo_advantages(REWARDS, GROUPS)
    close(adv, [-0.707107, 1.154701, 0.707107, -0.577350, 0.0, -0.577350])


def test_dr_grpo_no_std():
    # r - group mean only: group 7 -> -2, 2 ; group 3 -> 2/3, -1/3, -1/3 ; singleton 0
    adv = grpo_advantages(REWARDS, GROUPS, normalize_std=False)
    close(adv, [-2.0, 2 / 3, 2.0, -1 / 3, 0.0, -1 / 3])


def test_grpo_uniform_group_is_zero_not_inf():
    adv = grpo_advantages(T([1.0, 1.0, 0.0, 0.0]), T([0, 0, 1, 1]))
    close(adv, [0.0, 0.0, 0.0, 0.0])


def test_grpo_accepts_int_rewards():
    # {1, 0}: mean 0.5, var (0.25 + 0.25) / 1 = 0.5, std 0.707107 -> +-0.707107
    close(grpo_advantages(T([1, 0]), T([0, 0])), [0.707107, -0.707107])


def test_rloo_hand_computed():
    # group 7: 1 - 5 = -4, 5 - 1 = 4
    # group 3: 1 - (0 + 0)/2 = 1 ; 0 - (1 + 0)/2 = -0.5 (twice)
    # singleton: 0
    adv = rloo_advantages(REWARDS, GROUPS)
    close(adv, [-4.0, 1.0, 4.0, -0.5, 0.0, -0.5])
    # identity: RLOO = n/(n-1) * (r - mean)
    n = T([2.0, 3, 2, 3, 1, 3])
    drg = grpo_advantages(REWARDS, GROUPS, normalize_std=False)
    close(adv[n > 1], (n / (n - 1).clamp(min=1) * drg)[n > 1])


def test_mc_grpo_median_baseline():
    # group 0 (odd) {0, 1, 10}: median 1 -> centred [-1, 0, 9]
    # group 1 (even) {0, 2, 3, 10}: median (2 + 3)/2 = 2.5 -> [-2.5, -0.5, 0.5, 7.5]
    #   (torch.median would give the lower middle, 2)
    r = T([10.0, 0.0, 3.0, 1.0, 0.0, 2.0, 10.0])
    g = T([0, 0, 1, 0, 1, 1, 1])
    close(mc_grpo_advantages(r, g, normalize_std=False), [9.0, -1.0, 0.5, 0.0, -2.5, -0.5, 7.5])
    # with std: group 0 mean 11/3, deviations -11/3, -8/3, 19/3, squares (121+64+361)/9 = 546/9,
    #   unbiased var 546/18 = 91/3, std = 5.507571 -> [-1, 0, 9] / 5.507571
    adv = mc_grpo_advantages(r, g)
    close(adv[[1, 3, 0]], [-0.181568, 0.0, 1.634113])
    # the point of the median: under a mean baseline (11/3) the r=1 sample gets a negative
    # advantage because of the one outlier; under the median it gets 0.
    assert grpo_advantages(r, g)[3] < 0


def test_median_pivot_mask():
    r = T([10.0, 0.0, 3.0, 1.0, 0.0, 2.0, 10.0, 5.0, 5.0, 5.0, 7.0])
    g = T([0, 0, 1, 0, 1, 1, 1, 2, 2, 2, 3])
    # group 0 {10, 0, 1}: pivot is the 1 (index 3); group 1 has 4 members: no pivot;
    # group 2 {5, 5, 5}: the middle of the stable order, index 8; group 3 singleton: none.
    expected = torch.zeros(11, dtype=torch.bool)
    expected[[3, 8]] = True
    assert torch.equal(median_pivot_mask(r, g), expected)


# --------------------------------------------------------------------------- token-level


def test_masked_whiten():
    # values 1, 2, 3 -> mean 2, unbiased var (1 + 0 + 1)/2 = 1 -> -1, 0, 1
    x = T([[1.0, 2.0, float("inf")], [3.0, float("nan"), -7.0]])
    mask = T([[1, 1, 0], [1, 0, 0]])
    close(masked_whiten(x, mask), [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    close(masked_whiten(x, mask, shift_mean=False), [[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]])


def test_broadcast_to_tokens():
    out = broadcast_to_tokens(T([2.0, -1.0]), T([[0, 1, 1], [1, 1, 0]]))
    close(out, [[0.0, 2.0, 2.0], [-1.0, -1.0, 0.0]])


# row 0: prompt, two policy tokens, a tool-output token, a policy token; row 1: two policy tokens.
RPP_MASK = T([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0]])


def test_reinforce_pp_returns_skip_tool_tokens():
    # gamma 0.5, outcome 1 on row 0's last policy token (t=4), 0 on row 1 (t=1).
    # row 0: G4 = 1 ; G2 = 0.5 * 1 = 0.5 (the tool token at t=3 is not a step) ; G1 = 0.25
    ret = reinforce_pp_advantages(T([1.0, 0.0]), RPP_MASK, gamma=0.5, whiten=False)
    close(ret, [[0.0, 0.25, 0.5, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    # whitened over the 5 policy tokens {.25, .5, 1, 0, 0}: mean 0.35, deviations
    # -.1, .15, .65, -.35, -.35, squares sum 0.7, unbiased var 0.175, std 0.418330
    adv = reinforce_pp_advantages(T([1.0, 0.0]), RPP_MASK, gamma=0.5)
    close(adv, [[0.0, -0.239046, 0.358569, 0.0, 1.553797], [-0.836660, -0.836660, 0.0, 0.0, 0.0]])


def test_reinforce_pp_kl_penalty():
    # reward_t = r_t - 0.1 kl_t on policy tokens, gamma 1 (masked kl values of 9 are ignored)
    # row 0: t1 -0.05, t2 -0.1, t4 1 - 0.2 = 0.8 -> G4 .8, G2 .7, G1 .65
    # row 1: t0 -0.1, t1 0 -> G1 0, G0 -0.1
    kl = T([[9.0, 0.5, 1.0, 9.0, 2.0], [1.0, 0.0, 9.0, 9.0, 9.0]])
    ret = reinforce_pp_advantages(T([1.0, 0.0]), RPP_MASK, kl=kl, kl_coef=0.1, whiten=False)
    close(ret, [[0.0, 0.65, 0.7, 0.0, 0.8], [-0.1, 0.0, 0.0, 0.0, 0.0]])


def test_reinforce_pp_token_rewards_and_baseline():
    # per-token rewards (0.5 on the first turn's last token, 1 at the end); 7 sits on a
    # masked token and is ignored (so is a nan there). gamma 1: G4 = 1, G2 = 1, G1 = 1.5
    tok = T([[0.0, 0.5, 0.0, 7.0, 1.0]])
    tok_nan = T([[float("nan"), 0.5, 0.0, float("nan"), 1.0]])
    close(reinforce_pp_advantages(tok_nan, RPP_MASK[:1], whiten=False), [[0.0, 1.5, 1.0, 0.0, 1.0]])
    ret = reinforce_pp_advantages(tok, RPP_MASK[:1], whiten=False)
    close(ret, [[0.0, 1.5, 1.0, 0.0, 1.0]])
    # group-mean baseline: {1, 0} -> .5, -.5 ; {1, 1} -> 0, 0
    ret = reinforce_pp_advantages(T([1.0, 0.0, 1.0, 1.0]), torch.ones(4, 1), group_ids=T([0, 0, 1, 1]), whiten=False)
    close(ret, [[0.5], [-0.5], [0.0], [0.0]])


def test_gae_jumps_over_tool_tokens():
    # policy tokens t=0, 1, 3; t=2 is tool output. gamma .9, lam .5
    # t3: delta = 1 + 0 - .8 = .2                       A3 = .2
    # t1: delta = 0 + .9 * V3(.8) - .6 = .12            A1 = .12 + .45 * .2 = .21
    # t0: delta = 0 + .9 * V1(.6) - .5 = .04            A0 = .04 + .45 * .21 = .1345
    # returns = A + V = .6345, .81, -, 1.0
    rewards = T([[0.0, 0.0, 5.0, 1.0]])
    values = T([[0.5, 0.6, 100.0, 0.8]])
    mask = T([[1, 1, 0, 1]])
    adv, ret = gae_advantages(rewards, values, mask, gamma=0.9, lam=0.5)
    close(adv, [[0.1345, 0.21, 0.0, 0.2]])
    close(ret, [[0.6345, 0.81, 0.0, 1.0]])
    # the tool token's reward and value do not matter
    adv2, ret2 = gae_advantages(T([[0.0, 0.0, -3.0, 1.0]]), T([[0.5, 0.6, float("nan"), 0.8]]), mask, gamma=0.9, lam=0.5)
    assert torch.equal(adv, adv2) and torch.equal(ret, ret2)


def test_gae_gamma_lam_one_is_return_minus_value():
    # prompt at t=0, policy t=1, 2, padding t=3; reward 1 at t=2.
    # t2: 1 - .4 = .6 ; t1: delta .4 - .2 = .2, A = .2 + .6 = .8 ; returns 1, 1
    adv, ret = gae_advantages(T([[0.0, 0.0, 1.0, 0.0]]), T([[9.0, 0.2, 0.4, 9.0]]), T([[0, 1, 1, 0]]), gamma=1.0, lam=1.0)
    close(adv, [[0.0, 0.8, 0.6, 0.0]])
    close(ret, [[0.0, 1.0, 1.0, 0.0]])


# --------------------------------------------------------------------------- losses

# ratios 1, 1.5, 0.5, 1.1 with advantages 1, 1, -1, -1; clip 0.2 / 0.28
RATIOS = T([[1.0, 1.5, 0.5, 1.1]])
ADV = T([[1.0, 1.0, -1.0, -1.0]])
OLD = T([[-1.0, -2.0, -0.5, -3.0]])


def test_policy_loss_hand_computed_and_grad():
    lp = (OLD + RATIOS.log()).requires_grad_(True)
    loss, st = policy_loss(lp, OLD, ADV, torch.ones(1, 4))
    # tok0: max(-1, -1) = -1
    # tok1: max(-1.5, -1.28) = -1.28   (clipped high)
    # tok2: max(0.5, 0.8) = 0.8        (clipped low)
    # tok3: max(1.1, 1.1) = 1.1
    # token-mean: (-1 - 1.28 + 0.8 + 1.1) / 4 = -0.095
    close(loss, -0.095)
    close(st["clipfrac_high"], 0.25)
    close(st["clipfrac_low"], 0.25)
    close(st["clipfrac"], 0.5)
    close(st["dual_clipfrac"], 0.0)
    close(st["ratio_mean"], 4.1 / 4)
    close(st["ratio_max"], 1.5)
    # k3(old||new) = mean(r - 1 - ln r) = (0 + (.5 - .405465) + (-.5 + .693147) + (.1 - .095310)) / 4
    close(st["approx_kl"], 0.2923718 / 4)
    loss.backward()
    # d/dlp of -A r is -A r; clipped tokens have zero gradient; / 4 for the mean
    close(lp.grad, [[-0.25, 0.0, 0.0, 0.275]])
    # sign: descending raises the logprob of the A > 0 token and lowers the A < 0 one
    assert lp.grad[0, 0] < 0 < lp.grad[0, 3]


def test_policy_loss_clip_higher_is_asymmetric():
    # ratio 1.25, A = +1: inside clip-higher (1.28) -> not clipped, but clipped at symmetric 0.2
    lp = T([[math.log(1.25)]])
    zero, one = T([[0.0]]), torch.ones(1, 1)
    _, st = policy_loss(lp, zero, one, one)
    assert st["clipfrac_high"] == 0
    _, st = policy_loss(lp, zero, one, one, clip_high=0.2)
    assert st["clipfrac_high"] == 1
    # ratio 0.75, A = -1: below 1 - 0.2 -> clipped low
    _, st = policy_loss(T([[math.log(0.75)]]), zero, -one, one)
    assert st["clipfrac_low"] == 1 and st["clipfrac_high"] == 0


def test_policy_loss_dual_clip():
    # A = -1; ratios 4 and 2, dual clip c = 3.
    # tok0: max(4, 1.28) = 4 -> min(4, 3) = 3 (dual-clipped, zero gradient)
    # tok1: max(2, 1.28) = 2 -> min(2, 3) = 2
    lp = T([[math.log(4.0), math.log(2.0)]]).requires_grad_(True)
    old, adv, mask = torch.zeros(1, 2), -torch.ones(1, 2), torch.ones(1, 2)
    loss, st = policy_loss(lp, old, adv, mask, dual_clip=3.0)
    close(loss, (3 + 2) / 2)
    close(st["dual_clipfrac"], 0.5)
    loss.backward()
    close(lp.grad, [[0.0, 2.0 / 2]])
    loss_nodual, _ = policy_loss(lp.detach(), old, adv, mask)
    close(loss_nodual, (4 + 2) / 2)
    with pytest.raises(ValueError):
        policy_loss(lp, old, adv, mask, dual_clip=0.5)


def test_policy_loss_ignores_masked_values():
    mask = T([[1, 1, 1, 1, 0, 0]])
    junk_lp = T([[float("inf"), float("nan")]])
    lp = torch.cat([OLD + RATIOS.log(), junk_lp], 1).requires_grad_(True)
    old = torch.cat([OLD, T([[-float("inf"), 3.0]])], 1)
    adv = torch.cat([ADV, T([[float("nan"), 1e9]])], 1)
    loss, st = policy_loss(lp, old, adv, mask)
    close(loss, -0.095)
    close(st["clipfrac"], 0.5)
    loss.backward()
    close(lp.grad, [[-0.25, 0.0, 0.0, 0.275, 0.0, 0.0]])


def test_policy_loss_aggregations_differ_on_unequal_lengths():
    # ratio 1 everywhere so pg = -A: row 0 has 3 tokens of A = 1, row 1 one token of A = -2
    adv = T([[1.0, 1.0, 1.0, 0.0], [-2.0, 0.0, 0.0, 0.0]])
    mask = T([[1, 1, 1, 0], [1, 0, 0, 0]])
    lp = torch.zeros(2, 4)
    got = {agg: policy_loss(lp, lp, adv, mask, agg=agg)[0].item() for agg in AGG_MODES}
    # token-mean: (-1 -1 -1 + 2) / 4 = -0.25
    # seq-mean-token-sum: (-3 + 2) / 2 = -0.5
    # seq-mean-token-mean: (-1 + 2) / 2 = 0.5     (the short negative sequence weighs as much)
    # seq-mean-token-sum-norm: (-3 + 2) / (2 * 4) = -0.125
    assert got == pytest.approx(
        {"token-mean": -0.25, "seq-mean-token-sum": -0.5, "seq-mean-token-mean": 0.5, "seq-mean-token-sum-norm": -0.125}
    )


def test_aggregate_modes():
    L = T([[1.0, 2.0, 3.0, 99.0], [4.0, 99.0, 99.0, 99.0], [99.0, 99.0, 99.0, 99.0]])
    mask = T([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    assert aggregate(L, mask, "token-mean").item() == pytest.approx(10 / 4)
    # the empty third row does not count in the seq-mean modes: (6 + 4) / 2, (2 + 4) / 2
    assert aggregate(L, mask, "seq-mean-token-sum").item() == pytest.approx(5.0)
    assert aggregate(L, mask, "seq-mean-token-mean").item() == pytest.approx(3.0)
    # ...but does in the constant normaliser: 10 / (3 * 4), or 10 / (3 * 10) with max_len=10
    assert aggregate(L, mask, "seq-mean-token-sum-norm").item() == pytest.approx(10 / 12)
    assert aggregate(L, mask, "seq-mean-token-sum-norm", max_len=10).item() == pytest.approx(10 / 30)
    with pytest.raises(ValueError):
        aggregate(L, mask, "sum")
    # all masked: 0, still differentiable
    x = torch.ones(1, 2, requires_grad=True)
    out = aggregate(x, torch.zeros(1, 2))
    out.backward()
    assert out.item() == 0 and torch.equal(x.grad, torch.zeros(1, 2))


def test_masked_sum_mean_with_weights():
    x = T([[1.0, 2.0, 3.0], [5.0, float("nan"), 0.0]])
    w = T([[1.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    # sum: 1 + 1 + 1.5 + 5 = 8.5 ; weights 3 -> 2.8333 ; per row: 3.5 / 2 = 1.75, 5 / 1 = 5
    assert masked_sum(x, w).item() == pytest.approx(8.5)
    assert masked_mean(x, w).item() == pytest.approx(8.5 / 3)
    close(masked_mean(x, w, dim=-1), [1.75, 5.0])
    close(masked_sum(x, w.bool(), dim=0), [6.0, 2.0, 3.0])


def test_kl_penalty_kinds():
    lp, ref = T([0.0, -1.0, -2.0]), T([0.0, -2.0, -1.0])
    # d = lp - ref = 0, 1, -1
    close(kl_penalty(lp, ref, "k1"), [0.0, 1.0, -1.0])
    close(kl_penalty(lp, ref, "k2"), [0.0, 0.5, 0.5])
    # k3 = exp(-d) + d - 1 = 0, e^-1 = 0.367879, e - 2 = 0.718282
    close(kl_penalty(lp, ref, "k3"), [0.0, 0.367879, 0.718282])
    close(kl_penalty(lp, ref, "k3", clamp=0.5), [0.0, 0.367879, 0.5])
    close(kl_penalty(T([[0.0, 5.0]]), T([[-1.0, float("nan")]]), "k2", mask=T([[1, 0]])), [[0.5, 0.0]])
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1000, generator=g) * 3, torch.randn(1000, generator=g) * 3
    assert (kl_penalty(a, b, "k3") >= 0).all()
    with pytest.raises(ValueError):
        kl_penalty(lp, ref, "k4")


def test_entropy_bonus():
    ent = T([[1.0, 2.0, 3.0, 50.0], [4.0, 50.0, 50.0, 50.0]])
    mask = T([[1, 1, 1, 0], [1, 0, 0, 0]])
    assert entropy_bonus(ent, mask).item() == pytest.approx(2.5)
    assert entropy_bonus(ent, mask, "seq-mean-token-mean").item() == pytest.approx(3.0)


def test_value_loss_clipped():
    values = T([[1.0, 2.0, 0.0, 7.0]]).requires_grad_(True)
    old = T([[1.1, 1.5, 0.0, 0.0]])
    ret = T([[2.0, 2.5, 0.1, 0.0]])
    mask = T([[1, 1, 1, 0]])
    # tok0: v - old = -.1 inside clip -> both terms (1 - 2)^2 = 1 -> .5
    # tok1: v_clip = 1.5 + .2 = 1.7; unclipped (2 - 2.5)^2 = .25, clipped (1.7 - 2.5)^2 = .64 -> .32
    # tok2: (0 - .1)^2 = .01 -> .005
    # mean over 3: .825 / 3 = .275 ; clipped term larger on 1 of 3 tokens
    loss, st = value_loss(values, old, ret, mask, clip=0.2)
    close(loss, 0.275)
    close(st["vf_clipfrac"], 1 / 3)
    loss.backward()
    # d/dv: tok0 (v - R)/3 = -1/3 ; tok1 clipped -> 0 ; tok2 -0.1/3 ; masked 0
    close(values.grad, [[-1 / 3, 0.0, -0.1 / 3, 0.0]])
    # unclipped: (.5 + .125 + .005) / 3 = .21
    loss, st = value_loss(values.detach(), old, ret, mask, clip=None)
    close(loss, 0.21)
    close(st["vf_clipfrac"], 0.0)


# --------------------------------------------------------------------------- dynamic sampling


def test_filter_uniform_groups():
    r = T([1.0, 1.0, 0.0, 1.0, 0.5, 2.0, 2.0, 2.0])
    g = T([0, 0, 1, 1, 2, 3, 3, 3])
    # group 0 all 1, group 1 {0, 1} mixed, group 2 singleton, group 3 all 2
    keep = filter_uniform_groups(r, g)
    assert keep.tolist() == [False, False, True, True, False, False, False, False]
    assert kept_group_ids(r, g).tolist() == [1]
    close(group_reward_range(r, g), [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    # tolerance: 0.3 vs 0.1 + 0.2 differ in the last bit
    r2, g2 = T([0.3, 0.1 + 0.2], dtype=torch.float64), T([5, 5])
    assert filter_uniform_groups(r2, g2).tolist() == [True, True]
    assert filter_uniform_groups(r2, g2, atol=1e-9).tolist() == [False, False]
    assert kept_group_ids(r2, g2, atol=1e-9).numel() == 0


# --------------------------------------------------------------------------- ARPO

# Three branches of one prompt. Segment 10 (2 tokens) is the root shared by all three; rows 0
# and 1 fork from row 2 after it and share segment 20 (2 tokens) before forking again.
#   position:   0    1   2   3   4   5   6
#   row 0:     [p | 10  10 | 20  20 | a   pad]
#   row 1:     [p | 10  10 | 20  20 | b   b  ]
#   row 2:     [p | 10  10 | tool c | c   pad]
SEG = T(
    [
        [-1, 10, 10, 20, 20, -1, -1],
        [-1, 10, 10, 20, 20, -1, -1],
        [-1, 10, 10, -1, -1, -1, -1],
    ]
)
TREE_MASK = T(
    [
        [0, 1, 1, 1, 1, 1, 0],
        [0, 1, 1, 1, 1, 1, 1],
        [0, 1, 1, 0, 1, 1, 0],
    ]
)
SEQ_ADV = T([1.0, -2.0, 4.0])


def test_arpo_hard():
    # root: (1 - 2 + 4) / 3 = 1 ; segment 20: (1 - 2) / 2 = -0.5 ; private tokens keep their own
    out = arpo_token_advantages(SEQ_ADV, SEG, TREE_MASK, mode="hard")
    close(
        out,
        [
            [0.0, 1.0, 1.0, -0.5, -0.5, 1.0, 0.0],
            [0.0, 1.0, 1.0, -0.5, -0.5, -2.0, -2.0],
            [0.0, 1.0, 1.0, 0.0, 4.0, 4.0, 0.0],
        ],
    )


def test_arpo_soft():
    out = arpo_token_advantages(SEQ_ADV, SEG, TREE_MASK, mode="soft")
    close(
        out,
        [
            [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
            [0.0, -2.0, -2.0, -2.0, -2.0, -2.0, -2.0],
            [0.0, 4.0, 4.0, 0.0, 4.0, 4.0, 0.0],
        ],
    )
    with pytest.raises(ValueError):
        arpo_token_advantages(SEQ_ADV, SEG, TREE_MASK, mode="medium")


def test_arpo_multiplicity_and_weights():
    d = segment_multiplicity(SEG, TREE_MASK)
    assert d.tolist() == [[0, 3, 3, 2, 2, 1, 0], [0, 3, 3, 2, 2, 1, 1], [0, 3, 3, 0, 1, 1, 0]]
    w = shared_token_weights(SEG, TREE_MASK)
    close(w[0], [0.0, 1 / 3, 1 / 3, 0.5, 0.5, 1.0, 0.0])
    # every distinct token counted once: root 2 + seg20 2 + privates (1 + 2 + 2) = 9
    assert w.sum().item() == pytest.approx(9.0)


def test_arpo_hard_ignores_masked_and_singleton_segments():
    # a segment id used by one row only is private; masked positions' ids do not matter
    seg = SEG.clone()
    seg[2, 4:6] = 33  # row 2's own continuation labelled, but only row 2 has it
    seg[0, 0] = 20  # prompt token (masked) claims segment 20
    seg[0, 6] = 10  # padding claims the root
    a = arpo_token_advantages(SEQ_ADV, seg, TREE_MASK, mode="hard")
    b = arpo_token_advantages(SEQ_ADV, SEG, TREE_MASK, mode="hard")
    assert torch.equal(a, b)
    # no shared tokens at all -> same as broadcasting
    none = torch.full_like(SEG, -1)
    assert torch.equal(arpo_token_advantages(SEQ_ADV, none, TREE_MASK), broadcast_to_tokens(SEQ_ADV, TREE_MASK))


def test_arpo_soft_equals_hard_gradient_without_clipping():
    # One logit per distinct token of the tree, gathered into rows so shared tokens are tied.
    # At ratio 1 (nothing clipped) with token-mean, the gradient on a shared token is
    # sum_i A_i / N under soft and d * mean(A) / N under hard: the same.
    distinct = {}
    index = torch.zeros_like(SEG)
    for b in range(3):
        for t in range(7):
            key = ("s", int(SEG[b, t]), t) if SEG[b, t] >= 0 else ("p", b, t)
            index[b, t] = distinct.setdefault(key, len(distinct))
    grads = {}
    for mode in ("soft", "hard"):
        theta = torch.zeros(len(distinct), requires_grad=True)
        lp = theta[index]
        adv = arpo_token_advantages(SEQ_ADV, SEG, TREE_MASK, mode=mode)
        loss, _ = policy_loss(lp, lp.detach(), adv, TREE_MASK)
        loss.backward()
        grads[mode] = theta.grad
    close(grads["soft"], grads["hard"])
    # root token: -(1 - 2 + 4) / 15 policy tokens (5 + 6 + 4)
    root = index[0, 1]
    assert grads["hard"][root].item() == pytest.approx(-3 / 15)


def test_arpo_soft_and_hard_differ_when_the_clip_acts():
    # One token shared by two rows with A = +1 and -1, ratio 1.5.
    # soft: the A = +1 copy is clipped high (no gradient); the A = -1 copy is not
    #   (max(1.5, 1.28) = 1.5), so d/dtheta = 1.5 / 2 = 0.75.
    # hard: both copies get mean(A) = 0 -> no gradient.
    seg, mask, seq_adv = T([[0], [0]]), torch.ones(2, 1), T([1.0, -1.0])
    out = {}
    for mode in ("soft", "hard"):
        theta = torch.tensor(math.log(1.5), requires_grad=True)
        lp = theta.expand(2, 1)
        loss, _ = policy_loss(lp, torch.zeros(2, 1), arpo_token_advantages(seq_adv, seg, mask, mode=mode), mask)
        loss.backward()
        out[mode] = theta.grad.item()
    assert out["soft"] == pytest.approx(0.75)
    assert out["hard"] == pytest.approx(0.0)


def test_policy_loss_upcasts_half_precision():
    lp = (OLD + RATIOS.log()).to(torch.bfloat16).requires_grad_(True)
    loss, _ = policy_loss(lp, OLD, ADV, torch.ones(1, 4))
    assert loss.dtype == torch.float32
    loss.backward()
    assert lp.grad.dtype == torch.bfloat16 and lp.grad[0, 0] < 0
