"""Env steps per second with a scripted agent, and search latency, against baselines run in
the same process.

    python bench/envs.py [--episodes 40] [--concurrency 8]

Baselines:
  - steps: the same tool work done directly, without the env (the expert's code run through a
    bare PythonSession, the gold SQL through sqlite3, the search through the retriever), so
    the ratio is the env's own overhead (parsing, validation, messages, reward).
  - search: a brute-force substring scan over the corpus (what you get with no index).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402

import envs  # noqa: E402,F401
import tasks  # noqa: E402
from agent_rl.experts import get_expert, run_episode  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def env_rate(env_id: str, episodes: int, concurrency: int) -> tuple[float, float]:
    """Steps/s and episodes/s over ``episodes`` held-out episodes, ``concurrency`` envs at once."""
    expert = get_expert(env_id)
    pool = [gym.make(env_id, split="heldout").unwrapped for _ in range(concurrency)]
    steps = 0
    rewards = []
    queue = list(range(episodes))

    async def worker(env):
        nonlocal steps
        while queue:
            i = queue.pop()
            rec = await run_episode(env, expert, options={"index": i})
            steps += rec["info"]["turn"]
            rewards.append(rec["reward"])

    t = time.perf_counter()
    await asyncio.gather(*(worker(e) for e in pool))
    dt = time.perf_counter() - t
    for e in pool:
        await e.aclose()
    assert sum(rewards) == len(rewards), f"{env_id}: the expert failed {len(rewards) - sum(rewards)} episodes"
    return steps / dt, episodes / dt


async def direct_rate(env_id: str, episodes: int, concurrency: int) -> float:
    """Tool work alone, per second, counted in the same 'steps' as the env run."""
    from sandboxes import PythonSession
    from tasks.math_solutions import solution_code
    from tools.retrievers import make_retriever

    held = tasks.load({"agent_rl/Math-v0": "math", "agent_rl/SearchQA-v0": "searchqa",
                       "agent_rl/SQL-v0": "sql"}[env_id], "heldout")
    items = [held[i % len(held)] for i in range(episodes)]
    t = time.perf_counter()
    steps = 0
    if env_id == "agent_rl/Math-v0":
        async def one(task):
            async with PythonSession() as s:  # an env opens a sandbox per episode too
                await s.run(solution_code(task))
        for i in range(0, len(items), concurrency):
            await asyncio.gather(*(one(x) for x in items[i:i + concurrency]))
        steps = 2 * len(items)
    elif env_id == "agent_rl/SQL-v0":
        for task in items:
            con = sqlite3.connect(f"file:{tasks.sql_db_path(task['db_id'])}?mode=ro", uri=True)
            con.execute(task["metadata"]["gold_sql"]).fetchall()
            con.close()
        steps = 2 * len(items)
    else:
        r = make_retriever(tasks.load_corpus("searchqa"), backend="bm25")
        titles = {d["id"]: d["title"] for d in tasks.load_corpus("searchqa")}
        for task in items:
            for d in task["metadata"]["supporting_docs"]:
                r.search(titles[d], 3)
            steps += len(task["metadata"]["supporting_docs"]) + 1
    return steps / (time.perf_counter() - t)


def search_latency(n: int) -> dict:
    from tools.retrievers import make_retriever

    corpus = tasks.load_corpus("searchqa")
    queries = [t["question"] for t in tasks.load("searchqa", "heldout")[:n]]
    out = {}
    lowered = [(d, (d["title"] + " " + d["text"]).lower()) for d in corpus]

    def scan(q):
        words = [w for w in q.lower().split() if len(w) > 3]
        return sorted(lowered, key=lambda dt: -sum(w in dt[1] for w in words))[:3]

    for name, fn in [("scan (baseline)", scan)] + [
            (b, make_retriever(corpus, backend=b).search) for b in ("bm25", "dense", "hybrid")]:
        if name == "scan (baseline)":
            call = fn
        else:
            def call(q, fn=fn):
                return fn(q, 3)
        for q in queries[:5]:
            call(q)  # warm-up (index and model already built above)
        lat = []
        for q in queries:
            t = time.perf_counter()
            call(q)
            lat.append(time.perf_counter() - t)
        out[name] = {"p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3}
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = {}
    for env_id in ("agent_rl/Math-v0", "agent_rl/SearchQA-v0", "agent_rl/SQL-v0"):
        await env_rate(env_id, 4, 2)  # warm-up: task sets, indexes, imports
        sps, eps = await env_rate(env_id, args.episodes, args.concurrency)
        base = await direct_rate(env_id, args.episodes, args.concurrency)
        rows[env_id] = {"env_steps_per_s": sps, "episodes_per_s": eps, "direct_steps_per_s": base,
                        "ratio": sps / base}
    search = search_latency(args.queries)

    print(f"env benchmark: {args.episodes} held-out episodes per env, {args.concurrency} envs at once, scripted experts")
    print(f"{'env':<22} {'steps/s':>9} {'episodes/s':>11} {'direct tool work/s':>19} {'env / direct':>13}")
    for k, r in rows.items():
        print(f"{k:<22} {r['env_steps_per_s']:9.1f} {r['episodes_per_s']:11.1f} {r['direct_steps_per_s']:19.1f} "
              f"{r['ratio']:12.2f}x")
    base = search["scan (baseline)"]["p50_ms"]
    print(f"\nsearch over {len(tasks.load_corpus('searchqa'))} docs, {args.queries} held-out questions, top 3")
    print(f"{'backend':<16} {'p50 ms':>8} {'p99 ms':>8} {'p50 vs scan':>12}")
    for k, r in search.items():
        print(f"{k:<16} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['p50_ms'] / base:11.3f}x")
    if args.json:
        args.json.write_text(json.dumps({"envs": rows, "search": search}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
