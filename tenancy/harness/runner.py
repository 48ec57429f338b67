"""A run: repeats of the solo phase (each distinct tenant alone) and the shared phase under the
sharing mode, back to back in a drawn order, written to the run directory after every launch."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from tenancy.analysis import slowdown, window
from tenancy.core import results
from tenancy.core.env_vars import environ
from tenancy.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from tenancy.core.signals import shielded
from tenancy.gpu import devices, environment, peaks
from tenancy.gpu.hostload import WARN_CORES, HostLoad
from tenancy.gpu.monitor import Monitor
from tenancy.harness import preflight, sharing
from tenancy.harness.launch import Interrupted, Launch, Outcome
from tenancy.harness.scenario import Scenario, work_key
from tenancy.harness.tenant import COLUMNS, Job

Event = Callable[[str, str, object], None]
PHASES = {"solo-first": ("solo", "shared"), "shared-first": ("shared", "solo"), "solo-only": ("solo",)}


def resolve(scenario: Scenario, device: str | None = None, iterations: int | None = None,
            warmup: int | None = None) -> Scenario:
    """Fill in what depends on the machine: the device and each tenant's dtype."""
    return resolve_on(environment.resolve_device(device or scenario.device), scenario, iterations, warmup)


def resolve_on(device: str, scenario: Scenario, iterations: int | None = None,
               warmup: int | None = None) -> Scenario:
    """`resolve` for a given concrete device, present here or not (planning a GPU study on a CPU)."""
    data = scenario.model_dump()
    data["device"] = device
    data["iterations"] = iterations or scenario.iterations
    data["warmup"] = scenario.warmup if warmup is None else warmup
    for t in data["tenants"]:
        t["dtype"] = t["dtype"] or ("float16" if data["device"] == "cuda" else "float32")
    return Scenario.model_validate(data)


