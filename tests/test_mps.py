"""`sharing: mps` on a CPU, with a stand-in control program (tests/fake_mps_control.py) that
behaves like nvidia-cuda-mps-control: a detached daemon on a unix socket in the pipe directory,
a server process, client lists from the processes that use the pipe directory."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import machine, tiny, write_scenario

from tenancy.core.errors import TenancyError
from tenancy.gpu import mps_daemon, mps_processes
from tenancy.gpu.mps_daemon import MpsDaemon, private_pipe_dir
from tenancy.gpu.mps_processes import processes_of
from tenancy.harness.launch import Interrupted, Launch
from tenancy.harness.runner import Runner, resolve
from tenancy.harness.scenario import Mps, parse_scenario
from tenancy.harness.sharing.mps import ComputeMode, MpsAttachError, MpsMode

HERE = Path(__file__).parent
NAMES = ("nvidia-cuda-mps-control", "nvidia-cuda-mps-server")
QUICK = dict(device="cpu", iterations=5, warmup=1, repeats=1)


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A bin directory with the stand-in `nvidia-cuda-mps-control` and a fake `nvidia-smi`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    control = bin_dir / "nvidia-cuda-mps-control"
    control.write_text(f"#!{sys.executable}\n" + (HERE / "fake_mps_control.py").read_text())
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!{sys.executable}\n" + (HERE / "fake_nvidia_smi.py").read_text())
    for f in (control, smi):
        f.chmod(0o755)
    return bin_dir


@pytest.fixture
def fake_env(fake_bin: Path, tmp_path: Path, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TENANCY_MPS_ALLOW_CPU", "1")
    monkeypatch.setenv("FAKE_SMI_LOG", str(tmp_path / "smi.log"))
    return dict(os.environ)


def calls(log_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (log_dir / "calls.jsonl").read_text().splitlines()]


def run_cli(env: dict[str, str], *args, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tenancy", "run", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def mps_scenario(tmp_path: Path, **kw) -> Path:
    fields = dict(name="mps", sharing={"mode": "mps", "default_thread_percentage": 60}, **QUICK, tenants=[
        tiny("a", "bert-base", batch=1, seq=8, mps={"active_thread_percentage": 30, "pinned_mem_limit": "1G"}),
        tiny("b", "bert-base", batch=1, seq=8, mps={"active_thread_percentage": 70})])
    fields.update(kw)
    return write_scenario(tmp_path / "mps.yaml", **fields)


# --- checks and the daemon on its own -------------------------------------------------------

def test_check_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("TENANCY_MPS_ALLOW_CPU", raising=False)
    scenario = parse_scenario(dict(name="x", sharing="mps", tenants=[tiny("a", "bert-base")]))
    with pytest.raises(TenancyError, match="needs device cuda"):
        MpsMode(scenario.sharing, "cpu").check()
    with pytest.raises(TenancyError, match="no-such-mps-control on PATH"):
        MpsMode(scenario.sharing, "cuda", control="no-such-mps-control").check()
    exclusive = Mps(exclusive_process=True)
    with pytest.raises(TenancyError, match="sharing.exclusive_process needs no-such-smi on PATH"):
        MpsMode(exclusive, "cuda", control=sys.executable, nvidia_smi="no-such-smi").check()
    mode = MpsMode(exclusive, "cuda", control=sys.executable)
    assert (mode.exclusive_process, mode.default_thread_percentage) == (True, None)  # from the config, not check()


def test_pipe_dir_is_private_short_and_under_tmp(tmp_path):
    """Wherever the run directory is (deep, on a network file system), the sockets live in a fresh
    0700 directory under /tmp whose path fits a unix socket's 108 bytes."""
    a, b = private_pipe_dir(), private_pipe_dir()
    try:
        assert a != b and a.parent == b.parent == Path("/tmp")
        assert len(str(a / "control")) < 100 and (a.stat().st_mode & 0o777) == 0o700
    finally:
        a.rmdir()
        b.rmdir()


