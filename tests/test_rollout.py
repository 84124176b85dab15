"""Rollouts: token-in/token-out trajectories, masks, batching, context cut-off."""

from __future__ import annotations

import re

import pytest

from agent_rl.policy.base import SamplingParams
from agent_rl.rollout import CONTEXT_NOTE, ChatRenderer, RolloutConfig, RolloutEngine, collate
from envs import ToolEnv
from tools import tool

from .rollout_helpers import ScriptedPolicy, call, make_tokenizer


@tool
async def add(a: int, b: int) -> str:
    """Add two integers.

    Args:
        a: first
        b: second
    """
    return str(a + b)


TASKS = [{"id": f"add/{i}", "question": f"Add {i} and {i + 10}.", "a": i, "b": i + 10, "answer": str(2 * i + 10)}
         for i in range(12)]


def env_factory():
    return ToolEnv([add], TASKS, lambda task, ep: float(ep.answer == task["answer"]), max_turns=5)


def solver(text: str, turn: int):
    responses = re.findall(r"<tool_response>\n(.*?)\n</tool_response>", text, re.S)
    if not responses:
        a, b = map(int, re.findall(r"Add (\d+) and (\d+)", text)[-1])
        return f"Let me add.\n{call('add', a=a, b=b)}", 1.0
    return call("answer", answer=responses[-1]), 0.2


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


async def test_trajectories_are_token_in_token_out(tok):
    policy = ScriptedPolicy(tok, solver)
    engine = RolloutEngine(policy, env_factory, RolloutConfig(sampling=SamplingParams(max_new_tokens=64)))
    seen: dict[int, list[int]] = {}
    orig_release = policy.release

    def release(seq):
        seen[seq] = policy.token_ids(seq)
        orig_release(seq)

    policy.release = release
    trajs = await engine.run(TASKS[:4], n_per_task=2)
    await engine.aclose()
    assert [t.reward for t in trajs] == [1.0] * 8
    assert [t.group_id for t in trajs] == [0, 0, 1, 1, 2, 2, 3, 3]
    for t in trajs:
        t.check()
        # the ids trained on are exactly the policy's sequence: nothing was re-tokenized
        assert t.full_ids() in seen.values()
        # mask 1 exactly on the two generated turns; the rest is the rendered observation
        assert len(t.turn_spans) == 2
        gen = [i for i, m in enumerate(t.loss_mask) if m]
        assert gen == [i for s, e in t.turn_spans for i in range(s, e)]
        obs_ids = t.ids[t.turn_spans[0][1]: t.turn_spans[1][0]]
        text = tok.decode(obs_ids, skip_special_tokens=False)
        assert text == f"\n<|im_start|>user\n<tool_response>\n{int(t.task_id.split('/')[1]) * 2 + 10}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
        assert all(lp == 0.0 for lp, m in zip(t.logprobs, t.loss_mask) if not m)
        # rendering the whole conversation with the template gives the same text as the ids
        r = ChatRenderer(tok, env_factory().tool_schemas())
        full = tok.apply_chat_template(t.messages, tools=r.tools, tokenize=False)
        assert tok.decode(t.full_ids(), skip_special_tokens=False) + "\n" == full


async def test_turns_of_many_episodes_are_batched(tok):
    policy = ScriptedPolicy(tok, solver)
    engine = RolloutEngine(policy, env_factory, RolloutConfig(concurrency=12))
    trajs = await engine.run(TASKS, n_per_task=2)
    await engine.aclose()
    assert len(trajs) == 24 and all(t.reward == 1.0 for t in trajs)
    assert max(policy.calls) >= 8 and sum(policy.calls) == 48  # 24 episodes x 2 turns


async def test_out_of_context_is_told_to_answer(tok):
    def chatty(text: str, turn: int):
        if CONTEXT_NOTE in text:
            return call("answer", answer="25"), 0.1
        return call("add", a=turn, b=1) + " " + "thinking " * 10, 1.0

    def make_env():
        return ToolEnv([add], TASKS, lambda t, ep: float(ep.answer == "25"), max_turns=50)

    probe = make_env()
    opening, _ = await probe.areset(options={"task": TASKS[0]})
    limit = len(ChatRenderer(tok, probe.tool_schemas()).opening(opening)) + 400
    await probe.aclose()
    policy = ScriptedPolicy(tok, chatty)
    engine = RolloutEngine(policy, make_env, RolloutConfig(max_turns=50, max_turn_tokens=48, max_context_tokens=limit))
    [t] = await engine.run(TASKS[:1])
    await engine.aclose()
    assert len(t.turn_spans) > 2  # it worked for a while before the limit
    assert CONTEXT_NOTE in tok.decode(t.ids)
    assert t.finish == "answer" and t.reward == 1.0
    assert len(t.prompt_ids) + len(t.ids) <= limit


