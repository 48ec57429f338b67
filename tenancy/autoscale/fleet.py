"""The replicas and the router in front of them.

A replica is a spawned process (replica.py) started with its sharing mode's environment, like a
`tenancy run` tenant, so replicas can be MPS clients of one GPU or time-sliced. The router sends
each request to a ready replica (join-shortest-queue by default, round-robin as an option);
while none is ready, requests wait at the router. Removing a replica drains it: it gets no new
requests, and is stopped only once everything it holds has finished, so no request is lost.
"""
from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from tenancy.autoscale.replica import ReplicaSpec, replica_main
from tenancy.core.env_vars import environ
from tenancy.core.signals import children_start_held


@dataclass
class Replica:
    id: int
    state: str = "starting"  # starting | ready | draining | stopped | failed
    in_flight: set = field(default_factory=set)
    served: int = 0
    kv_utilization: float = 0.0
    cold: dict = field(default_factory=dict)
    peak_rss_mb: float = float("nan")
    proc: object = None
    conn: object = None
    spawned_s: float = 0.0
    message: str = ""


class Router:
    """Picks the replica for a request among the ready ones."""

    def __init__(self, how: str = "jsq") -> None:
        self.how, self.next = how, 0

    def pick(self, replicas: list[Replica]) -> Optional[Replica]:
        ready = [r for r in replicas if r.state == "ready"]
        if not ready:
            return None
        if self.how == "round_robin":
            chosen = ready[self.next % len(ready)]
            self.next += 1
            return chosen
        return min(ready, key=lambda r: (len(r.in_flight), r.id))  # ties: the oldest replica


