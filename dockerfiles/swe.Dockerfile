# agent-rl/swe:latest - the sandbox image plus what software-repository tasks need: git,
# patch, make, and a Python test stack (pytest from Debian, pip and venv; no C compiler).
#
# Use it with DockerSandbox(image="agent-rl/swe:latest"). Everything comes from Debian's
# mirror, so it builds without PyPI or a container registry.
FROM agent-rl/sandbox:latest

USER root
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      git patch make diffutils python3-pytest python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb

# git refuses to work in a repository owned by another uid, and files put into the workdir
# by the host may be; the sandbox is single-user, so trust every directory.
RUN git config --system safe.directory '*' \
 && git config --system user.name agent \
 && git config --system user.email agent@sandbox.invalid \
 && git config --system init.defaultBranch main

USER agent
WORKDIR /workspace
CMD ["sleep", "infinity"]