async def test_collate_aligns_masks_and_logprobs(tok):
    policy = ScriptedPolicy(tok, solver)
    engine = RolloutEngine(policy, env_factory)
    trajs = await engine.run(TASKS[:3])
    await engine.aclose()
    batch = collate(trajs, tok.pad_token_id)
    for i, t in enumerate(trajs):
        p = len(t.prompt_ids)
        assert batch["loss_mask"][i, :p].sum() == 0
        assert batch["loss_mask"][i].sum() == t.n_policy_tokens
        assert batch["old_logprobs"][i][batch["loss_mask"][i] > 0].tolist() == [-0.5] * t.n_policy_tokens
    assert batch["rewards"].tolist() == [1.0, 1.0, 1.0]


# ---- ARPO branching ---------------------------------------------------------------------------

from agent_rl.algos import arpo_token_advantages, grpo_advantages  # noqa: E402
from agent_rl.rollout import ArpoConfig, ArpoRolloutEngine, branch_probability  # noqa: E402


def test_branch_probability_hand_computed():
    assert branch_probability(1.2, 1.0, 0.5, 0.2) == pytest.approx(0.54)  # 0.5 + 0.2 * 0.2
    assert branch_probability(3.0, 1.0, 0.5, 0.2) == pytest.approx(0.9)
    assert branch_probability(0.0, 1.0, 0.5, 1.0) == 0.0  # clipped at 0
    assert branch_probability(9.0, 1.0, 0.5, 1.0) == 1.0  # clipped at 1
    assert branch_probability(2.0, 0.0, 0.3, 1.0) == pytest.approx(0.3)  # no baseline: no rise


def controlled(text: str, turn: int):
    """Turn 1's entropy is the episode's own baseline (1 + a/10); after the tool result the
    entropy triples for even a and drops for odd a."""
    a, b = map(int, re.findall(r"Add (\d+) and (\d+)", text)[-1])
    base = 1.0 + a / 10
    responses = re.findall(r"<tool_response>\n(.*?)\n</tool_response>", text, re.S)
    if not responses:
        return f"Let me add.\n{call('add', a=a, b=b)}", base
    return call("answer", answer=responses[-1]), base * (3.0 if a % 2 == 0 else 0.2)


async def test_arpo_branches_where_entropy_rises_within_budget(tok):
    policy = ScriptedPolicy(tok, controlled)
    cfg = ArpoConfig(budget=6, initial=2, alpha=0.0, beta=1.0, k=5, branches=2, seed=0)
    engine = ArpoRolloutEngine(policy, env_factory, arpo=cfg)
    tasks = TASKS[:4]  # a = 0, 1, 2, 3
    trajs = await engine.run(tasks)
    await engine.aclose()
    by_group: dict[int, list] = {}
    for t in trajs:
        by_group.setdefault(t.group_id, []).append(t)
    assert {g: len(ts) for g, ts in by_group.items()} == {0: 6, 1: 6, 2: 6, 3: 6}  # exactly M each
    for g, ts in by_group.items():
        branched = [t for t in ts if t.branch_parent is not None]
        if tasks[g]["a"] % 2 == 0:
            assert len(branched) == 4  # entropy rose (P = 1): the whole budget went to branches
        else:
            assert branched == []  # entropy fell (P = 0): the budget was filled with full runs
        for t in ts:
            a = tasks[g]["a"]
            assert t.entropy_baseline == pytest.approx(1.0 + a / 10)  # the episode's own baseline
            assert t.reward == 1.0
    assert all(e["branches"] == 0 for e in engine.branch_log if tasks[by_uid(trajs, e["uid"]).group_id]["a"] % 2)
    # the tree: a branch shares its parent's tokens up to the branch point, with one segment id there
    uid = {t.uid: t for t in trajs}
    for t in trajs:
        if t.branch_parent is None:
            continue
        p = uid[t.branch_parent]
        at = t.branched_at
        assert t.ids[:at] == p.ids[:at]
        assert t.segment_ids[:at] == p.segment_ids[:at] and min(t.segment_ids[:at]) >= 0
        assert all(s == -1 for s in t.segment_ids[at:])  # its own turn is its alone
    # ARPO hard attribution runs on the collated tree
    batch = collate(trajs, tok.pad_token_id)
    adv = grpo_advantages(batch["rewards"], batch["group_ids"])
    tok_adv = arpo_token_advantages(adv, batch["segment_ids"], batch["loss_mask"], mode="hard")
    assert tok_adv.shape == batch["loss_mask"].shape


def by_uid(trajs, uid):
    return next(t for t in trajs if t.uid == uid)