class Fleet:
    """Start, route to, drain and stop replicas; `poll` returns finished requests' rows."""

    def __init__(self, make_spec: Callable[[int], ReplicaSpec], router: str = "jsq",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.make_spec, self.router, self.clock = make_spec, Router(router), clock
        self.ctx = mp.get_context("spawn")
        self.replicas: list[Replica] = []
        self.backlog: deque = deque()  # requests waiting for a ready replica
        self.sent: dict[int, tuple] = {}  # request id -> request, while a replica holds it
        self.events: list[dict] = []  # scale events
        self.failures: list[str] = []

    # --- counts the policies see
    def count(self, *states: str) -> int:
        return sum(r.state in states for r in self.replicas)

    def ongoing(self) -> int:
        return len(self.backlog) + sum(len(r.in_flight) for r in self.replicas)

    def kv_utilization(self) -> float:
        ready = [r.kv_utilization for r in self.replicas if r.state == "ready"]
        return sum(ready) / len(ready) if ready else 0.0

    # --- scaling
    def add(self) -> Replica:
        rep = Replica(len(self.replicas), spawned_s=self.clock())
        spec = self.make_spec(rep.id)
        spec.spawn_ns = time.perf_counter_ns()
        reader, writer = self.ctx.Pipe()
        rep.proc = self.ctx.Process(target=replica_main, args=(spec, writer), name=f"tenancy:replica{rep.id}",
                                    daemon=True)
        with environ(spec.env), children_start_held():
            rep.proc.start()
        writer.close()
        rep.conn = reader
        self.replicas.append(rep)
        self.events.append({"t": rep.spawned_s, "replica": rep.id, "event": "start"})
        return rep

    def remove(self) -> Optional[Replica]:
        """Take one replica out: a starting one (nothing on it) first, else the ready one with the
        least in flight, which drains."""
        starting = [r for r in self.replicas if r.state == "starting"]
        ready = [r for r in self.replicas if r.state == "ready"]
        if starting:
            rep = starting[-1]
            rep.proc.terminate()
            rep.state = "stopped"
        elif len(ready) > 1 or (ready and not self.backlog and not ready[0].in_flight):
            rep = min(ready, key=lambda r: (len(r.in_flight), -r.id))
            rep.state = "draining"
        else:
            return None
        self.events.append({"t": self.clock(), "replica": rep.id, "event": "remove"})
        self._stop_if_drained(rep)
        return rep

    def scale_to(self, n: int) -> None:
        while self.count("starting", "ready") < n:
            self.add()
        while self.count("starting", "ready") > n and self.remove():
            pass

    # --- requests
    def submit(self, req: tuple) -> None:
        """req = (id, prompt, output_len, arrival_ns)."""
        self.backlog.append(req)
        self._dispatch()

    def _dispatch(self) -> None:
        while self.backlog:
            rep = self.router.pick(self.replicas)
            if rep is None:
                return
            req = self.backlog.popleft()
            rep.in_flight.add(req[0])
            self.sent[req[0]] = req
            rep.conn.send(("req", *req))

    def _stop_if_drained(self, rep: Replica) -> None:
        if rep.state == "draining" and not rep.in_flight:
            rep.conn.send(("stop",))
            rep.state = "stopping"

    def poll(self, timeout: float) -> list[dict]:
        """Handle what replicas sent within `timeout`; the rows of finished requests."""
        rows: list[dict] = []
        live = {r.conn: r for r in self.replicas if r.state in ("starting", "ready", "draining", "stopping")}
        for conn in mp.connection.wait(list(live), timeout) if live else []:
            rep = live[conn]
            while True:
                try:
                    if not conn.poll():
                        break
                    msg = conn.recv()
                except (EOFError, OSError):
                    self._lost(rep, f"replica {rep.id} exited (code {rep.proc.exitcode})")
                    break
                rows += self._handle(rep, msg)
        for rep in self.replicas:
            if rep.state in ("starting", "ready", "draining", "stopping") and not rep.proc.is_alive() \
                    and not rep.conn.poll():
                self._lost(rep, f"replica {rep.id} exited (code {rep.proc.exitcode})")
        self._dispatch()
        return rows

    def _handle(self, rep: Replica, msg: tuple) -> list[dict]:
        kind = msg[0]
        if kind == "ready":
            rep.state, rep.cold = "ready", {**msg[2], "ready_t": self.clock()}
            self.events.append({"t": self.clock(), "replica": rep.id, "event": "ready"})
        elif kind == "done":
            for row in msg[2]:
                rep.in_flight.discard(row["request_id"])
                self.sent.pop(row["request_id"], None)
                rep.served += 1
                row["replica"] = rep.id
            self._stop_if_drained(rep)
            return msg[2]
        elif kind == "stats":
            rep.kv_utilization = msg[2]
        elif kind == "stopped":
            rep.state, rep.peak_rss_mb = "stopped", msg[2]
            self.events.append({"t": self.clock(), "replica": rep.id, "event": "stopped"})
        elif kind == "failed":
            self._lost(rep, msg[2])
        return []

    def _lost(self, rep: Replica, why: str) -> None:
        """A replica died: its in-flight requests go back to the router (none is lost)."""
        if rep.state in ("stopped", "failed"):
            return
        rep.state, rep.message = "failed", why
        self.failures.append(why)
        for rid in sorted(rep.in_flight, reverse=True):
            self.backlog.appendleft(self.sent.pop(rid))
        rep.in_flight.clear()

    def close(self, timeout: float = 60.0) -> None:
        """Drain every replica and reap the processes."""
        for rep in self.replicas:
            if rep.state == "ready":
                rep.state = "draining"
                self._stop_if_drained(rep)
            elif rep.state == "starting":
                rep.proc.terminate()
                rep.state = "stopped"
        deadline = time.monotonic() + timeout
        while any(r.state in ("draining", "stopping") for r in self.replicas) and time.monotonic() < deadline:
            self.poll(0.05)
        for rep in self.replicas:
            if rep.proc is not None:
                rep.proc.join(max(0.0, deadline - time.monotonic()))
                if rep.proc.is_alive():
                    rep.proc.terminate()
                    rep.proc.join(5)
