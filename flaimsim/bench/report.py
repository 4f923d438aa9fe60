"""``report.html``: one self-contained page (inline CSS and SVG, no script, nothing fetched)
that a teacher can put on the screen, built from a result folder alone.

* a run folder (``flaimsim run --out``: result.json, ledger-*.csv): the header (data set,
  preset, the settings that decide the cost), the run table, per protocol the privacy block
  with what each party learns (where result.json records it), the bytes by phase per party
  role, and communication rounds and time at LAN/WAN where the run has them;
* a sweep folder (sweep-config.json, cells/): the trade-off table, error-vs-T and
  traffic-vs-T per group, and the poster's row beside ours where the poster has the data set;
* a reproduce folder (reproduce.md, one sweep folder per data set): each data set's sweep
  section, then the poster comparison.

``flaimsim report DIR`` rebuilds DIR/report.html; ``flaimsim run --out`` writes it.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
from pathlib import Path
from typing import Any, Sequence

from flaimsim.bench.report_charts import overview_chart, phase_chart, sweep_charts
from flaimsim.bench.runs import (TABLE_COLUMNS, RunSet, _server_view, format_table_markdown,
                                 reference_notes, table_cells)
from flaimsim.parties.ledger import Ledger, party_kind
from flaimsim.protocols.config import RunConfig
from flaimsim.safe_output import open_atomic, write_text

KNOWLEDGE_ROLES = ("client", "compute_server", "aggregator", "downstream")
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;
max-width:1200px;color:#1b1b1b;background:#fff;padding:0 1em;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:2px solid #ddd}
table{border-collapse:collapse;font-size:.88em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
tr.ref td{color:#555;background:#fafafa}
.settings td,.settings th{text-align:left}.muted{color:#666}.note{font-size:.85em;color:#444}
.chart svg{max-width:100%;height:auto}.grid{display:flex;flex-wrap:wrap;gap:1em}
.grid>div{flex:1 1 520px}.knows td{text-align:left;vertical-align:top}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}
"""


class ReportError(ValueError):
    """The folder is not a run, sweep or reproduce result."""


def e(text: Any) -> str:
    return html.escape(str(text))


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new, never half
    (:func:`flaimsim.safe_output.write_text`: temporary file, fsync, rename)."""
    return write_text(path, text)


def page(title: str, body: Sequence[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def html_table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """Cells are escaped here; use :func:`raw_table` for cells that are already HTML."""
    return raw_table([e(h) for h in head], [[e(c) for c in r] for r in rows], cls)


def raw_table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    out = [f"<table class=\"{cls}\"><thead><tr>" + "".join(f"<th>{h}</th>" for h in head)
           + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows]
    return "\n".join(out + ["</tbody></table>"])


# ---- a run folder --------------------------------------------------------------------------

def _config(resolved: dict[str, Any]) -> RunConfig:
    fields = RunConfig.__dataclass_fields__
    values = {k: v for k, v in resolved.items() if k in fields and k != "protocol"}
    return RunConfig(**values)


def settings_rows(resolved: dict[str, Any]) -> list[tuple[str, str]]:
    """The settings that decide a run's cost (and the data they apply to)."""
    data = resolved.get("data", {})
    c = _config(resolved)
    rows = [("data set", f"{c.dataset}: {data.get('train_records')} train / "
                         f"{data.get('test_records')} test records, label "
                         f"{data.get('label')!r}"),
            ("preset", str(resolved.get("preset") or "-")),
            ("protocols", ", ".join(resolved.get("protocols", []))),
            ("clients K, partition, participation p",
             f"{data.get('clients', c.clients)}, {c.partition}, p = {c.participation:g}"),
            ("workload", f"W = {data.get('workload_marginals')} marginals, W+ = "
                         f"{data.get('candidates')} candidates, {data.get('cells', 0):,} cells"),
            ("rounds T, privacy", f"T = {c.rounds}, ε = {c.epsilon:g}, δ = {c.delta:g}"),
            ("DistAIM", f"mpc {c.mpc}, {c.servers} servers (t = {c.threshold}), {c.sharing} "
                        f"shares, {c.score} score, {c.em} selection, "
                        f"{c.distaim_participation} participation"),
            ("FLAIM", f"{c.aggregation} aggregation, dropout {c.dropout:g}"),
            ("seed", str(c.seed))]
    return rows


