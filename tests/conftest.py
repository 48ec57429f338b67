"""Shared pytest hooks: `@pytest.mark.gpu` tests run only where an NVIDIA GPU is usable; the
stand-in NVML (tests/fake_pynvml) as a fixture."""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
FAKE_PYNVML = HERE / "fake_pynvml"


@functools.lru_cache(maxsize=1)
def gpu_usable() -> bool:
    """An NVIDIA GPU seen by NVML and a CUDA build of torch (no CUDA context is created here)."""
    from tenancy.gpu import environment

    try:
        return bool(environment.nvml_gpus()) and environment.torch_has_cuda()
    except Exception:
        return False


# Fixtures that run a whole command once for many tests. Under pytest-xdist (`--dist loadgroup`)
# the tests that use one go to one worker, so that the command runs once, not once per worker.
SHARED_RUNS = ("cpu_streams_run", "pair_run", "study", "pair", "synthetic_report", "shipped_report", "runs", "names")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks (it names each group in the node id)
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        shared = [name for name in SHARED_RUNS if name in item.fixturenames]
        if shared:  # cpu_streams_run serves three modules; the others serve their own
            where = "" if shared[0] == "cpu_streams_run" else f"{item.module.__name__}:"
            item.add_marker(pytest.mark.xdist_group(where + shared[0]))
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items or gpu_usable():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (none usable here)")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def cpu_streams_run(tmp_path_factory):
    """One `tenancy run --nsys` of a CPU streams pair, with the stand-in nsys (tests/fake_nsys.py)
    and the stand-in NVML reader (tests/fake_nvml.py): shared by test_streams, test_monitor and
    test_nsys, because every end-to-end run costs seconds of process start-up."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from helpers import tiny, write_scenario

    here = Path(__file__).parent
    tmp = tmp_path_factory.mktemp("streams")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    nsys = bin_dir / "nsys"
    nsys.write_text(f"#!{sys.executable}\n" + (here / "fake_nsys.py").read_text())
    nsys.chmod(0o755)
    path = write_scenario(tmp / "streams.yaml", name="streams", sharing="streams", device="cpu", iterations=6, repeats=1,
                          warmup=1, monitor_interval_ms=20, tenants=[
                              tiny("enc", "bert-base", batch=2, seq=8),
                              tiny("dec", "distilgpt2", task="generate", batch=1, seq=8, new_tokens=4)])
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_NSYS_LOG": str(tmp / "nsys.log"),
           "TENANCY_MONITOR_READER": "fake_nvml:FakeReader",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(here), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "tenancy", "run", str(path), "--nsys", "--out", str(tmp / "run")],
                          env=env, capture_output=True, text=True, timeout=300)
    return {"proc": proc, "run": tmp / "run", "nsys_log": tmp / "nsys.log"}


@pytest.fixture
def fake_nvml(tmp_path, monkeypatch):
    """Install the stand-in pynvml for this process and every process it starts: call the fixture's
    value with the machine (helpers.machine(...)); it returns the config file's path."""
    def install(config: dict) -> Path:
        path = tmp_path / "fake-nvml.json"
        path.write_text(json.dumps(config))
        monkeypatch.setenv("FAKE_NVML_CONFIG", str(path))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FAKE_PYNVML), str(HERE),
                                                                       os.environ.get("PYTHONPATH")])))
        spec = importlib.util.spec_from_file_location("pynvml", FAKE_PYNVML / "pynvml.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        monkeypatch.setitem(sys.modules, "pynvml", module)
        return path
    return install
