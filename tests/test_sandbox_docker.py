"""The docker sandbox backend against a real engine: the contract, and attacks that must lose.

Needs a running engine and the images: ``bash scripts/start_dockerd.sh && bash
scripts/build_images.sh``. Without them the whole module is skipped, saying which is missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import resource
import secrets
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sandboxes.base import Limits, SandboxError, SandboxUnavailable

IMAGE = "agent-rl/sandbox:latest"
# Every sandbox made here carries this label too, so the leak check below sees only ours and
# not the sandboxes of anything else using the same engine at the same time.
RUN_LABEL = {"agent-rl.test-run": uuid.uuid4().hex}


def _why_no_docker() -> str | None:
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError:
        return "the docker Python SDK is not installed (pip install 'docker>=7')"
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as e:
        return f"no Docker engine answers ({e}); start one with: bash scripts/start_dockerd.sh"
    try:
        client.images.get(IMAGE)
    except Exception:
        return f"image {IMAGE} is missing; build it with: bash scripts/build_images.sh"
    return None


_reason = _why_no_docker()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

import docker  # type: ignore[import-untyped]  # noqa: E402

from sandboxes.docker import DockerSandbox  # noqa: E402

pytestmark = pytest.mark.docker

MakeSandbox = Callable[..., Awaitable[DockerSandbox]]


@pytest.fixture
def client() -> docker.DockerClient:
    return docker.from_env(timeout=30)


@pytest.fixture
async def make() -> AsyncIterator[MakeSandbox]:
    made: list[DockerSandbox] = []

    async def _make(limits: Limits = Limits(), **kwargs: object) -> DockerSandbox:
        sb = DockerSandbox(limits, labels=RUN_LABEL, **kwargs)  # type: ignore[arg-type]
        made.append(sb)
        return await sb.start()

    yield _make
    for sb in made:
        await sb.close()


@pytest.fixture
async def sb(make: MakeSandbox) -> DockerSandbox:
    return await make()


# --------------------------------------------------------------------------- basics


async def test_exit_codes_stdout_stderr(sb: DockerSandbox) -> None:
    r = await sb.exec("echo out; echo err >&2; exit 3")
    assert (r.stdout, r.stderr, r.exit_code, r.timed_out, r.truncated) == ("out\n", "err\n", 3, False, False)
    assert not r.ok and r.duration_s > 0
    assert (await sb.exec(["false"])).exit_code == 1
    assert (await sb.exec(["true"])).ok
    assert (await sb.exec("no-such-command-here")).exit_code == 127
    # Death by signal is reported negative, as the contract says.
    assert (await sb.exec("kill -TERM $$")).exit_code == -15
    # An argv list is not parsed by a shell.
    r = await sb.exec(["echo", "$HOME", "a;b", "'q'"])
    assert r.stdout == "$HOME a;b 'q'\n"


async def test_runs_unprivileged_in_workdir(sb: DockerSandbox) -> None:
    r = await sb.exec("id -u; id -g; pwd; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status")
    lines = r.stdout.split("\n")
    assert lines[0] == "1000" and lines[1] == "1000" and lines[2] == sb.workdir
    assert "CapEff:\t0000000000000000" in r.stdout
    assert "NoNewPrivs:\t1" in r.stdout


async def test_stdin_str_bytes_and_large(sb: DockerSandbox) -> None:
    r = await sb.exec("cat", stdin="héllo\n")
    assert r.stdout == "héllo\n"
    blob = secrets.token_bytes(3_000_000)
    r = await sb.exec("sha256sum | cut -d' ' -f1", stdin=blob)
    assert r.stdout.strip() == hashlib.sha256(blob).hexdigest()
    # No stdin given means an empty one, not a hang.
    r = await sb.exec("cat; echo done", timeout=5)
    assert r.stdout == "done\n" and not r.timed_out
    # A command that exits without reading its (large) stdin must not wedge the call.
    r = await sb.exec("true", stdin=b"x" * 5_000_000, timeout=10)
    assert r.ok


async def test_env_is_per_call(sb: DockerSandbox) -> None:
    r = await sb.exec('echo "$FOO|$HOME"', env={"FOO": "bar baz"})
    assert r.stdout == "bar baz|/workspace\n"
    r = await sb.exec('echo "[$FOO]"')
    assert r.stdout == "[]\n"


async def test_state_persists_across_calls(sb: DockerSandbox) -> None:
    assert (await sb.exec("echo kept > note.txt && mkdir -p d && echo 2 > d/x")).ok
    r = await sb.exec("cat note.txt d/x")
    assert r.stdout == "kept\n2\n"
    assert await sb.read_file("note.txt") == b"kept\n"


async def test_write_read_file_roundtrip(sb: DockerSandbox) -> None:
    blob = bytes(range(256)) * 1000 + b"\x00\xff"
    await sb.write_file("deep/er/data.bin", blob)
    assert await sb.read_file("deep/er/data.bin") == blob
    assert await sb.read_file("/workspace/deep/er/data.bin") == blob
    r = await sb.exec("sha256sum deep/er/data.bin | cut -d' ' -f1; stat -c %u:%g deep deep/er/data.bin")
    assert r.stdout.split() == [hashlib.sha256(blob).hexdigest(), "1000:1000", "1000:1000"]
    # The code owns what was written for it: it can change and delete it.
    assert (await sb.exec("echo more >> deep/er/data.bin && rm -r deep")).ok
    await sb.write_file("text.txt", "ünïcode\n")
    assert (await sb.exec("cat text.txt")).stdout == "ünïcode\n"
    await sb.write_file("text.txt", "overwritten")
    assert await sb.read_file("text.txt") == b"overwritten"
    # Outside the workdir (here /tmp) files go through a process, binary-safe as well.
    await sb.write_file("/tmp/sub/t.bin", blob)
    assert await sb.read_file("/tmp/sub/t.bin") == blob
    # A symlink is followed the way the code inside would follow it.
    assert (await sb.exec("ln -s /tmp/sub/t.bin link")).ok
    assert await sb.read_file("link") == blob


async def test_file_errors(sb: DockerSandbox) -> None:
    with pytest.raises(FileNotFoundError):
        await sb.read_file("absent.txt")
    with pytest.raises(FileNotFoundError):
        await sb.read_file("/tmp/absent.txt")
    await sb.exec("mkdir adir")
    with pytest.raises(IsADirectoryError):
        await sb.read_file("adir")
    with pytest.raises(PermissionError):
        await sb.read_file("/etc/shadow")
    with pytest.raises(PermissionError):
        await sb.write_file("/etc/evil", "x")  # read-only root, and not root either
    with pytest.raises(ValueError):
        await sb.read_file("")


# --------------------------------------------------------------------------- attacks


class _Listener:
    """A TCP server on all of the host's addresses that records whoever connects."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.peers: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except OSError:
                continue
            self.peers.append(addr[0])
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def _host_ipv4s() -> list[str]:
    """The host's own non-loopback IPv4 addresses, as best this host tells them."""
    found: set[str] = set()
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
        found.update(a for a in out.split() if "." in a)
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        found.update(i[4][0] for i in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET))
    except OSError:
        pass
    return sorted(a for a in found if not a.startswith("127."))


