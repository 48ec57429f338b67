"""The findings at the top of the report: the study's questions answered in sentences, from the tables.

Rules that keep them honest: an effect is stated only when its interval excludes 1 (the run's
verdict is `slower`); otherwise it is "indistinguishable from no interference". A/A controls come
first, so a reader sees what "no effect" looks like on this machine before any effect. Things
that cannot be true (STP above the number of tenants, a tenant faster shared than alone) are
listed as measurement artefacts, never as findings. Aggregates over tenant sets use
`tenancy.analysis.stats.t_interval` across the sets (each set one value) and say so.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tenancy.analysis import stats as tstats

COMPARISON, CONTROL, PAIRS, CATEGORIES = ("Comparison", "What no effect looks like on this machine", "Pairs",
                                         "Mixed against same-kind tenant sets")
SHARING, SCALING, ARTEFACTS, NOTES = "Sharing modes", "Scaling", "Measurement artefacts (not findings)", "Notes"
SECTIONS = (COMPARISON, CONTROL, PAIRS, CATEGORIES, SHARING, SCALING, ARTEFACTS, NOTES)
BASE_MODE = "timeslice"


def ci(p: float, lo: float, hi: float, unit: str = "") -> str:
    """'1.21× [1.10, 1.32]', or the point with '(no interval)'."""
    if not np.isfinite(p):
        return "n/a"
    if np.isfinite(lo) and np.isfinite(hi):
        return f"{p:.2f}{unit} [{lo:.2f}, {hi:.2f}]"
    return f"{p:.2f}{unit} (no interval)"


def _item(section: str, kind: str, text: str) -> dict[str, str]:
    return {"section": section, "kind": kind, "text": text}


def effect(tenants: pd.DataFrame) -> str:
    """A tenant set's effect from its tenants' verdicts: `slower` if any is slower, `faster` if
    any is faster and none slower, `no interval` if none could be judged, else `indistinguishable`."""
    v = set(tenants["verdict"])
    if "slower" in v:
        return "slower"
    if "faster" in v:
        return "faster"
    if v and v <= {"no interval", ""}:
        return "no interval"
    return "indistinguishable"


def _tenant_list(t: pd.DataFrame) -> str:
    parts = []
    for r in t.itertuples():
        who = f"{r.tenant}#{r.copy}" if (t["tenant"] == r.tenant).sum() > 1 else str(r.tenant)
        parts.append(f"{who} {ci(r.slowdown, r.lo, r.hi, '×')} {r.verdict}")
    return "; ".join(parts)


def _where(c: dict[str, Any] | pd.Series) -> str:
    return f"{c['label']} ({c['sharing']})"


def build(cells: pd.DataFrame, slowdowns: pd.DataFrame, scaling: pd.DataFrame) -> list[dict[str, str]]:
    """Every finding, in SECTIONS order, as {section, kind, text}; kind is one of control,
    finding, no effect, artefact, note."""
    if cells.empty:
        return [_item(NOTES, "note", "No run with a shared phase: nothing to find.")]
    out = _controls(cells, slowdowns)
    out += _pairs(cells, slowdowns)
    out += _categories(cells)
    out += _sharing(cells)
    out += _scaling(scaling)
    out += _artefacts(cells, slowdowns)
    out += _notes(cells)
    return sorted(out, key=lambda f: SECTIONS.index(f["section"]))


def _controls(cells: pd.DataFrame, slowdowns: pd.DataFrame) -> list[dict[str, str]]:
    sec = CONTROL
    out = []
    floors = slowdowns["noise_floor"].dropna() if "noise_floor" in slowdowns else pd.Series(dtype=float)
    for c in cells[cells["is_control"]].to_dict("records"):
        t = slowdowns[slowdowns["cell"] == c["cell"]].iloc[0]
        what = f"{_where(c)}, the same work alone twice: slowdown {ci(t['slowdown'], t['lo'], t['hi'], '×')}"
        what += f" ({c['ci']})" if c["basis"] != "none" else " (old run directory)"
        if pd.isna(t["includes_one"]):
            out.append(_item(sec, "control", f"{what}. No interval, so this control cannot show the noise."))
        elif t["includes_one"]:
            band = max(t["hi"] - 1, 1 - t["lo"])
            out.append(_item(sec, "control", f"{what}: includes 1, as it should. Effects within ±{band:.0%} "
                                             "are what no effect looks like here."))
        else:
            out.append(_item(sec, "artefact", f"{what}: EXCLUDES 1 although nothing was co-located. On this "
                             f"machine the protocol finds a {t['slowdown'] - 1:+.0%} 'effect' with no cause; "
                             "read effects of that size below as noise."))
    if not out:
        out.append(_item(sec, "note", "No A/A control (one tenant whose shared phase is the same work alone) in "
                         "these inputs; scenarios/controls/ has one."))
    if len(floors) and (floors > 0).any():
        out.append(_item(sec, "control", f"Solo repeats of the same work differed by up to {floors.max():.1%} "
                         f"(median {floors.median():.1%}) across the tenants' noise floors: the runs' own A/A."))
    return out


def _pairs(cells: pd.DataFrame, slowdowns: pd.DataFrame) -> list[dict[str, str]]:
    sec = PAIRS
    pairs = cells[cells["is_pair"]]
    out = []
    for mode, g in pairs.groupby("sharing", sort=False):
        g = g[np.isfinite(g["antt"])].sort_values("antt")
        if g.empty:
            continue
        ranked = [(c, slowdowns[slowdowns["cell"] == c["cell"]]) for c in g.to_dict("records")]
        judged = [(c, t, effect(t)) for c, t in ranked]
        if len(judged) == 1:
            out.append(_pair_item(sec, "Only pair", *judged[0]))
            continue
        out.append(_pair_item(sec, "Least interference", *judged[0]))
        out.append(_pair_item(sec, "Most interference", *judged[-1]))
        lo_c, hi_c = judged[0][0], judged[-1][0]
        if all(np.isfinite([lo_c["antt_hi"], hi_c["antt_lo"]])) and lo_c["antt_hi"] >= hi_c["antt_lo"]:
            out.append(_item(sec, "no effect", f"Under {mode} the least and the most interfering pairs' intervals "
                             "overlap: the ranking is not established at this number of repeats."))
        quiet = [c["label"] for c, _, e in judged if e == "indistinguishable"]
        if quiet:
            out.append(_item(sec, "no effect", f"{len(quiet)} of {len(judged)} pairs under {mode} are "
                             f"indistinguishable from no interference: {', '.join(quiet)}."))
    return out


def _pair_item(sec: str, lead: str, c: dict[str, Any], t: pd.DataFrame, e: str) -> dict[str, str]:
    base = f"{lead}: {_where(c)}, mean slowdown {ci(c['antt'], c['antt_lo'], c['antt_hi'], '×')} ({_tenant_list(t)})"
    if e == "slower":
        return _item(sec, "finding", base + ".")
    if e == "faster":
        return _item(sec, "artefact", base + ": faster shared than alone is a measurement artefact, not a finding.")
    if e == "no interval":
        return _item(sec, "note", base + ": no interval, not judged.")
    return _item(sec, "no effect", base + ": indistinguishable from no interference.")


def _agg(values: pd.Series) -> tuple[float, float, float, int]:
    """Mean slowdowns of tenant sets, aggregated as ratios (geometric mean, log-scale t interval)."""
    m, lo, hi = tstats.ratio_interval(values.tolist())
    return m, lo, hi, int(values.notna().sum())


def _categories(cells: pd.DataFrame) -> list[dict[str, str]]:
    sec = CATEGORIES
    out = []
    for kind, noun in (("is_pair", "pairs"), ("is_group", "groups")):
        sub = cells[cells[kind]]
        for mode, g in sub.groupby("sharing", sort=False):
            mixed = g.loc[g["category"] == "mixed", "antt"]
            same = g.loc[g["category"] != "mixed", "antt"]
            if mixed.notna().sum() == 0 or same.notna().sum() == 0:
                continue
            a, b = _agg(mixed), _agg(same)
            text = (f"{noun.capitalize()} under {mode}: mixed encoder+decoder mean slowdown "
                    f"{ci(*a[:3], '×')} over {a[3]}, same-kind {ci(*b[:3], '×')} over {b[3]} "
                    f"(geometric mean, Student-t on the log scale across tenant sets, each set's mean slowdown one value)")
            if not all(np.isfinite([a[1], a[2], b[1], b[2]])):
                out.append(_item(sec, "note", text + "; too few sets for an interval: no comparison."))
            elif a[2] < b[1] or b[2] < a[1]:
                word = "less" if a[0] < b[0] else "more"
                out.append(_item(sec, "finding", text + f": mixed {noun} interfere {word}."))
            else:
                out.append(_item(sec, "no effect", text + ": the intervals overlap, no difference shown."))
    return out


def _sharing(cells: pd.DataFrame) -> list[dict[str, str]]:
    sec = SHARING
    multi = cells[cells.groupby("key")["sharing"].transform("nunique") >= 2]
    if multi.empty:
        return []
    modes = list(dict.fromkeys(multi["sharing"]))
    base = BASE_MODE if BASE_MODE in modes else modes[0]
    out = []
    for other in [m for m in modes if m != base]:
        diffs, above, below = [], 0, 0
        for _, g in multi.groupby("key"):
            a, b = g[g["sharing"] == base], g[g["sharing"] == other]
            if a.empty or b.empty:
                continue
            a, b = a.iloc[0], b.iloc[0]
            diffs.append(b["stp"] - a["stp"])
            above += bool(b["stp_lo"] > a["stp_hi"])
            below += bool(b["stp_hi"] < a["stp_lo"])
        if not diffs:
            continue
        m, lo, hi = tstats.t_interval(diffs)
        text = (f"{other} against {base} over {len(diffs)} tenant set(s): STP {m:+.2f} on average"
                + (f" [{lo:+.2f}, {hi:+.2f}] (Student-t across sets, paired per set)" if np.isfinite(lo) else
                   " (one set: no interval across sets)")
                + f"; {other}'s interval lies above {base}'s in {above}, below in {below}")
        if np.isfinite(lo) and (lo > 0 or hi < 0):
            out.append(_item(sec, "finding", text + f": {other} {'raises' if m > 0 else 'lowers'} system throughput."))
        elif not np.isfinite(lo) and (above or below):
            out.append(_item(sec, "finding", text + "."))
        else:
            out.append(_item(sec, "no effect", text + ": indistinguishable."))
    return out


def _scaling(scaling: pd.DataFrame) -> list[dict[str, str]]:
    sec = SCALING
    out = []
    if scaling.empty:
        return out
    for (model, mode), g in scaling.groupby(["model", "sharing"], sort=False):
        top = g.sort_values("processes").iloc[-1]
        if top["processes"] < 2:
            continue
        text = (f"{int(top['processes'])} copies of {model} ({mode}): aggregate throughput "
                f"{ci(top['stp'], top['stp_lo'], top['stp_hi'], '×')} one copy alone, each copy slowed "
                f"{ci(top['slowdown'], top['slowdown_lo'], top['slowdown_hi'], '×')}; reachable ideal "
                f"{top['ideal_stp']:.2f}× ({top['capacity_why']})")
        if np.isfinite(top["stp_hi"]) and top["stp_hi"] < top["ideal_stp"]:
            out.append(_item(sec, "finding", text + f": {top['stp'] / top['ideal_stp']:.0%} of the ideal."))
        elif np.isfinite(top["stp_lo"]):
            out.append(_item(sec, "no effect", text + ": indistinguishable from the ideal."))
        else:
            out.append(_item(sec, "note", text + ": no interval, not judged."))
    return out


def _artefacts(cells: pd.DataFrame, slowdowns: pd.DataFrame) -> list[dict[str, str]]:
    sec = ARTEFACTS
    out = []
    for c in cells.to_dict("records"):
        beyond = c["stp_lo"] if np.isfinite(c["stp_lo"]) else c["stp"]  # above n even at its interval's low end
        if np.isfinite(beyond) and c["n_tenants"] and beyond > c["n_tenants"] + 1e-9:
            out.append(_item(sec, "artefact", f"{_where(c)}: STP {ci(c['stp'], c['stp_lo'], c['stp_hi'])} exceeds "
                             f"its {c['n_tenants']} tenants, which no co-location can do: the solo and shared "
                             "phases ran in different machine states."))
    for t in slowdowns[slowdowns["verdict"] == "faster"].to_dict("records"):
        out.append(_item(sec, "artefact", f"{t['tenant']}#{t['copy']} in {_where(t)} ran faster shared than alone: "
                         f"slowdown {ci(t['slowdown'], t['lo'], t['hi'], '×')}, a measurement artefact."))
    return out


def _notes(cells: pd.DataFrame) -> list[dict[str, str]]:
    sec = NOTES
    out = []
    old = cells[cells["basis"] == "none"]
    if len(old):
        out.append(_item(sec, "note", f"{len(old)} of {len(cells)} tenant sets come from old run directories "
                         "(no per-repeat results, schema 1): shown without intervals and not judged."))
    within = cells[cells["basis"] == "within-run"]
    if len(within):
        out.append(_item(sec, "note", f"{len(within)} tenant set(s) have fewer than 3 repeats: their intervals are "
                         "a block bootstrap within each launch and leave out launch-to-launch variation."))
    pooled = cells[cells["basis"] == "pooled"]
    if len(pooled):
        out.append(_item(sec, "note", f"{len(pooled)} tenant set(s) were measured in several run directories: "
                         "their repeats are pooled, intervals are Student-t across all of them."))
    return out



def compare(cmp: pd.DataFrame, labels: list[str]) -> list[dict[str, str]]:
    """Per compared input: how its slowdowns sit against the first input's, tenant copy by copy."""
    sec = COMPARISON
    if cmp.empty:
        return [_item(sec, "note", "No shared tenant copy is in the first input and another: nothing to compare.")]
    keys = ["name", "sharing", "tenant", "copy"]
    base = cmp[cmp["input"] == labels[0]].set_index(keys)
    out = []
    for other in labels[1:]:
        both = cmp[cmp["input"] == other].set_index(keys).merge(base, left_index=True, right_index=True, how="inner",
                                                                suffixes=("", "_0"))
        if both.empty:
            out.append(_item(sec, "note", f"{other}: no shared tenant copy in common with {labels[0]}."))
            continue
        m, lo, hi = tstats.ratio_interval(both["slowdown / first input"].tolist())
        more = int((both["lo"] > both["hi_0"]).sum())
        less = int((both["hi"] < both["lo_0"]).sum())
        text = (f"{other} against {labels[0]}, {len(both)} tenant copies in common: slowdown ratio "
                f"{ci(m, lo, hi, '×')} (geometric mean, Student-t on the log scale across tenant copies); interval entirely above the first "
                f"input's for {more}, below for {less}")
        kind = "finding" if np.isfinite(lo) and (lo > 1 or hi < 1) else "no effect"
        out.append(_item(sec, kind, text + ("." if kind == "finding" else ": no overall difference shown.")))
    return out