def run_table_html(records: Sequence[dict[str, Any]], reference: dict[str, Any] | None
                   ) -> str:
    """Every column of the run table; each cell carries the record's value it shows."""
    head, rows = table_cells(records, reference, wide=True)
    viewed = [_server_view(r) for r in records]
    body = []
    for i, row in enumerate(rows):
        cells = []
        for (key, _, _), text in zip(TABLE_COLUMNS, row):
            value = viewed[i].get(key) if i < len(records) else None
            attr = (f" data-key=\"{e(key)}\" data-value=\"{e(json.dumps(value))}\""
                    if i < len(records) else "")
            cells.append(f"<td{attr}>{e(text)}</td>")
        cls = " class=\"ref\"" if i >= len(records) else ""
        protocol = f" data-protocol=\"{e(records[i]['protocol'])}\"" if i < len(records) else ""
        body.append(f"<tr{cls}{protocol}>" + "".join(cells) + "</tr>")
    notes = reference_notes(reference) if reference is not None else []
    return ("<table id=\"run-table\"><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head)
            + "</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"
            + "".join(f"<p class=\"note\">{e(n)}</p>" for n in notes))


def knowledge_html(block: dict[str, Any]) -> str:
    """What each party learns, as the run recorded it; nothing is made up when it did not."""
    knowledge = block.get("knowledge")
    if not knowledge:
        return ("<p class=\"muted knows-missing\">What each party learns is not recorded in "
                "this result (result.json has no <code>knowledge</code> entry).</p>")
    rows = [[e(role.replace("_", " ")), "<ul>" + "".join(f"<li>{e(x)}</li>" for x in items)
             + "</ul>"] for role, items in sorted(
                 knowledge.items(), key=lambda kv: (KNOWLEDGE_ROLES.index(kv[0])
                                                    if kv[0] in KNOWLEDGE_ROLES else 99, kv[0]))]
    return raw_table(["party", "learns"], rows, "knows")


def privacy_html(protocol: str, block: dict[str, Any]) -> str:
    rho = " + ".join(f"{k} {v:.4g}" for k, v in block.get("rho_by_mechanism", {}).items())
    delta = " + ".join(f"{k} {v:.3g}" for k, v in block.get("delta_terms", {}).items())
    servers = ("" if block.get("threshold") is None else
               f"; t = {block['threshold']} of {block['servers']} servers may collude")
    bound = block.get("record_bound") or {}
    rows = [("neighbouring", f"{block.get('neighbouring')}{servers}"),
            ("ρ spent (zCDP)", f"{block.get('rho_spent', 0):.4g} of "
                               f"{block.get('rho_budget', 0):.4g} = {rho}"),
            ("(ε, δ)", f"ε = {block.get('epsilon')}, δ = {block.get('delta', 0):.3g} "
                       f"(target {block.get('delta_target')}) = {delta}"),
            ("noise", f"{block.get('noise', {}).get('law')}; "
                      f"{block.get('noise', {}).get('added')}; randomness: "
                      f"{block.get('noise', {}).get('randomness')}")]
    if bound:
        rows.append(("record bound", f"{bound.get('value')} "
                                     f"({'public' if bound.get('public') else 'NOT public'})"))
    notes = "".join(f"<li>{e(n)}</li>" for n in block.get("notes", []))
    return (html_table(["", protocol], rows, "settings")
            + (f"<ul class=\"note\">{notes}</ul>" if notes else "")
            + "<h4>What each party learns</h4>" + knowledge_html(block))


