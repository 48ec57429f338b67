"""Per-request records and the benchmark summary (vllm `bench serve` definitions).

requests.parquet has one row per request: ids and lengths, status/error, timestamps in seconds
since the benchmark clock started (arrival_s, admitted_s, first_token_s, finish_s), derived
latencies in ms (queue_ms = admission - arrival, ttft_ms, tpot_ms, e2e_ms) and
`token_times_s`, a list column with the time of every output token (ITL = its diffs), and with
`save_tokens` `output_token_ids`, the request's output token ids.

Definitions: TTFT = first token - arrival; E2E = finish - arrival (finish is when the response
is returned: the last token for the iteration-level engine, the end of the whole batch for the
request-level baseline); TPOT = (E2E - TTFT) / (output_len - 1), for output_len > 1; ITL = gaps
between consecutive tokens of a request, pooled over requests; goodput = completed requests per
second that meet every SLO given. Throughputs divide by the benchmark duration: clock start to
the last request's end.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional, Union

import numpy as np
import pandas as pd

from tenancy.serving.config import SLOs
from tenancy.serving.sequence import Sequence, Status

PERCENTILES = (50, 90, 99)


def latencies(arrival_s: float, first_s: float, finish_s: float, output_len: int) -> dict[str, float]:
    """ttft_ms, tpot_ms, e2e_ms of one request from its times (seconds on one clock); also what
    an endpoint tenant (tenancy/endpoint) computes, from the request's scheduled arrival."""
    ttft, e2e = (first_s - arrival_s) * 1e3, (finish_s - arrival_s) * 1e3
    return {"ttft_ms": ttft, "tpot_ms": (e2e - ttft) / (output_len - 1) if output_len > 1 else math.nan,
            "e2e_ms": e2e}


def to_frame(seqs: Iterable[Sequence], t0_ns: int, engine: str, tokens: bool = False) -> pd.DataFrame:
    def s(ns: Optional[int]) -> float:
        return math.nan if ns is None else (ns - t0_ns) / 1e9

    rows = []
    for q in seqs:
        times = [(t - t0_ns) / 1e9 for t in q.token_ns]
        arrival, first, finish = s(q.arrival_ns), (times[0] if times else math.nan), s(q.finish_ns)
        n = len(times)
        rows.append(dict(
            request_id=q.id, engine=engine, status=q.status.value, error=q.error,
            input_len=q.prompt_len, output_len=n, max_new_tokens=q.max_new_tokens,
            arrival_s=arrival, admitted_s=s(q.admitted_ns), first_token_s=first, finish_s=finish,
            queue_ms=(s(q.admitted_ns) - arrival) * 1e3, **latencies(arrival, first, finish, n),
            num_preemptions=q.num_preemptions, token_times_s=times,
            **({"output_token_ids": q.output_ids} if tokens else {}),
        ))
    df = pd.DataFrame(rows)
    return df.sort_values("request_id", ignore_index=True) if len(df) else df


def _stats(name: str, values: np.ndarray) -> dict[str, float]:
    values = values[~np.isnan(values)]
    if not len(values):
        return {f"mean_{name}": math.nan, **{f"p{p}_{name}": math.nan for p in PERCENTILES}}
    return {f"mean_{name}": float(values.mean()),
            **{f"p{p}_{name}": float(np.percentile(values, p)) for p in PERCENTILES}}


def meets_slos(df: pd.DataFrame, slos: SLOs) -> pd.Series:
    """Per request: finished and within every SLO given (TPOT of a 1-token output counts as met)."""
    ok = df["status"] == Status.FINISHED.value
    for col, limit in (("ttft_ms", slos.ttft_ms), ("tpot_ms", slos.tpot_ms), ("e2e_ms", slos.e2e_ms)):
        if limit is not None:
            within = df[col] <= limit
            if col == "tpot_ms":
                within |= df[col].isna()
            ok &= within
    return ok


def request_summary(df: pd.DataFrame, slos: Union[SLOs, dict, None] = None) -> dict[str, float]:
    """One row of summary.csv from requests.parquet rows (see the module docstring)."""
    slos = SLOs.model_validate(slos or {}) if not isinstance(slos, SLOs) else slos
    done = df[df["status"] == Status.FINISHED.value] if len(df) else df
    duration = float(df["finish_s"].max()) if len(df) else math.nan
    out: dict[str, float] = {
        "num_requests": len(df), "completed": len(done), "failed": len(df) - len(done),
        "duration_s": duration,
        "total_input_tokens": int(done["input_len"].sum()) if len(done) else 0,
        "total_output_tokens": int(done["output_len"].sum()) if len(done) else 0,
    }
    per_s = (lambda x: x / duration) if duration and duration > 0 else (lambda x: math.nan)
    out["request_throughput"] = per_s(len(done))
    out["output_throughput"] = per_s(out["total_output_tokens"])
    out["total_token_throughput"] = per_s(out["total_input_tokens"] + out["total_output_tokens"])
    given = any(v is not None for v in (slos.ttft_ms, slos.tpot_ms, slos.e2e_ms))
    out["goodput"] = per_s(int(meets_slos(done, slos).sum())) if given and len(done) else math.nan
    for name in ("ttft_ms", "tpot_ms", "e2e_ms", "queue_ms"):
        out.update(_stats(name, done[name].to_numpy(dtype=float) if len(done) else np.array([])))
    itl = [np.diff(t) * 1e3 for t in done["token_times_s"]] if len(done) else []
    out.update(_stats("itl_ms", np.concatenate(itl) if itl else np.array([])))
    out["num_preemptions"] = int(df["num_preemptions"].sum()) if len(df) else 0
    return out
