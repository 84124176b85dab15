#!/usr/bin/env bash
# Sets up everything agent-rl needs on a fresh Debian/Ubuntu machine with Python 3.11:
# system packages (bubblewrap for the sandbox, docker.io + debootstrap for the docker backend),
# a virtual environment in .venv, the right torch build, and the package with its extras.
# Idempotent: a second run only checks. Set AGENT_RL_SKIP_APT=1 to skip system packages.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

apt_pkgs=(bubblewrap docker.io debootstrap)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ] && [ "${AGENT_RL_SKIP_APT:-0}" != 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then
    log "installing system packages with sudo: ${missing[*]}"
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    log "WARNING: cannot install ${missing[*]} (not root, no sudo): sandboxes fall back to weaker isolation"
  fi
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
pip() {
  # Some hosts' pip config names local indexes that may be absent; their warnings are noise.
  # pipefail makes the pipeline's status pip's own.
  .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

# torch first, so that nothing later pulls a multi-GB CUDA build onto a CPU machine.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    log "GPU found: installing a CUDA build of torch"
    pip install "torch${TORCH_SPEC:->=2.4}"
  else
    log "no GPU: installing the CPU build of torch (${TORCH_CPU_SPEC:-torch==2.13.0})"
    pip install "${TORCH_CPU_SPEC:-torch==2.13.0}" 2>/dev/null \
      || pip install --index-url https://download.pytorch.org/whl/cpu "${TORCH_CPU_SPEC:-torch==2.13.0}"
  fi
fi

stamp=.venv/.agent-rl-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing agent-rl with extras [${EXTRAS:-dev,docker}]"
  pip install -e ".[${EXTRAS:-dev,docker}]"
  touch "$stamp"
fi
log "ready: $(.venv/bin/python -c 'import torch,transformers; print(f"torch {torch.__version__}, transformers {transformers.__version__}")')"