def default_threads(scenario: Scenario) -> int:
    """Torch CPU threads per tenant: the cores split over the shared phase's processes, used in
    both phases so that solo and shared numbers differ only by the co-location."""
    return max(1, environment.cpu_count() // len(scenario.instances()))


class Runner:
    def __init__(self, scenario: Scenario, run_dir: Path, source: str | None = None,
                 on_event: Event | None = None) -> None:
        self.scenario = scenario  # resolved
        self.run_dir = run_dir
        self.mode = sharing.get(scenario.sharing, scenario.device)
        self.on_event = on_event or (lambda key, kind, value: None)
        self.frames: list[pd.DataFrame] = []
        self.statuses: list[dict[str, Any]] = []
        self.overlaps: dict[str, float] = {}
        self.requests: list[pd.DataFrame] = []  # serving tenants: one row per request
        self.launched: list[tuple[str, int, str, int]] = []  # (phase, repeat, tenant, copy)
        self.host = HostLoad()
        self.monitor = Monitor(scenario.monitor_interval_ms, scenario.device)
        env = environment.collect()
        card = devices.current(env["gpus"])[0]
        self.process_env = devices.process_env(card)  # every process we start names the GPU by UUID
        self.manifest: dict[str, Any] = {
            "schema_version": results.SCHEMA_VERSION,
            "kind": "run",  # `tenancy serve` directories say "serving"
            "created": results.utc_now(),
            "status": "running",
            "scenario_file": source,
            "scenario": scenario.model_dump(),
            "threads_per_tenant": default_threads(scenario),
            "environment": env,
            "gpu": {k: card.get(k) for k in ("index", "uuid", "name", "driver")} if card else None,
            "process_env": self.process_env,
            "orders": phase_orders(scenario.repeats, scenario.seed, scenario.mode),
            "sharing": {"mode": scenario.mode, "sessions": []},
            "host_load": [],
            "window_closed_early": [],
            "incomplete": [],
            "monitor": self.monitor.info,
            "tenants": self.statuses,
            "warnings": preflight.mps_warnings(env["mps_daemons"]),
        }

    def jobs(self, phase: str, repeat: int, instances, env: Callable[[Any], sharing.Env]) -> list[Job]:
        s = self.scenario
        return [Job(tenant=t.model_dump(), copy=c, phase=phase, repeat=repeat, device=s.device,
                    iterations=s.iterations, warmup=s.warmup, min_duration_s=s.min_duration_s,
                    threads=t.threads or self.manifest["threads_per_tenant"], seed=s.seed, env=env(t),
                    out_dir=str(self.run_dir))
                for t, c in instances]

    def run(self) -> int:
        self.mode.check()
        self._write()
        code = EXIT_OK
        try:
            with environ(self.process_env), self.mode.isolated():
                # the roofline's peaks, once per dtype, on the run's GPU before any tenant loads it
                self.manifest["peaks"] = peaks.measure_all(self.scenario.device, [t.dtype for t in self.scenario.tenants],
                                                           self.mode.solo_env(self.scenario.tenants[0]))
                self.monitor.start()
                code = self._repeats()
        except (Interrupted, KeyboardInterrupt):
            self.manifest["status"] = "interrupted"
            code = EXIT_INTERRUPTED
        except Exception as err:  # e.g. the MPS daemon failed: the manifest must not say complete
            self.manifest["status"] = "failed"
            self.manifest["error"] = " ".join(str(err).split())[:300] or type(err).__name__
            raise
        finally:
            self.monitor.stop()
            if self.manifest["status"] == "running":
                self.manifest["status"] = ("failed" if code else "incomplete" if self.manifest["incomplete"]
                                           else "complete")
            if code == EXIT_OK and self.manifest["status"] == "incomplete":
                code = EXIT_FAILED
            self.manifest["finished"] = results.utc_now()
            with shielded():
                self._write()
        return code

    def failure(self) -> str:
        """One line on why the run failed: the first tenant that failed, else why it is incomplete,
        else the first warning."""
        bad = [t for t in self.statuses if t["status"] not in ("ok", "aborted")]
        if bad:
            return f"{bad[0]['tenant']}#{bad[0]['copy']} {bad[0]['status']}: {bad[0]['message']}"
        if self.manifest["incomplete"]:
            return "incomplete: " + self.manifest["incomplete"][0]
        return (self.manifest.get("warnings") or ["see manifest.json"])[0]

    def _repeats(self) -> int:
        """Each repeat runs every distinct tenant alone and the shared phase back to back, in an
        order drawn from the seed (balanced over the repeats), so that a drift of the machine's
        state over the run does not fall on one phase only."""
        for repeat, order in enumerate(self.manifest["orders"]):
            for phase in PHASES[order]:
                if not (self._solo(repeat) if phase == "solo" else self._shared(repeat)):
                    return EXIT_FAILED
        return EXIT_OK

    def _solo(self, repeat: int) -> bool:
        for t in self.scenario.distinct():
            self._launch(Launch(self.jobs("solo", repeat, [(t, 0)], self.mode.solo_env), self.on_event),
                         self.mode.launch_solo)
            if not self._launch_ok():
                return False
        return True

    def _shared(self, repeat: int) -> bool:
        s = self.scenario
        with self.mode.session(self.run_dir) as info:
            info["repeat"] = repeat
            self.manifest["sharing"]["sessions"].append(info)  # the mode keeps adding to it (attach, stop)
            self._write()
            launch = Launch(self.jobs("shared", repeat, s.instances(), self.mode.env), self.on_event,
                            self.mode.before_start)
            self._launch(launch, self.mode.launch)
        return self._launch_ok()

    def _launch_ok(self) -> bool:
        failed = [r for r in self.statuses if r["status"] != "ok"]
        if failed:
            f = failed[0]
            self.manifest["warnings"].append(f"run stopped after {f['phase']} {f['tenant']}#{f['copy']} "
                                             f"(repeat {f['repeat']}) ended {f['status']}")
        return not failed

    def _launch(self, launch: Launch, how: Callable[[Launch], dict[str, Outcome]]) -> None:
        first = launch.jobs[0]
        name = first.tenant["name"] if first.phase == "solo" else "shared"
        before = self.host.read()
        try:
            with self.monitor.during(first.phase, first.repeat, name):
                how(launch)
        finally:  # keep whatever was measured, also when interrupted (and again)
            with shielded():
                load = HostLoad.foreign(before, self.host.read())
                if load is not None:
                    self.manifest["host_load"].append({"phase": first.phase, "repeat": first.repeat, "launch": name,
                                                       **load})
                self._collect(launch)
                self._write()

    def _collect(self, launch: Launch) -> None:
        frames = []
        for o in launch.outcomes.values():
            t, j = o.job.tenant, o.job
            cols = dict(o.cols or {c: [] for c in COLUMNS})
            requests = cols.pop("requests", None)
            df = pd.DataFrame(cols).astype({"extra": bool, "iteration": "int64", "start_ns": "int64",
                                            "end_ns": "int64"})
            df.insert(0, "phase", j.phase)
            df.insert(1, "repeat", j.repeat)
            df.insert(2, "tenant", t["name"])
            df.insert(3, "copy", j.copy)
            for k in ("model", "task", "batch", "seq", "new_tokens", "dtype", "size"):
                df[k] = t[k]
            df["config"] = work_key(t)
            df["sharing"] = self.scenario.mode if j.phase == "shared" else "exclusive"
            df["device"] = j.device
            frames.append(df)
            if requests:
                req = pd.DataFrame(requests)
                for i, (k, v) in enumerate([("phase", j.phase), ("repeat", j.repeat), ("tenant", t["name"]),
                                            ("copy", j.copy)]):
                    req.insert(i, k, v)
                self.requests.append(req)
            self.statuses.append({"phase": j.phase, "repeat": j.repeat, "tenant": t["name"], "copy": j.copy,
                                  "status": o.status, "message": o.message, "pid": o.pid,
                                  "exitcode": o.exitcode, "threads": j.threads, "samples": len(df),
                                  "env": sharing.recorded_env(j.env)})
        launch_df = window.mark_window(pd.concat(frames, ignore_index=True), launch.stopped_ns)
        if launch.stopped_ns is not None:
            self.manifest["window_closed_early"].append(
                {"phase": launch.jobs[0].phase, "repeat": launch.jobs[0].repeat, "at_ns": launch.stopped_ns})
        for (tenant, copy), frac in window.overlap(launch_df).items():
            for r in self.statuses[-len(frames):]:
                if (r["tenant"], r["copy"]) == (tenant, copy):
                    r["overlap"] = frac
                    if r["phase"] == "shared":
                        self.overlaps[f"shared {tenant}#{copy} (repeat {r['repeat']})"] = frac
        self.launched += [(j.phase, j.repeat, j.tenant["name"], j.copy) for j in launch.jobs]
        self.frames.append(launch_df)

    def _write(self) -> None:
        d = self.run_dir
        samples = pd.concat(self.frames, ignore_index=True) if self.frames else pd.DataFrame()
        orders = dict(enumerate(self.manifest["orders"]))
        summary, metrics = slowdown.analyze(samples, orders, self.scenario.seed, self.manifest.get("peaks"))
        ok = {(r["phase"], r["repeat"], r["tenant"], r["copy"]) for r in self.statuses if r["status"] == "ok"}
        self.manifest["incomplete"] = window.incomplete(samples, [k for k in self.launched if k in ok])
        warnings = self.manifest["warnings"] + slowdown.warnings_for(summary, metrics, self.overlaps)
        warnings += [f"{x['phase']} launch {x['launch']} (repeat {x['repeat']}): other processes used "
                     f"{x['foreign_cores']:.2f} cores on average: the numbers include their interference"
                     for x in self.manifest["host_load"] if x["foreign_cores"] > WARN_CORES]
        warnings += [f"incomplete: {why}" for why in self.manifest["incomplete"]]
        gpu, gpu_summary, gpu_warnings = self.monitor.table(samples, self.manifest)
        if not gpu.empty:
            results.write_table(d / results.GPU, gpu)
        warnings += gpu_warnings
        metrics = {**metrics, "gpu": gpu_summary, "warnings": warnings}
        results.write_json(d / results.METRICS, metrics)
        if self.frames:  # with their columns, also when no launch measured anything
            results.write_table(d / results.SAMPLES, samples)
            results.write_table(d / results.SUMMARY, summary)
        if self.requests:
            results.write_table(d / results.REQUESTS, pd.concat(self.requests, ignore_index=True))
        results.write_json(d / results.MANIFEST, {**self.manifest, "warnings": warnings})
        self.summary, self.metrics = summary, metrics


def phase_orders(repeats: int, seed: int, sharing: str) -> list[str]:
    """Which phase each repeat runs first: as many of each as the repeats allow, shuffled by the
    seed (a solo-only run has one order)."""
    if sharing == "exclusive":
        return ["solo-only"] * repeats
    balanced = (["solo-first", "shared-first"] * repeats)[:repeats]
    random.Random(seed).shuffle(balanced)
    return balanced
