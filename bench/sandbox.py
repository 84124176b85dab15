"""Sandbox latency and throughput against a bare subprocess, all measured in one run.

    python bench/sandbox.py [--n 200] [--json out.json]

Rows:
  baseline      subprocess.run([sys.executable, "-S", "-c", code]) on the host, no isolation
  fresh         a new bubblewrap sandbox per call (start, run, close)
  pooled        one-shot run through a SandboxPool: fork from a warm sandbox, wiped after
  session       one call into a persistent PythonSession (state kept)
  exec          a shell command (/bin/true) in a warm sandbox
Throughput rows run ``--concurrency`` calls at once for ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandboxes import LocalSandbox, PythonSession, SandboxPool  # noqa: E402

CODE = "x = sum(range(100))\nprint(x)"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return out


async def throughput(fn, seconds: float, concurrency: int) -> float:
    done = 0
    end = time.perf_counter() + seconds

    async def worker():
        nonlocal done
        while time.perf_counter() < end:
            await fn()
            done += 1

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - t)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="calls per latency row")
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each throughput row")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    def bare():
        r = subprocess.run([sys.executable, "-S", "-c", CODE], capture_output=True)
        assert r.stdout == b"4950\n"

    async def baseline():
        await asyncio.to_thread(bare)

    async def fresh():
        async with LocalSandbox() as sb:
            r = await sb.run_python(CODE)
        assert r.stdout == "4950\n"

    pool = SandboxPool(size=args.concurrency)
    await pool.start()

    async def pooled():
        r = await pool.run_python(CODE)
        assert r.stdout == "4950\n", r

    session = PythonSession()
    await session.start()
    await session.run("x = 0")

    async def sess():
        r = await session.run("x += 1")
        assert r.error is None

    warm = LocalSandbox()
    await warm.start()

    async def exec_true():
        r = await warm.exec(["/bin/true"])
        assert r.exit_code == 0

    rows = {}
    for name, fn, n in (("baseline", baseline, args.n // 2), ("fresh", fresh, args.n // 4),
                        ("pooled", pooled, args.n), ("session", sess, args.n), ("exec", exec_true, args.n)):
        for _ in range(5):
            await fn()  # warm-up
        lat = await timed(fn, n)
        rows[name] = {"p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3, "n": n}
    for name, fn in (("baseline", baseline), ("fresh", fresh), ("pooled", pooled)):
        rows[name]["runs_per_s"] = await throughput(fn, args.seconds, args.concurrency)

    await pool.close()
    await session.close()
    await warm.close()

    base = rows["baseline"]
    print(f"sandbox benchmark: {sys.executable}, concurrency {args.concurrency}, code {CODE!r}")
    print(f"{'path':<10} {'p50 ms':>8} {'p99 ms':>8} {'runs/s':>8} {'p50 vs baseline':>16} {'runs/s vs baseline':>19}")
    for name, r in rows.items():
        rps = r.get("runs_per_s")
        ratio_t = f"{rps / base['runs_per_s']:.2f}x" if rps else "-"
        rps_txt = f"{rps:8.0f}" if rps else f"{'-':>8}"
        print(f"{name:<10} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {rps_txt} "
              f"{r['p50_ms'] / base['p50_ms']:15.2f}x {ratio_t:>19}")
    print(f"targets: session p50 <= 2 ms: {rows['session']['p50_ms']:.2f} ms; isolated one-shot p50 <= 10 ms: "
          f"{rows['pooled']['p50_ms']:.2f} ms; >= 150 runs/s: {rows['pooled']['runs_per_s']:.0f}/s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