def test_daemon_start_query_stop(tmp_path, fake_env):
    deep = tmp_path / ("d" * 60) / ("e" * 60)  # too long for a socket path inside the run directory
    d = MpsDaemon(deep, control="nvidia-cuda-mps-control", default_thread_percentage=40)
    info = d.start()
    try:
        assert str(d.pipe_dir).startswith("/tmp/tenancy-mps-") and d.log_dir == deep.resolve() / "mps" / "log"
        assert (d.pipe_dir / "control").exists() and (d.pipe_dir / "nvidia-cuda-mps-control.pid").exists()
        live = processes_of(d.pipe_dir, NAMES)
        assert len(live) == 2 and info["daemon_pids"] == live  # the control daemon and its server
        assert d.servers() and set(d.servers()) < set(live)
        assert info["default_active_thread_percentage"] == 40.0  # as the daemon reports it
    finally:
        info = d.stop()
    assert info["stop"]["clean"] and info["stop"]["quit_exit"] == 0 and info["stop"]["killed"] == []
    assert processes_of(d.pipe_dir, NAMES) == [] and not d.pipe_dir.exists() and info["stop"]["pipe_dir_removed"]
    log = calls(d.log_dir)
    assert log[0]["argv"] == ["-d"]
    assert {"default_active_thread_percentage": 40} in [{k: v for k, v in c.items() if k != "pid"} for c in log]
    assert [c["stdin"] for c in log if "stdin" in c][-1] == "quit"
    assert all(c["pipe"] == str(d.pipe_dir) and c["log_dir"] == str(d.log_dir) for c in log if "argv" in c)
    assert d.stop() is info  # idempotent