# The default gateway of the sandbox's network namespace, from the kernel's routing table
# (little-endian hex): with a network, that is the host's end of the docker bridge.
_GATEWAY = "awk 'NR > 1 && $2 == \"00000000\" {print $3}' /proc/net/route"


def _hex_to_ip(h: str) -> str:
    return ".".join(str(int(h[i : i + 2], 16)) for i in (6, 4, 2, 0))


_CONNECT = """
import socket, sys
for host in sys.argv[2:]:
    try:
        socket.create_connection((host, int(sys.argv[1])), timeout=2).close()
        print(host, "CONNECTED")
    except OSError as e:
        print(host, "refused:", e)
"""


async def test_no_network(make: MakeSandbox) -> None:
    listener = _Listener()
    try:
        # Positive control first: with the network allowed, the probe does reach the host's
        # listener, so the refusals below are the sandbox's doing, not a firewall's.
        open_sb = await make(Limits(network=True))
        assert not open_sb.isolation.network_isolated
        gw_hex = (await open_sb.exec(_GATEWAY)).stdout.split()
        gateway = _hex_to_ip(gw_hex[0]) if gw_hex else None
        if gateway:
            r = await open_sb.exec(["python3", "-c", _CONNECT, str(listener.port), gateway], timeout=20)
            assert f"{gateway} CONNECTED" in r.stdout, r
        reached = len(listener.peers)

        sb = await make()
        targets = sorted({"127.0.0.1", *([gateway] if gateway else []), *_host_ipv4s(), "1.1.1.1"})
        r = await sb.exec(["python3", "-c", _CONNECT, str(listener.port), *targets], timeout=30)
        assert "CONNECTED" not in r.stdout, r.stdout
        assert r.stdout.count(" refused: ") == len(targets), r
        assert len(listener.peers) == reached  # nobody new got through
        # --network none: a loopback interface and nothing else, and no route anywhere.
        r = await sb.exec("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
        assert r.stdout.split() == ["lo"]
        assert (await sb.exec(_GATEWAY)).stdout == ""
        assert sb.isolation.network_isolated
    finally:
        listener.close()


async def test_host_files_unreachable(sb: DockerSandbox, tmp_path: os.PathLike) -> None:
    token = secrets.token_hex(16)
    secret = os.path.join(tmp_path, "host-secret.txt")
    with open(secret, "w") as f:
        f.write(token)
    r = await sb.exec(["cat", secret])
    assert r.exit_code != 0 and token not in r.stdout
    # Not anywhere in the sandbox's filesystem either (what /proc and /sys show is the
    # kernel's, and would include this very command line).
    r = await sb.exec(f"grep -rlsF -D skip {token} / --exclude-dir=proc --exclude-dir=sys", timeout=60)
    assert r.stdout == "" and r.exit_code in (1, 2) and not r.timed_out, r  # 2: unreadable files
    r = await sb.exec(f"grep -c {tmp_path} /proc/self/mountinfo")
    assert r.stdout.strip() == "0"
    # The engine's socket is not there to escape through, and the image root is read-only.
    assert (await sb.exec("test -e /var/run/docker.sock || test -e /run/docker.sock")).exit_code == 1
    r = await sb.exec("touch /usr/bin/evil /etc/evil /evil")
    assert r.exit_code != 0 and "Read-only file system" in r.stderr


async def test_fork_bomb_is_contained(make: MakeSandbox, client: docker.DockerClient) -> None:
    sb = await make(Limits(max_procs=32))
    cid = sb.container_id
    peak = 0

    async def sample() -> None:
        nonlocal peak
        while True:
            stats = await asyncio.to_thread(client.api.stats, cid, stream=False, one_shot=True)
            peak = max(peak, int(stats.get("pids_stats", {}).get("current", 0)))
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    try:
        r = await sb.exec("bomb() { bomb | bomb & }; bomb; sleep 60", timeout=4)
    finally:
        sampler.cancel()
    assert r.timed_out
    assert 0 < peak <= 32 + 4, peak  # the cgroup held: Limits.max_procs plus the sandbox's own
    # The sandbox recovers: the bomb's processes are gone and new commands run.
    r = await sb.exec("ls /proc | grep -c '^[0-9]'")
    assert r.ok and int(r.stdout) < 10, r
    # And the host is fine.
    assert subprocess.run(["true"], timeout=10).returncode == 0


_HOG = """
import os, time
while True:
    try:
        if os.fork() == 0:
            time.sleep(1000)
            os._exit(0)
    except OSError:
        time.sleep(0.005)
"""


async def test_leftover_process_hog_is_recovered(make: MakeSandbox) -> None:
    # A hog that leaves its call's process group survives the call and keeps every pid taken,
    # so not even a kill can start in the sandbox any more. The sandbox must recover.
    sb = await make(Limits(max_procs=16))
    await sb.write_file("hog.py", _HOG)
    await sb.write_file("/tmp/scratch", "x")
    assert (await sb.exec("setsid python3 hog.py > /dev/null 2>&1 < /dev/null & sleep 1", timeout=10)).ok
    for _ in range(5):  # a call may win a race for a freed pid; the hog wins most
        r = await sb.exec("echo hi")
        if not r.ok:
            break
    assert not r.ok and "process limit was used up" in r.stderr, r
    # Recovery kills the hog and keeps the files; only when even that kill cannot get a pid
    # (a loaded host) is the container restarted, and the agent is told its files are gone.
    kept = "files are kept" in r.stderr
    assert kept or "had to be restarted" in r.stderr, r
    r = await sb.exec("echo hi; ps -eo args | grep -c '^python3 hog'; ls /tmp")
    assert r.stdout == ("hi\n0\nscratch\n" if kept else "hi\n0\n"), r  # the hog is gone
    if kept:
        assert await sb.read_file("hog.py") == _HOG.encode()


async def test_memory_bomb_is_killed(make: MakeSandbox) -> None:
    sb = await make(Limits(memory_mb=128))
    r = await sb.exec(["python3", "-c", "x = []\nwhile True: x.append(bytearray(16 << 20))"], timeout=30)
    assert r.exit_code == -9 and not r.timed_out, r
    assert r.duration_s < 20
    assert (await sb.exec("echo alive")).stdout == "alive\n"


async def test_cpu_time_limit(make: MakeSandbox) -> None:
    sb = await make(Limits(cpu_s=1))
    r = await sb.exec(["python3", "-c", "while True: pass"], timeout=20)
    assert r.exit_code in (-24, -9) and not r.timed_out, r  # SIGXCPU, then SIGKILL at the hard limit
    assert r.duration_s < 10


async def test_file_size_limit(make: MakeSandbox) -> None:
    sb = await make(Limits(max_file_mb=1))
    r = await sb.exec("head -c 3000000 /dev/zero > big; echo rc=$?; stat -c %s big")
    assert "rc=0" not in r.stdout
    assert int(r.stdout.split()[-1]) <= 1024 * 1024


async def test_timeout_kills_the_whole_call(sb: DockerSandbox) -> None:
    t0 = time.monotonic()
    r = await sb.exec("sleep 100", timeout=1)
    assert r.timed_out and r.exit_code == -9 and 0.9 < time.monotonic() - t0 < 5
    r = await sb.exec(["python3", "-c", "while True: pass"], timeout=1)
    assert r.timed_out and r.duration_s < 5
    # Children in the background and one that left the process group (setsid) die too.
    r = await sb.exec("sleep 101 & setsid sleep 102 & sleep 103", timeout=1)
    assert r.timed_out and r.duration_s < 5
    r = await sb.exec("ps -eo args")
    assert not any(f"sleep 10{i}" in r.stdout for i in (1, 2, 3)), r.stdout


async def test_host_side_guard_when_timeout_is_missing(sb: DockerSandbox) -> None:
    # With no `timeout` on PATH the in-container deadline is gone; the host must enforce it.
    r = await sb.exec("/bin/sleep 104", timeout=1, env={"PATH": "/nonexistent"})
    assert r.timed_out and r.duration_s < 10, r
    r = await sb.exec("ps -eo args")
    assert "sleep 104" not in r.stdout


async def test_background_child_does_not_hold_the_call(sb: DockerSandbox) -> None:
    r = await sb.exec("sleep 105 & echo started")
    assert r.ok and r.stdout == "started\n" and r.duration_s < 1.5
    assert "sleep 105" not in (await sb.exec("ps -eo args")).stdout


async def test_huge_output_is_capped(sb: DockerSandbox) -> None:
    cap = sb.limits.max_output_bytes
    code = (
        "import sys\n"
        "o = sys.stdout.buffer\n"
        "o.write(b'START'); [o.write(b'x' * (1 << 20)) for _ in range(100)]; o.write(b'END')\n"
        "sys.stderr.write('small')\n"
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = await sb.exec(["python3", "-c", code], timeout=60)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert r.ok and r.truncated
    assert r.stdout.startswith("START") and r.stdout.endswith("END")
    assert len(r.stdout) < cap + 200
    assert f"bytes of output cut: {100 * 2**20 + 8} bytes in all]" in r.stdout
    assert r.stderr == "small"
    assert grown_mb < 50, f"host memory grew by {grown_mb:.0f} MB"
    # Endless output ends at the timeout, capped as well.
    r = await sb.exec("yes", timeout=1.5)
    assert r.timed_out and r.truncated and len(r.stdout) < cap + 200


# A process that outlives its call: it leaves the call's process group (setsid), and the call
# waits until it has (the exec into sleep comes after setsid), or the end-of-call kill of the
# group could catch it first.
_DAEMON = "setsid sleep {n} > /dev/null 2>&1 < /dev/null & until ps -eo args | grep -q '^sleep {n}$'; do :; done"


async def test_sandboxes_are_isolated_from_each_other(make: MakeSandbox) -> None:
    a, b = await make(), await make()
    name = f"only-in-a-{secrets.token_hex(4)}"
    await a.write_file(name, "mine")
    assert (await a.exec(_DAEMON.format(n=106))).ok
    assert "sleep 106" in (await a.exec("ps -eo args")).stdout
    # b sees neither a's process nor its file, anywhere.
    assert "sleep 106" not in (await b.exec("ps -eo args")).stdout
    r = await b.exec(f"find / -name '{name}*' -not -path '/proc/*' 2>/dev/null; ls -A", timeout=60)
    assert r.stdout == "", r
    with pytest.raises(FileNotFoundError):
        await b.read_file(name)
    assert a.workdir == b.workdir and a.container_id != b.container_id


async def test_calls_run_concurrently_without_blocking_the_loop(sb: DockerSandbox) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    task = asyncio.create_task(ticker())
    t0 = time.monotonic()
    results = await asyncio.gather(*(sb.exec(f"sleep 1; echo {i}") for i in range(4)))
    elapsed = time.monotonic() - t0
    task.cancel()
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(4)]
    assert elapsed < 3, elapsed  # in parallel, not one after another
    assert ticks >= 25, ticks  # the event loop kept running throughout


async def test_reset(sb: DockerSandbox) -> None:
    await sb.write_file("f.txt", "x")
    assert (await sb.exec("echo y > /tmp/t; " + _DAEMON.format(n=107))).ok
    await sb.reset()
    r = await sb.exec("ls -A; ls -A /tmp; ps -eo args")
    assert "f.txt" not in r.stdout and "sleep 107" not in r.stdout and "\nt\n" not in r.stdout


async def test_dead_container_raises_sandbox_error(sb: DockerSandbox, client: docker.DockerClient) -> None:
    client.containers.get(sb.container_id).kill()
    with pytest.raises(SandboxError):
        await sb.exec("echo hi")


async def test_isolation_report(sb: DockerSandbox) -> None:
    iso = sb.isolation
    assert iso.backend == "docker" and iso.strong and iso.process_limit == "cgroup"
    assert {"pid", "net", "mount"} <= set(iso.namespaces)


async def test_close_is_idempotent_and_removes_everything(client: docker.DockerClient) -> None:
    sb = await DockerSandbox(labels=RUN_LABEL).start()
    cid = sb.container_id
    volume = client.containers.get(cid).attrs["Mounts"][0]["Name"]
    await sb.close()
    await sb.close()
    assert sb.closed
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(cid)
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get(volume)
    with pytest.raises(SandboxError):
        await sb.exec("echo hi")
    # Context-manager use closes too.
    async with DockerSandbox(labels=RUN_LABEL) as sb2:
        assert (await sb2.exec("echo in")).stdout == "in\n"
    assert sb2.closed


async def test_unavailable_says_what_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SandboxUnavailable, match="build_images.sh"):
        await DockerSandbox(image="agent-rl/no-such-image:latest", labels=RUN_LABEL).start()
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(SandboxUnavailable, match="start_dockerd.sh"):
        await DockerSandbox(labels=RUN_LABEL).start()


