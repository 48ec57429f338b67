"""One replica: a spawned process that builds a serving engine and serves what the router sends.

Messages in: ("req", id, prompt, output_len, arrival_ns) and ("stop",) (sent once the replica
has drained: the router stopped sending and nothing is in flight). Out: ("ready", id, cold)
with the cold start split (spawn, load, warm-up seconds, peak RSS / GPU memory), ("done", id,
rows), ("stats", id, kv_utilization, running) and ("stopped", id, peak_rss_mb).
Clocks are time.perf_counter_ns (CLOCK_MONOTONIC: the same in every process of the machine).
No torch import at module level: the environment (MPS variables) is applied first.
"""
from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field

from tenancy.core.exit import exits_quickly
from tenancy.core.signals import PARENT_GONE, ignore_group_signals

STATS_EVERY_NS = 100_000_000


@dataclass
class ReplicaSpec:
    """Plain data, crosses the process boundary."""

    id: int
    kind: str  # engine | sleep
    serving: dict  # ServingConfig as a dict (engine)
    device: str
    threads: int
    spawn_ns: int
    env: dict = field(default_factory=dict)
    service_s: float = 0.2  # sleep
    slots: int = 4  # sleep


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class SleepEngine:
    """A replica without a model: `slots` requests at a time, each `service_s` long (first token
    at the end). For tests of the fleet and for the simulator's hand-checked cases."""

    def __init__(self, service_s: float, slots: int) -> None:
        self.service_ns, self.slots = int(service_s * 1e9), slots
        self.waiting: deque = deque()
        self.running: list = []

    def add(self, req: tuple) -> None:
        self.waiting.append(req)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def kv_utilization(self) -> float:
        return len(self.running) / self.slots

    def step(self) -> list[dict]:
        now = time.perf_counter_ns()
        while self.waiting and len(self.running) < self.slots:
            self.running.append((now, self.waiting.popleft()))
        done = [(s, r) for s, r in self.running if now - s >= self.service_ns]
        self.running = [x for x in self.running if x not in done]
        if not done and self.running:
            time.sleep(max(0.0, (min(s for s, _ in self.running) + self.service_ns - now) / 1e9))
        return [dict(request_id=r[0], status="finished", error=None, input_len=len(r[1]), output_len=r[2],
                     arrival_ns=r[3], first_token_ns=now, finish_ns=now) for s, r in done]


class EngineAdapter:
    """Our iteration-level engine behind the replica loop's small interface."""

    def __init__(self, spec: ReplicaSpec) -> None:
        from tenancy.models import zoo
        from tenancy.serving.api import llm_engine
        from tenancy.serving.config import ServingConfig

        cfg = ServingConfig.model_validate(spec.serving)
        hf = zoo.build(cfg.model, cfg.size, cfg.dtype_on(spec.device), spec.device, cfg.weights, cfg.seed)
        self.loaded_ns = time.perf_counter_ns()  # model load ends here; the engine's warm-up follows
        self.engine = llm_engine(cfg, hf)
        self.seqs: dict[int, object] = {}

    def add(self, req: tuple) -> None:
        from tenancy.serving.workload import RequestSpec

        rid, prompt, out_len, arrival_ns = req
        seq = self.engine.make_sequence(RequestSpec(rid, None, prompt, out_len), arrival_ns)
        self.seqs[rid] = seq
        self.engine.add(seq, time.perf_counter_ns())  # a rejected one is ended at once

    def has_work(self) -> bool:
        return self.engine.has_work() or any(s.done for s in self.seqs.values())

    def kv_utilization(self) -> float:
        bm = self.engine.block_manager
        return 1.0 - bm.num_free / bm.num_blocks

    def step(self) -> list[dict]:
        if self.engine.has_work():
            self.engine.step()
        out = [s for s in self.seqs.values() if s.done]
        for s in out:
            del self.seqs[s.id]
        return [dict(request_id=s.id, status=s.status.value, error=s.error, input_len=s.prompt_len,
                     output_len=s.num_output, arrival_ns=s.arrival_ns,
                     first_token_ns=s.token_ns[0] if s.token_ns else None, finish_ns=s.finish_ns) for s in out]


@exits_quickly
def replica_main(spec: ReplicaSpec, conn) -> None:
    """Entry point of a spawned replica: build, report ready, serve until told to stop."""
    from tenancy.core.env_vars import apply_env

    ignore_group_signals()  # the parent stops us
    apply_env(spec.env)
    try:
        _serve_replica(spec, conn)
    except PARENT_GONE:
        pass  # the parent is gone (stopped or interrupted while we started): nobody to report to


def _serve_replica(spec: ReplicaSpec, conn) -> None:
    started = time.perf_counter_ns()
    try:
        if spec.kind == "sleep":
            engine, loaded, gpu_mb = SleepEngine(spec.service_s, spec.slots), time.perf_counter_ns(), float("nan")
        else:
            import torch

            torch.set_num_threads(spec.threads)
            engine = EngineAdapter(spec)
            loaded = engine.loaded_ns
            gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if spec.device.startswith("cuda") else float("nan")
    except BaseException as err:  # noqa: BLE001 - reported, the launcher decides
        conn.send(("failed", spec.id, f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"))
        return
    ready = time.perf_counter_ns()
    conn.send(("ready", spec.id, {"spawn_s": (started - spec.spawn_ns) / 1e9, "load_s": (loaded - started) / 1e9,
                                  "warmup_s": (ready - loaded) / 1e9, "cold_start_s": (ready - spec.spawn_ns) / 1e9,
                                  "load_peak_rss_mb": peak_rss_mb(), "load_peak_gpu_mb": gpu_mb, "pid": os.getpid()}))
    serve_loop(engine, spec.id, conn)
    conn.send(("stopped", spec.id, peak_rss_mb()))


def serve_loop(engine, rid: int, conn) -> None:
    stopping, last_stats = False, 0
    while True:
        timeout = 0 if engine.has_work() else 0.02
        while conn.poll(timeout):
            msg = conn.recv()
            timeout = 0
            if msg[0] == "req":
                engine.add(msg[1:])
            elif msg[0] == "stop":
                stopping = True
        if engine.has_work():
            rows = engine.step()
            if rows:
                conn.send(("done", rid, rows))
        now = time.perf_counter_ns()
        if now - last_stats > STATS_EVERY_NS:
            conn.send(("stats", rid, engine.kv_utilization()))
            last_stats = now
        if stopping and not engine.has_work():
            return