def test_leftover_server_is_killed_and_reported(tmp_path, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_MPS_LEAK_SERVER", "1")
    monkeypatch.setattr(mps_daemon, "QUIT_TIMEOUT_S", 0.5)
    d = MpsDaemon(tmp_path)
    d.start()
    server = d.servers()
    stop = d.stop()["stop"]
    assert stop["killed"] == server and not stop["clean"] and "killed" in stop["note"]
    assert processes_of(d.pipe_dir, NAMES) == [] and stop["left_running"] == []


def test_a_server_without_our_environment_is_still_stopped(tmp_path, fake_env, monkeypatch):
    """A server that does not carry the daemon's environment is found through get_server_list."""
    monkeypatch.setenv("FAKE_MPS_LEAK_SERVER", "1")
    monkeypatch.setenv("FAKE_MPS_SERVER_OWN_ENV", "1")
    monkeypatch.setattr(mps_daemon, "QUIT_TIMEOUT_S", 0.5)
    d = MpsDaemon(tmp_path)
    d.start()
    server = d.servers()
    try:
        assert server and not set(server) & set(processes_of(d.pipe_dir, NAMES))
        stop = d.stop()["stop"]
        assert stop["killed"] == server and stop["left_running"] == []
        assert not mps_processes.alive(server[0])
    finally:
        for pid in server:
            if mps_processes.alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_daemon_starts_without_the_profilers_injection(tmp_path, fake_env, monkeypatch):
    """Under `--nsys` the run inherits nsys' preload and injection variables; our daemon must not."""
    libc = next(Path(p) for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6", "/usr/lib/libc.so.6")
                if Path(p).exists())
    injected = {"LD_PRELOAD": str(libc), "CUDA_INJECTION64_PATH": "/opt/nsys/libToolsInjection64.so",
                "NVTX_INJECTION64_PATH": "/opt/nsys/libToolsInjection64.so", "NSYS_PROFILING_SESSION_ID": "7"}
    for k, v in injected.items():
        monkeypatch.setenv(k, v)
    d = MpsDaemon(tmp_path)
    info = d.start()
    try:
        for pid in info["daemon_pids"]:
            env = dict(item.split("=", 1) for item in (Path(f"/proc/{pid}/environ").read_bytes().decode()
                                                       .split("\0")) if "=" in item)
            assert not set(injected) & set(env) and env["CUDA_MPS_PIPE_DIRECTORY"] == str(d.pipe_dir)
        assert set(injected) <= set(info["env_removed"])
    finally:
        d.stop()


def test_sessions_can_be_entered_several_times(tmp_path, fake_env):
    """One daemon per shared launch: separate pipe directories, each removed, one log directory."""
    mode = MpsMode(Mps(), "cpu")
    mode.check()
    seen = []
    for _ in range(2):
        with mode.session(tmp_path) as info:
            seen.append(Path(info["pipe_dir"]))
            assert processes_of(seen[-1], NAMES)
        assert info["stop"]["clean"] and not seen[-1].exists()
    assert seen[0] != seen[1] and len([c for c in calls(tmp_path / "mps" / "log") if c.get("argv") == ["-d"]]) == 2


def test_a_daemon_that_never_gets_ready_is_stopped(tmp_path, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_MPS_NEVER_READY", "1")
    monkeypatch.setattr(mps_daemon, "READY_TIMEOUT_S", 1.0)
    monkeypatch.setattr(mps_daemon, "QUIT_TIMEOUT_S", 0.5)
    made, real = [], mps_daemon.private_pipe_dir
    monkeypatch.setattr(mps_daemon, "private_pipe_dir", lambda: made.append(real()) or made[-1])
    mode = MpsMode(Mps(), "cpu")
    mode.check()
    with pytest.raises(TenancyError, match="not ready"):
        with mode.session(tmp_path):
            pass
    assert processes_of(made[0], NAMES) == [] and not made[0].exists()


def test_session_stops_the_daemon_when_the_runner_raises(tmp_path, fake_env):
    mode = MpsMode(Mps(), "cpu")
    mode.check()
    with pytest.raises(RuntimeError):
        with mode.session(tmp_path) as info:
            assert processes_of(Path(info["pipe_dir"]), NAMES)
            raise RuntimeError("boom")
    assert info["stop"]["clean"] and processes_of(Path(info["pipe_dir"]), NAMES) == []


def test_exclusive_process_is_opt_in_and_restored(tmp_path, fake_env):
    cm = ComputeMode("nvidia-smi", gpu="0")
    assert cm.set_exclusive()["previous"] == "default"
    assert cm.restore()["restored"]
    log = (tmp_path / "smi.log").read_text().splitlines()
    assert log == ["-i 0 --query-gpu=compute_mode --format=csv,noheader", "-i 0 -c EXCLUSIVE_PROCESS",
                   "-i 0 -c DEFAULT"]
    mode = MpsMode(Mps(), "cpu")
    mode.check()
    with mode.session(tmp_path / "r") as info:
        assert "compute_mode" not in info  # never touched by default
    assert len((tmp_path / "smi.log").read_text().splitlines()) == 3


# --- tenants under the stand-in daemon --------------------------------------------------------

@pytest.mark.slow
def test_tenants_attach_and_a_crash_still_stops_the_daemon(tmp_path, fake_env):
    """Real tenant processes get the MPS environment, pass the attachment check; one is killed."""
    scenario = resolve(parse_scenario(dict(name="crash", sharing="mps", device="cpu", iterations=100000, warmup=1,
                                           tenants=[tiny("victim", "bert-base", mps={"active_thread_percentage": 25}),
                                                    tiny("other", "bert-base", seq=8)])))
    runner = Runner(scenario, tmp_path)
    mode = runner.mode
    mode.check()

    def on_event(key, kind, value):
        if kind == "progress" and key.endswith("/victim/0") and value >= 3:
            os.kill(launch.outcomes[key].pid, signal.SIGKILL)

    with mode.session(tmp_path) as info:
        launch = Launch(runner.jobs("shared", 0, scenario.instances(), mode.env), on_event, mode.before_start)
        outcomes = mode.launch(launch)
    victim, other = outcomes["shared/0/victim/0"], outcomes["shared/0/other/0"]
    assert victim.status == "crashed" and other.status == "aborted" and other.cols["latency_ms"]
    attach = info["attach"][0]
    assert set(attach["tenants"].values()) <= set(attach["clients"][str(attach["servers"][0])])
    assert attach["missing"] == {}
    seen = [c["clients"] for c in calls(Path(info["log_dir"])) if "clients" in c][0]
    env = seen[str(victim.pid)]
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25" and env["CUDA_MPS_PIPE_DIRECTORY"] == info["pipe_dir"]
    assert "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" not in seen[str(other.pid)]
    assert info["stop"]["clean"] and processes_of(Path(info["pipe_dir"]), NAMES) == []


@pytest.mark.slow
def test_cli_run_under_mps(tmp_path, fake_env, fake_nvml, monkeypatch):
    """On a two-GPU node with CUDA_VISIBLE_DEVICES=1: the daemon, the clients and nvidia-smi all get
    GPU 1's UUID (an index kept by the clients would be invalid after the server's remapping); the
    tenants get their thread percentages and memory limits, the card its compute mode back."""
    config = machine(2)
    fake_nvml(config)
    uuid = config["gpus"][1]["uuid"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    path = mps_scenario(tmp_path, sharing={"mode": "mps", "default_thread_percentage": 60, "exclusive_process": True})
    proc = run_cli(dict(os.environ), path, "--out", tmp_path / "run")
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    sh = m["sharing"]["sessions"][0]
    assert m["status"] == "complete" and sh["mode"] == "mps" and sh["default_active_thread_percentage_requested"] == 60
    assert m["gpu"] == {"index": 1, "uuid": uuid, "name": "NVIDIA H100 80GB HBM3", "driver": config["driver"]}
    assert sh["visible_devices"] == uuid and sh["attach"][0]["missing"] == {}
    assert {t["env"]["CUDA_VISIBLE_DEVICES"] for t in m["tenants"]} == {uuid}
    assert {t["env"]["CUDA_DEVICE_ORDER"] for t in m["tenants"]} == {"PCI_BUS_ID"}
    smi = (tmp_path / "smi.log").read_text().splitlines()
    assert smi[0] == f"-i {uuid} --query-gpu=compute_mode --format=csv,noheader" and smi[-1] == f"-i {uuid} -c DEFAULT"
    assert sh["compute_mode"]["restored"]
    assert sh["pipe_dir"].startswith("/tmp/tenancy-mps-") and not Path(sh["pipe_dir"]).exists()
    assert sh["log_dir"] == str((tmp_path / "run").resolve() / "mps" / "log")
    assert sh["default_active_thread_percentage"] == 60.0
    assert sh["effective_active_thread_percentage"] == {"a": 30, "b": 60.0}  # min(default, client)
    shared = {t["tenant"]: t["pid"] for t in m["tenants"] if t["phase"] == "shared"}
    assert sorted(sh["attach"][0]["tenants"].values()) == sorted(shared.values())
    assert set(shared.values()) <= set(sh["attach"][0]["clients"][str(sh["attach"][0]["servers"][0])])
    assert sh["stop"]["clean"] and processes_of(Path(sh["pipe_dir"]), NAMES) == []
    seen = [c["clients"] for c in calls(Path(sh["log_dir"])) if "clients" in c][0]
    assert seen[str(shared["a"])]["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=1G"
    assert seen[str(shared["b"])]["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "70"
    samples = pd.read_parquet(tmp_path / "run" / "samples.parquet")
    assert set(samples.loc[samples["phase"] == "shared", "sharing"]) == {"mps"}


@pytest.mark.slow
def test_attachment_failure_is_an_error_and_keeps_what_was_measured(tmp_path, fake_env, monkeypatch):
    """A tenant missing from the client list fails the run (exit 1, one line), after the solo
    phase was written, and the daemon is still stopped."""
    monkeypatch.setenv("FAKE_MPS_DROP_CLIENT", "1")
    scenario = resolve(parse_scenario(dict(name="attach", **QUICK, sharing="mps", tenants=[
        tiny("a", "bert-base", batch=1, seq=8, copies=2)])))
    runner = Runner(scenario, tmp_path / "run")
    (tmp_path / "run").mkdir()
    with pytest.raises(MpsAttachError, match=r"a#\d \(pid \d+\) not a client of our MPS server") as err:
        runner.run()
    assert err.value.exit_code == 1
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m["status"] == "failed" and "not a client" in m["error"]
    assert len(m["sharing"]["sessions"][0]["attach"][0]["missing"]) == 1 and m["sharing"]["sessions"][0]["stop"]["clean"]
    assert {t["status"] for t in m["tenants"] if t["phase"] == "shared"} == {"aborted"}
    samples = pd.read_parquet(tmp_path / "run" / "samples.parquet")
    assert set(samples["phase"]) == {"solo"} and len(samples) == 5
    assert processes_of(Path(m["sharing"]["sessions"][0]["pipe_dir"]), NAMES) == []


@pytest.mark.slow
def test_ctrl_c_in_the_shared_phase_stops_the_daemon(tmp_path, fake_env):
    """A real SIGINT to this process while the tenants measure under MPS: Interrupted, and the
    daemon and its server are gone afterwards."""
    scenario = resolve(parse_scenario(dict(name="int", sharing="mps", device="cpu", iterations=100000, warmup=1,
                                           tenants=[tiny("a", "bert-base", batch=1, seq=8, copies=2)])))
    runner = Runner(scenario, tmp_path)
    mode = runner.mode
    mode.check()

    def on_event(key, kind, value):
        if kind == "progress" and value >= 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted):
        with mode.session(tmp_path) as info:
            launch = Launch(runner.jobs("shared", 0, scenario.instances(), mode.env), on_event, mode.before_start)
            mode.launch(launch)
    assert {o.status for o in launch.outcomes.values()} == {"interrupted"}
    assert all(len(o.cols["latency_ms"]) >= 1 for o in launch.outcomes.values())
    assert info["attach"][0]["missing"] == {} and info["stop"]["clean"]
    assert processes_of(Path(info["pipe_dir"]), NAMES) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_cli_signal_stops_the_daemon(tmp_path, fake_env, sig):
    """SIGTERM, and SIGHUP (a dropped ssh session), end the run cleanly: samples kept, daemon gone."""
    path = mps_scenario(tmp_path, iterations=5, min_duration_s=2.0,  # two copies: one solo launch
                        tenants=[tiny("a", "bert-base", batch=1, seq=8, copies=2)])
    out = tmp_path / "run"
    proc = run_cli(fake_env, path, "--out", out, start_new_session=True)
    deadline = time.monotonic() + 120
    log = out / "mps" / "log" / "calls.jsonl"
    while not (log.exists() and '"clients"' in log.read_text()):  # the shared tenants passed the check
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    if sig == signal.SIGHUP:
        os.killpg(proc.pid, sig)  # a dropped ssh session hangs up the whole process group
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "interrupted" and m["sharing"]["sessions"][0]["stop"]["clean"]
    assert processes_of(Path(m["sharing"]["sessions"][0]["pipe_dir"]), NAMES) == []
    assert {t["status"] for t in m["tenants"] if t["phase"] == "shared"} == {"interrupted"}


def test_fake_control_rejects_an_index_that_is_invalid_after_remapping(tmp_path, fake_env, fake_nvml, monkeypatch):
    """The stand-in behaves like the MPS server: the daemon saw GPU 1 only, so it is device 0 to its
    clients; a client that keeps index 1 cannot create a context and is never listed."""
    config = machine(2)
    fake_nvml(config)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    d = MpsDaemon(tmp_path)
    d.start()
    clients = []
    try:
        for visible in ("1", "0", config["gpus"][1]["uuid"], config["gpus"][0]["uuid"]):
            clients.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                            env={**os.environ, **d.env, "CUDA_VISIBLE_DEVICES": visible}))
        time.sleep(0.5)
        listed = set(d.clients(d.servers()[0]))
    finally:
        for c in clients:
            c.kill()
            c.wait()
        d.stop()
    assert listed == {clients[1].pid, clients[2].pid}
    rejected = [c["rejected"] for c in calls(d.log_dir) if "rejected" in c][0]
    assert set(rejected) == {str(clients[0].pid), str(clients[3].pid)}


@pytest.mark.slow
def test_tenants_outside_our_session_never_join_a_running_daemon(tmp_path, fake_env, monkeypatch):
    """A daemon that is not ours is running, and the shell exported its pipe directory: solo and
    time-sliced tenants get an empty private pipe directory instead (and no inherited CUDA_MPS_*),
    so the driver finds no daemon; the manifest records the daemon and warns."""
    other_pipe, other_log = tmp_path / "sys-pipe", tmp_path / "sys-log"
    other_pipe.mkdir()
    other = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(other_pipe), "CUDA_MPS_LOG_DIRECTORY": str(other_log)}
    subprocess.run(["nvidia-cuda-mps-control", "-d"], env=other, check=True)
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(other_pipe))
    monkeypatch.setenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "10")
    deadline = time.monotonic() + 15
    while not (other_pipe / "control").exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    def ask(*commands):
        return [subprocess.run(["nvidia-cuda-mps-control"], input=c + "\n", env=other, capture_output=True,
                               text=True, timeout=15).stdout for c in commands]

    server = ask("get_server_list")[0].strip()
    try:
        scenario = resolve(parse_scenario(dict(name="iso", sharing="timeslice", **QUICK, min_duration_s=1.0, tenants=[
            tiny("a", "bert-base", batch=1, seq=8, copies=2)])))
        asked: set[str] = set()

        def on_event(key, kind, value):
            if kind == "progress" and key not in asked:
                asked.add(key)
                ask(f"get_client_list {server}")

        (tmp_path / "run").mkdir()
        runner = Runner(scenario, tmp_path / "run", on_event=on_event)
        assert runner.run() == 0
    finally:
        ask("quit")
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    lists = [c for c in calls(other_log) if "clients" in c]
    assert lists and all(c["clients"] == {} and c["rejected"] == {} for c in lists)  # asked during solo and shared
    envs = [t["env"] for t in m["tenants"]]
    assert len({e["CUDA_MPS_PIPE_DIRECTORY"] for e in envs}) == 1
    assert envs[0]["CUDA_MPS_PIPE_DIRECTORY"].startswith("/tmp/tenancy-nomps-")
    assert not Path(envs[0]["CUDA_MPS_PIPE_DIRECTORY"]).exists()  # removed at the end
    assert all(e["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] is None for e in envs)
    assert any(d["pipe_dir"] == str(other_pipe) for d in m["environment"]["mps_daemons"])
    assert any("MPS processes not started by this run" in w for w in m["warnings"])


@pytest.mark.gpu
def test_mps_run_on_a_gpu(tmp_path):
    """The real daemon: start, both tenants attached as clients, stop, nothing left behind."""
    import shutil

    if shutil.which("nvidia-cuda-mps-control") is None:
        pytest.skip("nvidia-cuda-mps-control not on PATH")
    path = write_scenario(tmp_path / "mps.yaml", name="mps-gpu", sharing="mps", device="cuda", iterations=20,
                          warmup=2, tenants=[tiny("a", "bert-base", mps={"active_thread_percentage": 50}),
                                             tiny("b", "distilgpt2", task="generate", new_tokens=4)])
    proc = run_cli(dict(os.environ), path, "--out", tmp_path / "run")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    sh = json.loads((tmp_path / "run" / "manifest.json").read_text())["sharing"]["sessions"][0]
    assert sh["attach"][0]["missing"] == {} and sh["attach"][0]["servers"]
    assert sh["stop"]["clean"] and processes_of(Path(sh["pipe_dir"]), NAMES) == []