async def test_workdir_is_fresh_and_seedable(make: MakeSandbox) -> None:
    # The workdir is a fresh tmpfs; `seed` copies a directory of the image into it.
    sb = await make(seed="/etc/skel")
    r = await sb.exec("ls -A; stat -c %u .bashrc; df -P . /tmp | tail -n +2 | awk '{print $1}'")
    assert r.stdout.split() == [".bash_logout", ".bashrc", ".profile", "1000", "tmpfs", "tmpfs"], r
    with pytest.raises(ValueError):
        DockerSandbox(seed="relative/path")
    with pytest.raises(ValueError):
        DockerSandbox(user="0:0")


async def test_swe_image_has_its_tools(make: MakeSandbox, client: docker.DockerClient) -> None:
    try:
        client.images.get("agent-rl/swe:latest")
    except docker.errors.ImageNotFound:
        pytest.skip("image agent-rl/swe:latest is missing; build it with: bash scripts/build_images.sh swe")
    sb = await make(image="agent-rl/swe:latest")
    await sb.write_file("test_it.py", "def test_ok():\n    assert 1 + 1 == 2\n")
    r = await sb.exec("git init -q . && git add -A && git commit -qm init && python3 -m pytest -q test_it.py")
    assert r.ok and "1 passed" in r.stdout, r