def timing_html(record: dict[str, Any], ledger: Ledger) -> str:
    """Communication rounds and time: the record's own figures where the run has them, and
    the network model's estimate from the ledger (modelled, no compute)."""
    from flaimsim.bench.network import PRESETS, wall_time_split

    rows = []
    if record.get("comm_rounds") is not None:
        rows.append(("communication rounds (counted)", str(record["comm_rounds"])))
    by_phase = record.get("comm_rounds_by_phase")
    if isinstance(by_phase, dict) and by_phase:
        rows.append(("  of them, by phase", ", ".join(f"{k} {v}" for k, v in by_phase.items())))
    network = record.get("network")  # runs over emulated links (run --network)
    if network:
        rows.append(("emulated network (measured on it)", str(network)))
    if record.get("wall_seconds") is not None:
        rows.append(("measured wall time of the run" + (" on that network" if network else ""),
                     f"{record['wall_seconds']:.1f} s"))
    if record.get("compute_seconds") is not None:
        rows.append(("compute time (the same run through the relay, no latency)",
                     f"{record['compute_seconds']:.1f} s"))
    estimate = record.get("network_estimate_s")
    if isinstance(estimate, (int, float)):
        error = record.get("network_estimate_error")
        rows.append(("estimate: compute + the model's communication time",
                     f"{estimate:.1f} s" + (f" ({error:+.0%} against measured)"
                                            if isinstance(error, (int, float)) else "")))
    if ledger.rows:
        for net in PRESETS.values():
            latency, transfer = wall_time_split(ledger.rows, net)
            rows.append((f"network model, {net.describe()}",
                         f"{latency + transfer:.3g} s ({latency:.3g} s latency + "
                         f"{transfer:.3g} s transfer)"))
    return html_table(["communication", ""], rows, "settings")


def _ledger_path(out: Path, record: dict[str, Any]) -> Path:
    return out / f"ledger-{record['protocol']}-T{record['rounds']}-s{record['seed']}.csv"


def parties_of(record: dict[str, Any], ledger: Ledger) -> dict[str, int]:
    """How many parties of each role the bars average over (clients: all K)."""
    names = {p for r in ledger.rows for p in (r.sender, r.receiver)}
    count = {role: sum(party_kind(p) == role for p in names) for role in ("server",
                                                                          "aggregator")}
    return {"client": int(record.get("clients") or 1), **count}


def protocol_section(out: Path, record: dict[str, Any]) -> str:
    name = record["protocol"]
    path = _ledger_path(out, record)
    ledger = Ledger.read_csv(path) if path.is_file() else Ledger()
    parts = [f"<section class=\"protocol\" id=\"p-{e(name)}\"><h3>{e(name)}</h3>"]
    parts.append("<div class=\"grid\"><div>")
    if ledger.rows:
        title = f"{name}: bytes by phase per party ({ledger.bytes_source()})"
        parts.append(f"<div class=\"chart\" data-chart=\"{e(name)}\">"
                     f"{phase_chart(ledger.rows, parties_of(record, ledger), title)}</div>")
    elif path.is_file() or name == "central":
        parts.append("<p class=\"muted\">No communication: one trusted curator runs AIM on "
                     "the pooled data.</p>")
    else:
        parts.append(f"<p class=\"muted\">No ledger file ({e(path.name)}) in this folder.</p>")
    parts.append(timing_html(record, ledger))
    parts.append("</div><div>")
    if record.get("privacy"):
        parts.append(privacy_html(name, record["privacy"]))
    parts.append("</div></div></section>")
    return "\n".join(parts)


def run_report(out: Path) -> str:
    result = json.loads((out / "result.json").read_text())
    resolved, records = result.get("config", {}), result.get("results", [])
    reference = result.get("reference")
    body = ["<h1>flaimsim run: DistAIM against FLAIM</h1>",
            f"<p class=\"muted\">Built from {e(out.name)}/result.json and its ledgers. Bytes "
            "are <b>wire</b> (counted where written to a socket) or <b>modelled</b> (from "
            "the MPC cost table), as each protocol says. MB = 10^6 bytes.</p>",
            "<h2>Settings</h2>", html_table(["setting", "value"], settings_rows(resolved),
                                            "settings"),
            "<h2>Run table</h2>", run_table_html(records, reference),
            overview_html(records),
            "<h2>Per protocol: who sends what, and what each party learns</h2>"]
    # Protocols that send something first (central AIM, which sends nothing, last).
    body += [protocol_section(out, r) for r in sorted(
        records, key=lambda r: r.get("bytes_source") is None)]
    return page(f"flaimsim report: {out.name}", body)


