# agent-rl/sandbox:latest - the default image of the docker sandbox backend.
#
# python3 and the usual shell tools, and an unprivileged user `agent` (uid 1000) that every
# command runs as. The backend mounts /workspace and /tmp as tmpfs over a read-only root, so
# nothing written here at build time under those paths is visible at run time.
FROM agent-rl/base:bookworm

# procps: ps/pkill/top, which agents reach for; the rest is what minbase leaves out that a
# coding agent expects. --no-install-recommends keeps the image small.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      procps less file bzip2 xz-utils unzip \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb

RUN groupadd --gid 1000 agent \
 && useradd --uid 1000 --gid 1000 --home-dir /workspace --no-create-home --shell /bin/bash agent \
 && mkdir -p /workspace \
 && chown agent:agent /workspace

ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/workspace
USER agent
WORKDIR /workspace
CMD ["sleep", "infinity"]
