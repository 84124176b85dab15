#!/usr/bin/env bash
# Sets up, then runs the fastest real demo: a scripted agent solving tasks of each env
# through gymnasium.make, with real sandboxes, SQLite and retrieval.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
for env in agent_rl/Math-v0 agent_rl/SearchQA-v0 agent_rl/SQL-v0; do
  .venv/bin/agent-rl demo --env "$env" --episodes 2 "$@"
done