def overview_html(records: Sequence[dict[str, Any]]) -> str:
    """The headline chart from the table's own figures (sent + received)."""
    from flaimsim.bench.trade_off import client_throughput, server_throughput

    rows = [(r["protocol"], client_throughput(r), server_throughput(r)) for r in records]
    if not any(c or s for _, c, s in rows):
        return ""
    return (f"<div class=\"chart\" data-chart=\"overview\">{overview_chart(rows)}</div>"
            "<p class=\"note\">Server side: the mean MPC compute server for DistAIM, the "
            "aggregator for FLAIM. Central AIM sends nothing.</p>")


def write_run_outputs(runs: RunSet, out: str | Path) -> None:
    """table.csv and table.md (every column) and report.html beside result.json."""
    out = Path(out)
    records = [r.record for r in runs.results]
    with open_atomic(out / "table.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([key for key, _, _ in TABLE_COLUMNS])
        for r in map(_server_view, records):
            w.writerow(["" if r.get(k) is None else r.get(k) for k, _, _ in TABLE_COLUMNS])
    write_text(out / "table.md", runs.header().replace("\n", "  \n") + "\n\n"
               + format_table_markdown(records, runs.reference) + "\n")
    write_report(out)


# ---- sweep and reproduce folders -----------------------------------------------------------

def sweep_section(out: Path, title: str, poster: bool = True) -> str:
    """A sweep folder's trade-off tables and T plots (``poster``: and the poster's row
    beside ours, where the poster has the data set)."""
    from flaimsim.bench.network import PRESETS
    from flaimsim.bench.paper_table import POSTER, our_row
    from flaimsim.bench.sweep_dir import load_cells
    from flaimsim.bench.table import cell_configs, format_summary, setting_header, trade_off_rows
    from flaimsim.bench.trade_off import TableError, summarise, trade_offs

    cells = load_cells(out)
    if not cells:
        return f"<h2>{e(title)}</h2><p class=\"muted\">No finished cells.</p>"
    networks = tuple(PRESETS.values())
    summaries = summarise(cells, networks)
    parts = [f"<h2>{e(title)}</h2>",
             f"<p>{e(setting_header(cell_configs(out, cells).values()))}</p>"]
    try:
        items = trade_offs(cells, networks)
    except TableError as exc:
        items = []
        parts.append(f"<p class=\"muted\">{e(exc)}</p>")
    for t in items:
        parts.append(f"<h3>{e(t.dataset)}, ε = {t.epsilon:g}, partition = {e(t.partition)}"
                     "</h3>")
        parts.append(html_table(("metric", "DistAIM", "AugFLAIM (Private)", "comparison"),
                                trade_off_rows(t, networks)))
    groups = sorted({(s.dataset, s.epsilon, s.partition) for s in summaries})
    for g in groups:
        mine = [s for s in summaries if (s.dataset, s.epsilon, s.partition) == g]
        parts.append("<div class=\"grid\">" + "".join(
            f"<div class=\"chart\" data-chart=\"{e(name)}-{e(g[0])}\">{svg}</div>"
            for name, svg in sweep_charts(mine, g)) + "</div>")
    if poster and items and any(t.dataset in POSTER for t in items):
        try:
            ours = our_row(out)
        except (ValueError, KeyError) as exc:
            ours = None
            parts.append(f"<p class=\"muted\">No poster comparison: {e(exc)}</p>")
        if ours is not None:
            parts.append("<h3>The poster's row beside ours</h3>")
            parts.append(poster_table({items[0].dataset: ours}))
    parts.append("<details><summary>Every protocol and T</summary><pre>"
                 f"{e(format_summary(summaries))}</pre></details>")
    return "\n".join(parts)


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def poster_table(rows: dict[str, dict[str, Any]]) -> str:
    """Per data set: the poster's T ratio, throughput ratio, error and NLL differences
    beside ours (:func:`flaimsim.bench.paper_table.our_row`)."""
    from flaimsim.bench.paper_table import POSTER, ratio_text

    head = ("data set", "source", "T ratio", "throughput ratio (DistAIM / FLAIM MB per "
            "client)", "Err", "NLL")
    out = []
    for name, ours in rows.items():
        p = POSTER.get(name)
        if p is not None:
            out.append((name, "poster", f"{p.t_ratio:g}x", f"{p.throughput_ratio:g}x "
                        f"({p.distaim_mb:g} / {p.flaim_mb:g})", f"{p.error_pct:g}%",
                        f"{p.nll_pct:g}%"))
        out.append((name, f"ours (T* {ours.get('distaim_T')} / {ours.get('flaim_T')})",
                    f"{_fmt(ours.get('t_ratio'), '.2g')}x",
                    f"{ratio_text(ours.get('throughput_ratio'))}x "
                    f"({_fmt(ours.get('distaim_client_mb'), '.3g')} / "
                    f"{_fmt(ours.get('flaim_client_mb'), '.3g')})",
                    f"{_fmt(ours.get('error_pct'), '+.0f')}%",
                    f"{_fmt(ours.get('nll_pct'), '+.0f')}%"))
    return html_table(head, out)


def sweep_report(out: Path) -> str:
    return page(f"flaimsim sweep: {out.name}", [
        "<h1>flaimsim sweep: DistAIM against FLAIM over T</h1>",
        sweep_section(out, f"Sweep {out.name}")])


def reproduce_report(out: Path) -> str:
    from flaimsim.bench.paper_table import our_row

    dirs = sorted(p for p in out.iterdir() if (p / "cells").is_dir())
    rows = {}
    body = ["<h1>flaimsim reproduce: the poster's trade-off</h1>"]
    for d in dirs:
        try:
            rows[d.name] = our_row(d)
        except (ValueError, KeyError, FileNotFoundError):
            continue
    body += ["<h2>The poster's table beside ours</h2>",
             poster_table(rows) if rows else "<p class=\"muted\">No data set has both "
             "DistAIM and AugFLAIM (Private) results yet.</p>"]
    body += [sweep_section(d, f"Data set {d.name}", poster=False) for d in dirs]
    return page(f"flaimsim reproduce: {out.name}", body)


def folder_kind(out: Path) -> str:
    """``run``, ``sweep`` or ``reproduce``, from the files a command leaves."""
    if (out / "result.json").is_file():
        return "run"
    if (out / "cells").is_dir() or (out / "sweep-config.json").is_file():
        return "sweep"
    if (out / "reproduce.md").is_file() or any((p / "cells").is_dir()
                                                for p in out.iterdir() if p.is_dir()):
        return "reproduce"
    raise ReportError(f"{out}: not a run, sweep or reproduce folder (no result.json, cells/ "
                      "or reproduce.md)")


def build_report(out: str | Path) -> str:
    out = Path(out)
    if not out.is_dir():
        raise ReportError(f"{out}: no such folder")
    return {"run": run_report, "sweep": sweep_report,
            "reproduce": reproduce_report}[folder_kind(out)](out)


def write_report(out: str | Path) -> Path:
    """Build and write OUT/report.html (the one place it is written)."""
    return write_text_atomic(Path(out) / "report.html", build_report(out))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="rebuild DIR/report.html from a run, sweep or "
                       "reproduce folder")
    p.add_argument("dir", help="result folder (run --out, sweep --out or reproduce --out)")
    p.add_argument("--png", default=None, metavar="FILE",
                   help="also a PNG of the page as headless Chromium shows it (needs the "
                        "system's chromium and chromium-driver, and selenium)")
    p.add_argument("--png-height", type=int, default=None, metavar="PX",
                   help="keep the top PX pixels of the PNG (default: the whole page)")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    page = write_report(args.dir)
    print(f"wrote {page}")
    if args.png:
        from flaimsim.bench.screenshot import screenshot

        print(f"wrote {screenshot(page, args.png, max_height=args.png_height)}")
    return 0


__all__ = ["build_report", "write_report", "write_run_outputs", "folder_kind", "ReportError"]
