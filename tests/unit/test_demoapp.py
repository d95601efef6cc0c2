"""The demo app, its artifact builder and its node service script, run for real on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from lrelease.errors import ConfigError
from lrelease.sandbox.demoapp import SERVICE_SCRIPT, Behaviour, artifact_paths, build_artifact

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        assert proc.poll() is None, f"app exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
        assert time.monotonic() < deadline, "app did not listen in time"
        time.sleep(0.05)


def unpack(tarball: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="data")
    return dest


def metric(text: str, sample: str) -> float:
    """The value of the sample line starting with ``sample`` (name plus labels), else 0."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- the artifact ------------------------------------------------------------------------
def test_artifact_holds_the_app_at_top_level_with_a_sha256sum_file(tmp_path: Path) -> None:
    # Given a behaviour for build 1.2.3
    behaviour = Behaviour(error_rate=0.25, latency_ms=10)

    # When it is built
    art = build_artifact("1.2.3", tmp_path, behaviour)

    # Then the tarball holds app.py, VERSION and behaviour.json at top level, owned by root
    assert art.path == tmp_path / "demoapp-1.2.3.tar.gz"
    with tarfile.open(art.path) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["VERSION", "app.py", "behaviour.json"]
        assert all(m.uid == 0 and m.gid == 0 and m.isfile() for m in members)
        assert tar.extractfile("VERSION").read() == b"1.2.3\n"
        assert json.loads(tar.extractfile("behaviour.json").read()) == {
            "error_rate": 0.25, "latency_ms": 10, "health_fail": False, "start_fail": False,
        }
        assert tar.getmember("app.py").mode == 0o755
    # And the checksum file is in sha256sum format and matches
    digest = hashlib.sha256(art.path.read_bytes()).hexdigest()
    assert art.sha256 == digest
    assert art.sha256_path.read_text() == f"{digest}  demoapp-1.2.3.tar.gz\n"
    assert (art.path, art.sha256_path) == artifact_paths("1.2.3", tmp_path)
    assert subprocess.run(["sha256sum", "-c", art.sha256_path.name], cwd=tmp_path, capture_output=True).returncode == 0


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    # Given the same build and behaviour built twice, a second apart
    first = build_artifact("7.0", tmp_path / "a", Behaviour(latency_ms=5))
    time.sleep(1.1)
    second = build_artifact("7.0", tmp_path / "b", Behaviour(latency_ms=5))
    # When another behaviour is built
    other = build_artifact("7.0", tmp_path / "c", Behaviour(latency_ms=6))

    # Then the first two are identical and the third is not
    assert first.sha256 == second.sha256
    assert other.sha256 != first.sha256


def test_padding_adds_incompressible_megabytes(tmp_path: Path) -> None:
    # When a build is padded by 2 MiB
    art = build_artifact("big", tmp_path, pad_mb=2)

    # Then pad.bin is 2 MiB and the compressed artifact is still that large
    with tarfile.open(art.path) as tar:
        assert tar.getmember("pad.bin").size == 2 * 1024 * 1024
    assert art.path.stat().st_size > 2 * 1024 * 1024


