"""``python -m tasks build [all|NAME...] [--force]`` and ``python -m tasks list``."""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import registry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tasks", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build task sets into the cache")
    b.add_argument("names", nargs="*", default=["all"], help="set names, or 'all'")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    sub.add_parser("list", help="list task sets and where they live")
    args = ap.parse_args(argv)

    if args.cmd == "list":
        for name in registry.names(include_hub=True):
            where = "" if name.startswith("hub:") else str(registry.set_dir(name))
            print(f"{name:16s} {where}")
        return 0

    names = registry.names() if args.names in (["all"], []) else args.names
    for name in names:
        t0 = time.perf_counter()
        path = registry.build(name, force=args.force)
        counts = json.loads((path / "manifest.json").read_text())["counts"]
        print(f"{name:10s} train={counts['train']:5d} heldout={counts['heldout']:4d} "
              f"{time.perf_counter() - t0:6.2f}s  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
