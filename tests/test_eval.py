"""pass@k and the eval summary on hand-computed numbers."""

from types import SimpleNamespace

import pytest

from agent_rl.eval import format_table, pass_at_k, summarize


def test_pass_at_k_hand_computed():
    assert pass_at_k(4, 0, 1) == 0.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # C(3,2)/C(4,2) = 3/6
    assert pass_at_k(4, 2, 4) == 1.0
    assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)  # C(3,3)/C(5,3)
    with pytest.raises(ValueError, match="at least 4 samples"):
        pass_at_k(2, 1, 4)


def _t(group, reward, calls=1, tokens=10, turns=2):
    return SimpleNamespace(group_id=group, reward=reward, info={"tool_calls": calls}, n_policy_tokens=tokens,
                           turn_spans=[(0, 1)] * turns)


def test_summary_and_table():
    trajs = [_t(0, 1.0), _t(0, 0.0), _t(1, 0.0, calls=3), _t(1, 0.0, calls=1, tokens=30)]
    m = summarize(trajs, k=2)
    assert m["success"] == 0.25 and m["tool_calls"] == 1.5 and m["tokens"] == 15.0
    assert m["pass@1"] == pytest.approx((0.5 + 0.0) / 2) and m["pass@2"] == pytest.approx((1.0 + 0.0) / 2)
    table = format_table({"tiny": m})
    assert table.splitlines()[0].split()[:3] == ["model", "tasks", "episodes"] and "tiny" in table
