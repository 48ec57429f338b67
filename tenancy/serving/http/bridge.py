"""The engine in one background thread, fed by the event loop: iteration-level batching across
HTTP requests. Requests (and aborts) queue in an inbox that the thread drains before every
iteration, so a request that arrives while an iteration runs joins the next one; after each
iteration every request's newly committed tokens go back to its asyncio queue."""
from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from dataclasses import dataclass

from tenancy.serving.engine import LLMEngine
from tenancy.serving.sequence import SamplingParams, Sequence


@dataclass
class Stats:
    """What /metrics shows; replaced whole after every iteration (read from the event loop)."""

    running: int = 0
    waiting: int = 0
    kv_usage: float = 0.0
    iterations: int = 0
    generation_tokens: int = 0
    finished: int = 0


@dataclass(eq=False)
class Stream:
    seq: Sequence
    out: asyncio.Queue  # lists of new token ids; then None when the request ended
    sent: int = 0


class EngineThread:
    def __init__(self, engine: LLMEngine, loop: asyncio.AbstractEventLoop) -> None:
        self.engine, self.loop = engine, loop
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.streams: dict[int, Stream] = {}
        self.stats = Stats()
        self.ids = itertools.count()
        self.stopping = False
        self.error: str | None = None  # set once the engine thread has died
        self.generation_tokens = self.finished = 0
        self.thread = threading.Thread(target=self._run, name="tenancy-engine", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping = True
        self.inbox.put(None)
        self.thread.join(timeout=30)

    def submit(self, prompt: list[int], params: SamplingParams) -> Stream:
        if self.error is not None:
            raise RuntimeError(self.error)
        seq = Sequence(next(self.ids), prompt, params, time.perf_counter_ns(), self.engine.eos_ids)
        stream = Stream(seq, asyncio.Queue())
        self.inbox.put(("add", stream))
        return stream

    def abort(self, stream: Stream) -> None:
        self.inbox.put(("abort", stream))

    def _drain(self, block: bool) -> None:
        try:
            item = self.inbox.get(timeout=0.5) if block else self.inbox.get_nowait()
            while True:
                if item is not None:
                    kind, stream = item
                    if kind == "add":
                        self.streams[stream.seq.id] = stream
                        if not self.engine.add(stream.seq, time.perf_counter_ns()):
                            self._publish(stream)
                    elif not stream.seq.done:
                        self.engine.scheduler.abort(stream.seq, time.perf_counter_ns())
                        self._publish(stream)
                item = self.inbox.get_nowait()
        except queue.Empty:
            pass

    def _publish(self, stream: Stream) -> None:
        """Send the tokens committed since the last call (token_ns counts them under async
        scheduling too); None once the request has ended."""
        seq = stream.seq
        n = len(seq.token_ns)
        if n > stream.sent:
            self.loop.call_soon_threadsafe(stream.out.put_nowait, seq.output_ids[stream.sent:n])
            self.generation_tokens += n - stream.sent
            stream.sent = n
        if seq.done:
            self.finished += 1
            self.loop.call_soon_threadsafe(stream.out.put_nowait, None)
            del self.streams[seq.id]

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # the engine died (e.g. out of memory): fail every request, say why
            self.error = f"the engine failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
            self._drain(block=False)  # requests already queued end too
            self._end_all(self.error)

    def _loop(self) -> None:
        engine = self.engine
        while not self.stopping:
            self._drain(block=not engine.has_work())
            if self.stopping or not engine.has_work():
                continue
            engine.step()
            self._update_stats()  # before the tokens go out: a client that saw a token sees its batch
            for stream in list(self.streams.values()):
                self._publish(stream)
            self._update_stats(count=False)  # and the tokens/requests just sent
        self._end_all("server shutting down")

    def _end_all(self, reason: str) -> None:
        now = time.perf_counter_ns()
        for stream in list(self.streams.values()):
            if not stream.seq.done:
                stream.seq.fail(reason, now)
            self._publish(stream)

    def _update_stats(self, count: bool = True) -> None:
        sched, bm = self.engine.scheduler, self.engine.block_manager
        self.stats = Stats(len(sched.running), len(sched.waiting), 1 - bm.num_free / bm.num_blocks,
                           self.stats.iterations + count, self.generation_tokens, self.finished)