def test_stream_demux_and_capture_at_any_split() -> None:
    # The engine's frames arrive cut anywhere by the socket: headers and payloads split
    # across reads must come out the same as whole.
    import random

    from sandboxes._agent import OutputCapture as _Capture
    from sandboxes.docker import _Demux

    rng = random.Random(7)
    frames = [(rng.choice((1, 2)), rng.randbytes(rng.randrange(0, 300))) for _ in range(200)]
    wire = b"".join(bytes([k, 0, 0, 0]) + len(p).to_bytes(4, "big") + p for k, p in frames)
    want_out = b"".join(p for k, p in frames if k == 1)
    want_err = b"".join(p for k, p in frames if k == 2)
    for _ in range(20):
        out, err = _Capture(10**6), _Capture(10**6)
        demux, i = _Demux(out, err), 0
        while i < len(wire):
            n = rng.randrange(1, 40)
            demux.feed(wire[i : i + n])
            i += n
        assert bytes(out.head + out.tail) == want_out and bytes(err.head + err.tail) == want_err
    cap = _Capture(100)
    data = bytes(range(256)) * 10
    for j in range(0, len(data), 7):
        cap.add(data[j : j + 7])
    text = cap.text()
    assert cap.truncated and cap.total == len(data)
    head, tail = text.split("\n...[", 1)
    assert head.encode("latin-1", "replace")[:10] == data[:10]
    assert f"[{len(data) - 100} bytes of output cut: {len(data)} bytes in all]" in "[" + tail
    assert bytes(cap.tail[-cap.tail_cap :]) == data[-cap.tail_cap :]


def test_zz_no_labelled_containers_left(client: docker.DockerClient) -> None:
    """Runs last (pytest keeps file order): every sandbox above was closed by its test."""
    labels = [f"{k}={v}" for k, v in {"agent-rl": "1", **RUN_LABEL}.items()]
    assert client.containers.list(all=True, filters={"label": labels}) == []
    assert client.volumes.list(filters={"label": labels}) == []
