#!/usr/bin/env bash
# Sets up and runs the whole test suite. Extra arguments go to pytest.
# Starts a Docker engine and builds the sandbox images when it can, so the docker backend is
# tested for real; where that is impossible those tests skip and say why.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
if [ "${AGENT_RL_SKIP_DOCKER:-0}" != 1 ] && [ -f scripts/start_dockerd.sh ]; then
  if bash scripts/start_dockerd.sh && bash scripts/build_images.sh; then
    echo "[test] docker engine up and images built"
  else
    echo "[test] WARNING: no docker engine or images: docker tests will skip with the reason"
  fi
fi
.venv/bin/python -m pytest "$@"