@pytest.mark.parametrize(
    ("build", "make_behaviour", "pad_mb", "key"),
    [
        ("../evil", Behaviour, 0, "build"),
        ("", Behaviour, 0, "build"),
        ("-x", Behaviour, 0, "build"),
        ("a" * 65, Behaviour, 0, "build"),
        ("ok", lambda: Behaviour(error_rate=1.5), 0, "error_rate"),
        ("ok", lambda: Behaviour(error_rate=float("nan")), 0, "error_rate"),
        ("ok", lambda: Behaviour(latency_ms=-1), 0, "latency_ms"),
        ("ok", lambda: Behaviour(health_fail="yes"), 0, "health_fail"),  # type: ignore[arg-type]
        ("ok", Behaviour, -1, "pad_mb"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    tmp_path: Path, build: str, make_behaviour: Callable[[], Behaviour], pad_mb: int, key: str
) -> None:
    # When a build is asked for with one bad input
    with pytest.raises(ConfigError) as caught:
        build_artifact(build, tmp_path / "out", make_behaviour(), pad_mb=pad_mb)

    # Then the error names that key and no file appears
    assert (caught.value.where, caught.value.key) == ("demo build", key)
    assert not (tmp_path / "out").exists()


# -- the app -------------------------------------------------------------------------------
AppFactory = Callable[..., tuple[str, subprocess.Popen[str]]]


@pytest.fixture
def run_app(tmp_path: Path) -> Iterator[AppFactory]:
    """Start the real app.py from an unpacked artifact; every started app is stopped after."""
    procs: list[subprocess.Popen[str]] = []

    def start(behaviour: Behaviour = Behaviour(), build: str = "1.0.0") -> tuple[str, subprocess.Popen[str]]:
        art = build_artifact(build, tmp_path / "artifacts", behaviour)
        release = unpack(art.path, tmp_path / "releases" / f"{build}-{len(procs)}")
        port = free_port()
        proc = subprocess.Popen(
            [PYTHON, str(release / "app.py"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        procs.append(proc)
        if not behaviour.start_fail:
            wait_for_port(port, proc)
        return f"http://127.0.0.1:{port}", proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)


def test_app_serves_page_health_version_and_404(run_app: AppFactory) -> None:
    # Given a healthy build 1.0.0 running
    url, _ = run_app(build="1.0.0")

    # When each route is asked for, then each answers as documented
    page = requests.get(url + "/", timeout=5)
    assert page.status_code == 200
    assert page.text == f"demoapp 1.0.0 on {socket.gethostname()}\n"
    health = requests.get(url + "/health", timeout=5)
    assert (health.status_code, health.json()) == (200, {"status": "pass", "version": "1.0.0"})
    version = requests.get(url + "/version", timeout=5)
    assert (version.status_code, version.text) == (200, "1.0.0\n")
    assert requests.get(url + "/nope", timeout=5).status_code == 404


def test_metrics_count_requests_and_pass_promtool(run_app: AppFactory) -> None:
    # Given a running app that has served the page 3 times and one unknown path
    url, _ = run_app(build="2.0.0")
    for _ in range(3):
        requests.get(url + "/", timeout=5)
    requests.get(url + "/missing", timeout=5)

    # When its metrics are read, the page served twice more, and read again
    first = requests.get(url + "/metrics", timeout=5)
    for _ in range(2):
        requests.get(url + "/", timeout=5)
    second = requests.get(url + "/metrics", timeout=5).text

    # Then the counters and histogram count rose by exactly what was served
    assert first.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    page = 'demoapp_http_requests_total{path="/",code="200"}'
    assert (metric(first.text, page), metric(second, page)) == (3, 5)
    assert metric(second, 'demoapp_http_requests_total{path="other",code="404"}') == 1
    assert metric(second, 'demoapp_http_requests_total{path="/metrics",code="200"}') == 2
    assert metric(second, 'demoapp_http_request_duration_seconds_count{path="/"}') == 5
    assert metric(second, 'demoapp_http_request_duration_seconds_bucket{path="/",le="+Inf"}') == 5
    assert metric(second, 'demoapp_build_info{version="2.0.0"}') == 1
    assert 0 < metric(second, "process_start_time_seconds") <= time.time()
    # And promtool accepts the exposition
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    check = subprocess.run([promtool, "check", "metrics"], input=second, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_error_rate_one_fails_every_page_but_not_health(run_app: AppFactory) -> None:
    # Given a build whose pages always fail
    url, _ = run_app(Behaviour(error_rate=1.0))

    # When the page is asked for five times, then every answer is a 500, while health passes
    assert {requests.get(url + "/", timeout=5).status_code for _ in range(5)} == {500}
    assert requests.get(url + "/health", timeout=5).status_code == 200


def test_health_fail_answers_503(run_app: AppFactory) -> None:
    # Given a build whose health check fails
    url, _ = run_app(Behaviour(health_fail=True), build="3.1")

    # When /health is asked for, then it says fail with a 503
    health = requests.get(url + "/health", timeout=5)
    assert (health.status_code, health.json()) == (503, {"status": "fail", "version": "3.1"})


def test_start_fail_exits_non_zero_before_listening(run_app: AppFactory) -> None:
    # Given a build that refuses to start, when it is started
    _, proc = run_app(Behaviour(start_fail=True))
    _, stderr = proc.communicate(timeout=10)

    # Then it exits 3 saying why
    assert proc.returncode == 3
    assert "start_fail" in stderr


def test_latency_delays_the_page(run_app: AppFactory) -> None:
    # Given a build that adds 200 ms to every page
    url, _ = run_app(Behaviour(latency_ms=200))

    # When the page is fetched, then it takes at least 0.2 s
    started = time.monotonic()
    assert requests.get(url + "/", timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_sigterm_stops_the_app_cleanly(run_app: AppFactory) -> None:
    # Given a running app, when it gets SIGTERM
    _, proc = run_app()
    proc.send_signal(signal.SIGTERM)

    # Then it exits 0
    assert proc.wait(timeout=5) == 0


# -- the service script --------------------------------------------------------------------
class DeployRoot:
    """A node's deploy root laid out as the sandbox lays it out, in local mode."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.url = f"http://127.0.0.1:{port}"
        for sub in ("releases", "bin", "etc"):
            (root / sub).mkdir(parents=True)
        self.script = root / "bin" / "demoapp-service"
        shutil.copy2(SERVICE_SCRIPT, self.script)
        self.script.chmod(0o755)
        (root / "etc" / "service.env").write_text(f"PORT={port}\nBIND=127.0.0.1\nPYTHON={PYTHON}\n")

    def add_release(self, build: str, behaviour: Behaviour = Behaviour()) -> None:
        art = build_artifact(build, self.root.parent / "artifacts", behaviour)
        unpack(art.path, self.root / "releases" / build)

    def switch(self, build: str) -> None:
        link = self.root / "current"
        link.unlink(missing_ok=True)
        link.symlink_to(f"releases/{build}")

    def service(self, action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.script), action], capture_output=True, text=True, timeout=30)

    def pid(self) -> int | None:
        pidfile = self.root / "run" / "app.pid"
        return int(pidfile.read_text()) if pidfile.exists() else None


def pid_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state


def apps_under(root: Path) -> list[int]:
    """Pids of live processes running ``root``'s app.py, whatever the pidfile says."""
    needle = f"{root}/current/app.py".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in pids if pid_running(pid)]


@pytest.fixture
def deploy_root(tmp_path: Path) -> Iterator[DeployRoot]:
    """A deploy root with builds 1.0.0 (current), 2.0.0 and bad (start_fail); stopped after."""
    node = DeployRoot(tmp_path / "node1", free_port())
    node.add_release("1.0.0")
    node.add_release("2.0.0")
    node.add_release("bad", Behaviour(start_fail=True))
    node.switch("1.0.0")
    yield node
    node.service("stop")
    for pid in apps_under(node.root):
        os.kill(pid, signal.SIGKILL)


def test_service_start_status_stop(deploy_root: DeployRoot) -> None:
    # When the service is started
    start = deploy_root.service("start")

    # Then it exits 0 with the app answering on the configured port, detached in its own session
    assert start.returncode == 0, start.stderr
    pid = deploy_root.pid()
    assert pid is not None and pid_running(pid)
    assert requests.get(deploy_root.url + "/version", timeout=5).text == "1.0.0\n"
    assert os.getsid(pid) == pid != os.getsid(0)
    assert "app.py" in Path(f"/proc/{pid}/cmdline").read_text()
    status = deploy_root.service("status")
    assert (status.returncode, status.stdout.strip()) == (0, f"running pid {pid} version 1.0.0")
    # And starting again keeps the same process
    assert deploy_root.service("start").returncode == 0
    assert deploy_root.pid() == pid

    # When it is stopped
    stop = deploy_root.service("stop")

    # Then nothing runs or listens and status says stopped
    assert stop.returncode == 0, stop.stderr
    assert apps_under(deploy_root.root) == []
    assert not port_open(deploy_root.port)
    assert deploy_root.pid() is None
    status = deploy_root.service("status")
    assert (status.returncode, status.stdout.strip()) == (3, "stopped")
    assert deploy_root.service("stop").returncode == 0


def test_service_survives_hangup(deploy_root: DeployRoot) -> None:
    # Given a started service, when its process gets SIGHUP (as when an SSH session ends)
    assert deploy_root.service("start").returncode == 0
    pid = deploy_root.pid()
    assert pid is not None
    os.kill(pid, signal.SIGHUP)
    time.sleep(0.2)

    # Then it still serves
    assert pid_running(pid)
    assert requests.get(deploy_root.url + "/health", timeout=5).status_code == 200


def test_service_restart_runs_the_build_current_points_to(deploy_root: DeployRoot) -> None:
    # Given 1.0.0 running, when current is switched to 2.0.0 and the service restarted
    assert deploy_root.service("start").returncode == 0
    old_pid = deploy_root.pid()
    deploy_root.switch("2.0.0")
    restart = deploy_root.service("restart")

    # Then a new process serves 2.0.0 and the old one is gone
    assert restart.returncode == 0, restart.stderr
    assert deploy_root.pid() != old_pid
    assert old_pid is not None and not pid_running(old_pid)
    assert requests.get(deploy_root.url + "/version", timeout=5).text == "2.0.0\n"


def test_service_start_of_a_failing_build_exits_1(deploy_root: DeployRoot) -> None:
    # Given current points to a build that refuses to start
    deploy_root.switch("bad")

    # When the service is started
    start = deploy_root.service("start")

    # Then it exits 1 with one line saying why, and leaves nothing running
    assert start.returncode == 1
    assert len(start.stderr.strip().splitlines()) == 1
    assert "start_fail" in start.stderr
    assert deploy_root.pid() is None
    assert apps_under(deploy_root.root) == []
    assert deploy_root.service("status").returncode == 3


def test_service_refuses_a_port_someone_else_holds(deploy_root: DeployRoot) -> None:
    # Given another process listening on the app's port
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", deploy_root.port))
        squatter.listen()

        # When the service is started
        start = deploy_root.service("start")

    # Then it fails instead of mistaking the squatter for the app
    assert start.returncode == 1
    assert "in use" in start.stderr
    assert deploy_root.pid() is None


def test_service_rejects_unknown_actions(deploy_root: DeployRoot) -> None:
    # When the script is called with an unknown action, then it prints usage and exits 2
    result = deploy_root.service("bounce")
    assert result.returncode == 2
    assert "usage" in result.stderr
