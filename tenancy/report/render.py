"""Write the report: index.html and report.md showing the figures with their tables, plus the
tables as CSV (tables/<id>.csv) so every number shown is also plain data."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MD_ROWS = 40  # longer tables are cut in report.md (the CSV and the HTML have them whole)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{font-size:.9em;color:#444}
.findings li{margin:.25em 0}.finding{color:#111}.noeffect{color:#555}.control{color:#114a7a}
.artefact{color:#8a2a00}.note{color:#8a5300}.warn{color:#8a2a00;font-size:.9em}details{margin:.4em 0 1.2em}
"""


def _fmt(v: Any) -> str:
    if v is None or v is pd.NA:
        return ""
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return ""
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _table_html(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _table_md(df: pd.DataFrame, rows: int = MD_ROWS) -> str:
    cut = df.head(rows)
    esc = lambda s: _fmt(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in cut.columns) + " |",
             "|" + "|".join("---" for _ in cut.columns) + "|"]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in cut.itertuples(index=False)]
    if len(df) > rows:
        lines.append(f"\n({len(df) - rows} more rows in the CSV)")
    return "\n".join(lines)


def _flatten(df: pd.DataFrame) -> pd.DataFrame:
    if isinstance(df.columns, pd.MultiIndex):
        df = df.copy()
        df.columns = [" ".join(str(p) for p in c if str(p)) for c in df.columns]
    return df


def write(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write index.html, report.md and tables/*.csv into `out`; returns their paths."""
    tables = out / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    for f in report["figures"]:
        if f.get("table") is not None and not f["table"].empty:
            f["table"] = _flatten(f["table"])
            f["csv"] = f"tables/{f['id']}.csv"
            f["table"].to_csv(out / f["csv"], index=False, float_format="%.6g")
    for name, df in report["tables"].items():
        if not df.empty:
            df.to_csv(tables / f"{name}.csv", index=False, float_format="%.6g")
    paths = {"html": out / "index.html", "md": out / "report.md"}
    paths["html"].write_text(_html(report))
    paths["md"].write_text(_md(report))
    return paths


def _by_section(findings: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for f in findings:
        out.setdefault(f["section"], []).append(f)
    return out


def _findings_html(findings: list[dict[str, str]]) -> str:
    parts = []
    for sec, items in _by_section(findings).items():
        lis = "".join(f"<li class='{f['kind'].replace(' ', '')}'>{html.escape(f['text'])}</li>" for f in items)
        parts.append(f"<h3>{html.escape(sec)}</h3><ul>{lis}</ul>")
    return "".join(parts) or "<p>None.</p>"


def _findings_md(findings: list[dict[str, str]]) -> list[str]:
    out = []
    for sec, items in _by_section(findings).items():
        out += [f"### {sec}", ""] + [f"- {f['text']}" for f in items] + [""]
    return out or ["None.", ""]


def _html(r: dict[str, Any]) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(r['title'])}</title>"
             f"<style>{_CSS}</style></head><body><h1>{e(r['title'])}</h1>",
             f"<p>Generated {e(r['generated'])} from {', '.join(f'<code>{e(p)}</code>' for p in r['inputs'])}: "
             f"{r['n_runs']} run(s). Every number comes from the run directories' results files.</p>"]
    parts.append("<h2 id='findings'>Findings</h2><div class='findings'>" + _findings_html(r["findings"]) + "</div>")
    parts.append("<h2>Environment</h2>" + _table_html(pd.DataFrame(r["environments"])))
    parts.append("<h2>Runs</h2><details><summary>one row per run</summary>" + _table_html(r["runs"]) + "</details>")
    for f in r["figures"]:
        parts.append(f"<h2 id='{e(f['id'])}'>{e(f['title'])}</h2>")
        if not f.get("file"):
            parts.append(f"<p class='note'>Skipped: {e(f['note'])}.</p>")
            continue
        parts.append(f"<figure><img src='{e(f['file'])}' alt='{e(f['title'])}'>"
                     f"<figcaption>{e(f['caption'])}</figcaption></figure>")
        if f.get("table") is not None and not f["table"].empty:
            parts.append(f"<details><summary>table ({len(f['table'])} rows, <a href='{e(f['csv'])}'>CSV</a>)"
                         f"</summary>{_table_html(f['table'])}</details>")
    if "cells" in r["tables"]:
        parts.append("<h2>Tenant sets</h2><details><summary>one row per tenant set and sharing mode (run directories "
                     "of the same work pooled as repeats)</summary>" + _table_html(r["tables"]["cells"]) + "</details>")
    if "tenants" in r["tables"]:
        parts.append("<h2>Per-tenant results</h2><details><summary>every tenant copy of every run directory "
                     "(summary.csv as written)</summary>" + _table_html(r["tables"]["tenants"]) + "</details>")
    parts.append("<h2>Warnings and notes</h2>")
    items = [f"<li class='note'>{e(n)}</li>" for n in r["notes"]]
    items += [f"<li class='warn'><code>{e(run)}</code>: {e(w)}</li>" for run, w in r["warnings"]]
    parts.append(f"<ul>{''.join(items)}</ul>" if items else "<p>None.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _md(r: dict[str, Any]) -> str:
    out = [f"# {r['title']}", "",
           f"Generated {r['generated']} from {', '.join(f'`{p}`' for p in r['inputs'])}: {r['n_runs']} run(s).", "",
           "## Findings", "", *_findings_md(r["findings"]),
           "## Environment", "", _table_md(pd.DataFrame(r["environments"])), "",
           "## Runs", "", _table_md(r["runs"]), ""]
    for f in r["figures"]:
        out += [f"## {f['title']}", ""]
        if not f.get("file"):
            out += [f"_Skipped: {f['note']}._", ""]
            continue
        out += [f"![{f['title']}]({f['file']})", "", f["caption"], ""]
        if f.get("table") is not None and not f["table"].empty:
            out += [_table_md(f["table"]), "", f"Full table: [{f['csv']}]({f['csv']})", ""]
    out += ["## Warnings and notes", ""]
    out += [f"- {n}" for n in r["notes"]] + [f"- `{run}`: {w}" for run, w in r["warnings"]]
    if not r["notes"] and not r["warnings"]:
        out.append("None.")
    return "\n".join(out) + "\n"
