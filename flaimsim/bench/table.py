"""The paper's communication trade-off table as text and files: the terminal and markdown
tables, the setting header and group labels, DIR/table.csv, DIR/table.md and
DIR/summary.csv, and the ``flaimsim table`` command. The numbers (best T, T ratio,
throughputs, crossover; their definitions) are :mod:`flaimsim.bench.trade_off`'s, whose
names are re-exported here.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from flaimsim.bench.network import PRESETS, Network, parse_network
from flaimsim.bench.runs import human_bytes
from flaimsim.bench.provenance import provenance
from flaimsim.bench.sweep_dir import Cell, load_cells
from flaimsim.bench.trade_off import (GroupKey, Summary, TableError, TradeOff, best_t,
                                      client_throughput, client_traffic_by_round,
                                      crossover_for, crossover_round, near_best_t,
                                      server_throughput, summarise, trade_offs)
from flaimsim.safe_output import open_atomic, write_text


# ---- formatting ----------------------------------------------------------------------------

def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _ts(ts: Sequence[int]) -> str:
    return ",".join(map(str, ts)) or "-"


def _cross(v: tuple[float | None, bool, int | None]) -> str:
    t, extrapolated, t_max = v
    if t is None:
        return "never (no per-round cost)" if t_max is not None else "-"
    return f"{'~' if extrapolated else ''}{t:.0f} (from T={t_max} runs)"


def trade_off_rows(t: TradeOff, networks: Sequence[Network]) -> list[tuple[str, str, str, str]]:
    """(metric, DistAIM, AugFLAIM (Private), comparison) rows for one group."""
    d, f = t.distaim, t.flaim
    lo, hi = t.t_ratio_range
    rows = [
        ("best T (by mean L1 W+ error)", str(d.rounds), str(f.rounds),
         f"T ratio DistAIM/FLAIM {t.t_ratio:.2f}x"),
        ("T within 1 SE of the best", _ts(t.distaim_near), _ts(t.flaim_near),
         f"T ratio range {lo:.2g}x–{hi:.2g}x"),
        ("repeats", str(d.repeats), str(f.repeats), ""),
        ("L1 workload error W+ (mean ± SE)", f"{_f(d.error, '.4f')} ± {d.error_se:.4f}",
         f"{_f(f.error, '.4f')} ± {f.error_se:.4f}",
         f"{_f(t.error_diff_pct, '+.1f')}% (FLAIM vs DistAIM)"),
        ("L1 error, 3-way marginals only", _f(d.error_3way, ".4f"), _f(f.error_3way, ".4f"),
         ""),
        ("NLL (nats/test record)", _f(d.nll, ".3f"), _f(f.nll, ".3f"),
         f"{_f(t.nll_diff, '+.3f')} nats"),
        ("client throughput (sent+recv, mean over all K)", human_bytes(d.client_bytes),
         human_bytes(f.client_bytes), f"DistAIM/FLAIM {_f(t.client_ratio, '.1f')}x"),
        ("  same, mean over participating clients only",
         human_bytes(d.client_bytes_participating), human_bytes(f.client_bytes_participating),
         ""),
        ("server side (per compute server | aggregator)", human_bytes(d.server_bytes),
         human_bytes(f.server_bytes), f"DistAIM/FLAIM {_f(t.server_ratio, '.1f')}x"),
        ("bytes source", d.bytes_source, f.bytes_source, ""),
    ]
    for n in networks:
        ds, fs = d.network_seconds.get(n.name), f.network_seconds.get(n.name)
        ratio = f"DistAIM/FLAIM {ds / fs:.1f}x" if ds is not None and fs else ""
        rows.append((f"comm. wall time, {n.describe()}", _f(ds, ".2f") + " s",
                     _f(fs, ".2f") + " s", ratio))
    rows.append(("measured wall time of the run", _f(d.wall_seconds, ".0f") + " s",
                 _f(f.wall_seconds, ".0f") + " s", ""))
    for proto, v in t.crossovers.items():
        rows.append((f"{proto}: round its client traffic reaches DistAIM's",
                     "", _cross(v), ""))
    return rows


def _render(rows: Sequence[Sequence[str]], markdown: bool) -> str:
    head = ("metric", "DistAIM", "AugFLAIM (Private)", "comparison")
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


NOTE = ("Client throughput is a client's bytes sent + received averaged over all K clients "
        "(/K; clients that never take part count as 0) or over the clients that took part at "
        "least once (/part.). Source: wire = counted on a socket, modelled = from the MPC cost "
        "table. MB = 10^6 bytes. Best T (T*) = lowest mean "
        "L1 workload error over repeats; T ratio = T*_DistAIM / T*_FLAIM (the poster's "
        "direction, >= 1 when DistAIM's best T is the larger); SE = sd / sqrt(repeats); its "
        "range runs over the T whose mean lies within one SE of each protocol's best. "
        "Comm. wall time is the network model's estimate "
        "(communication rounds counted on the wire x latency + the busiest link's bytes / "
        "bandwidth; messages where a ledger has no round counts), no compute; `flaimsim "
        "bench network` validates it against links emulated in user space. "
        "'~' marks an extrapolated crossover round.")


PARTICIPATION_LABELS = {"all": "DistAIM: all clients in round 0 (the poster's distributed "
                               "setting)",
                        "poisson": "DistAIM: cumulative Poisson participation"}


def cell_configs(out_dir: str | Path, cells: Sequence[Cell]) -> dict[str, dict[str, Any]]:
    """Each finished cell's full configuration (from ``cells/<key>.json``)."""
    import json

    out = {}
    for c in cells:
        path = Path(out_dir) / "cells" / f"{c.key}.json"
        if path.is_file():
            out[c.key] = json.loads(path.read_text()).get("config", {})
    return out


def setting_header(configs: Iterable[dict[str, Any]]) -> str:
    """Whether the cells ran in the paper's setting (``PRESETS["paper"]``), and if not, how
    they differ."""
    from flaimsim.protocols.config import PRESETS

    paper = dict(PRESETS["paper"], cluster_embedding="umap")
    configs = list(configs)
    differs = {k: sorted({str(c.get(k)) for c in configs if c.get(k) != v})
               for k, v in paper.items()}
    differs = {k: v for k, v in differs.items() if v}
    described = ("K = 100 clients, Poisson p = 0.1, δ = 1e-5, 64 random 3-way marginals "
                 "(seed 123), 80 MB model cap, cluster split (UMAP + k-means), DistAIM in "
                 "cumulative Poisson participation, α = 0.9; fits of "
                 f"{fit_iterations(configs)} mirror-descent iterations (the authors used "
                 "50/500)")
    if not differs:
        return f"Setting: the paper's (preset 'paper': {described})."
    diff = "; ".join(f"{k} = {', '.join(v)} (paper: {paper[k]})" for k, v in differs.items())
    return f"Setting: the paper's ({described}) except {diff}."


def fit_iterations(configs: Sequence[dict[str, Any]]) -> str:
    """The cells' fit iterations per round / final (RunConfig's defaults where a config
    leaves them out), with ``--fit-tol`` where set; several settings joined by " and "."""
    from flaimsim.protocols.config import RunConfig

    default = RunConfig.__dataclass_fields__
    fits = sorted({(c.get("iters_round", default["iters_round"].default),
                    c.get("iters_final", default["iters_final"].default), c.get("fit_tol"),
                    c.get("iters_budget"))
                   for c in configs} or {(default["iters_round"].default,
                                          default["iters_final"].default, None, None)},
                  key=str)
    return " and ".join(f"{r}/{f}" + (f" (fit tolerance {t})" if t is not None else "")
                        + (f" (at most {b} steps over a run's rounds)" if b is not None else "")
                        for r, f, t, b in fits)


def group_labels(items: Sequence[TradeOff], configs: dict[str, dict[str, Any]]
                 ) -> dict[GroupKey, str]:
    """Per group, how DistAIM's clients took part (from its cells' configurations)."""
    out = {}
    for t in items:
        modes = sorted({str(configs.get(k, {}).get("distaim_participation"))
                        for k in t.distaim.cells})
        options = sorted({distaim_options(configs.get(k, {})) for k in t.distaim.cells} - {""})
        out[(t.dataset, t.epsilon, t.partition)] = "; ".join(
            [PARTICIPATION_LABELS.get(m, f"DistAIM participation {m}") for m in modes]
            + options)
    return out


def distaim_options(config: dict[str, Any]) -> str:
    """DistAIM's encoding, score and mechanism, as a table label (``flaimsim bench options``
    prices each choice)."""
    if not config:
        return ""
    return (f"DistAIM {config.get('sharing', '?')} shares, {config.get('score', '?')} score, "
            f"{config.get('em', '?')} selection, {config.get('score_frac_bits', '?')} fractional "
            f"bits (cost of each choice: flaimsim bench options)")


def format_trade_offs(items: Sequence[TradeOff], networks: Sequence[Network],
                      markdown: bool = False, labels: dict[GroupKey, str] | None = None
                      ) -> str:
    parts = []
    for t in items:
        title = f"{t.dataset}, ε = {t.epsilon:g}, partition = {t.partition}"
        label = (labels or {}).get((t.dataset, t.epsilon, t.partition))
        if label:
            title += f" — {label}"
        parts.append(("### " if markdown else "== ") + title)
        parts.append(_render(trade_off_rows(t, networks), markdown))
        parts.append("")
    parts.append(NOTE)
    return "\n".join(parts)


def format_summary(summaries: Sequence[Summary], markdown: bool = False) -> str:
    """Per (group, protocol, T): error, per-client and server bytes, network times."""
    names = sorted({k for s in summaries for k in s.network_seconds})
    head = ["dataset", "ε", "partition", "protocol", "T", "n", "L1 W+", "SE", "NLL",
            "client MB /K", "client MB /part.", "server MB", "source", "rounds",
            *[f"{n} s" for n in names]]
    rows = [[s.dataset, f"{s.epsilon:g}", s.partition, s.protocol, str(s.rounds),
             str(s.repeats), _f(s.error, ".4f"), f"{s.error_se:.4f}", _f(s.nll, ".3f"),
             _f(None if s.client_bytes is None else s.client_bytes / 1e6, ".4g"),
             _f(None if s.client_bytes_participating is None
                else s.client_bytes_participating / 1e6, ".4g"),
             _f(None if s.server_bytes is None else s.server_bytes / 1e6, ".4g"),
             s.bytes_source, _f(s.comm_rounds, ".0f"),
             *[_f(s.network_seconds.get(n), ".2f") for n in names]]
            for s in summaries]
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(head)]
    return "\n".join(["  ".join(h.ljust(w) for h, w in zip(head, widths)),
                      "  ".join("-" * w for w in widths)]
                     + ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows])


def trade_off_csv_row(t: TradeOff, networks: Sequence[Network]) -> dict[str, Any]:
    d, f = t.distaim, t.flaim
    row: dict[str, Any] = {
        "dataset": t.dataset, "epsilon": t.epsilon, "partition": t.partition,
        "distaim_best_T": d.rounds, "flaim_best_T": f.rounds, "T_ratio": t.t_ratio,
        "T_ratio_min": t.t_ratio_range[0], "T_ratio_max": t.t_ratio_range[1],
        "distaim_T_within_se": _ts(t.distaim_near), "flaim_T_within_se": _ts(t.flaim_near),
        "distaim_error_se": d.error_se, "flaim_error_se": f.error_se,
        "distaim_error": d.error, "flaim_error": f.error, "error_diff_pct": t.error_diff_pct,
        "distaim_nll": d.nll, "flaim_nll": f.nll, "nll_diff": t.nll_diff,
        "distaim_client_bytes": d.client_bytes, "flaim_client_bytes": f.client_bytes,
        "client_ratio": t.client_ratio,
        "distaim_client_bytes_participating": d.client_bytes_participating,
        "flaim_client_bytes_participating": f.client_bytes_participating,
        "distaim_server_bytes_per_server": d.server_bytes,
        "flaim_aggregator_bytes": f.server_bytes, "server_ratio": t.server_ratio,
        "distaim_bytes_source": d.bytes_source, "flaim_bytes_source": f.bytes_source,
        "repeats_distaim": d.repeats, "repeats_flaim": f.repeats,
    }
    for n in networks:
        row[f"distaim_{n.name}_s"] = d.network_seconds.get(n.name)
        row[f"flaim_{n.name}_s"] = f.network_seconds.get(n.name)
    for proto, (tc, extrapolated, t_max) in t.crossovers.items():
        row[f"crossover_round_{proto}"] = tc
        row[f"crossover_extrapolated_{proto}"] = extrapolated
    return row


def write_table(out_dir: str | Path, networks: Sequence[Network] = tuple(PRESETS.values()),
                keys: Sequence[str] | None = None) -> str:
    """Write DIR/table.csv, DIR/table.md and DIR/summary.csv, each naming the code, date and
    machine that made it (``commit``, ``date``, ``machine``); return the terminal text.
    ``keys``: only these cells (default: every cell the sweep lists)."""
    prov = provenance()
    out = Path(out_dir)
    cells = load_cells(out, keys)
    if not cells:
        raise TableError(f"{out}: no finished cells")
    summaries = summarise(cells, networks)
    items = trade_offs(cells, networks)
    rows = [{**trade_off_csv_row(t, networks), **prov} for t in items]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open_atomic(out / "table.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    with open_atomic(out / "summary.csv", "w", newline="") as fh:
        srows = [{**{k: v for k, v in asdict(s).items() if k not in ("network_seconds",
                                                                      "cells")},
                  "error_se": s.error_se,
                  **{f"{k}_s": v for k, v in s.network_seconds.items()}, **prov}
                 for s in summaries]
        w = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in srows for k in r)))
        w.writeheader()
        w.writerows(srows)
    configs = cell_configs(out, cells)
    header, labels = setting_header(configs.values()), group_labels(items, configs)
    md = ["# Communication trade-off: DistAIM vs AugFLAIM (Private)", "", header, "",
          format_trade_offs(items, networks, markdown=True, labels=labels), "",
          "## Every protocol and T (means over repeats)", "",
          format_summary(summaries, markdown=True), "",
          f"Made by flaimsim commit {prov['commit']} on {prov['date']}, machine: "
          f"{prov['machine']}.", ""]
    write_text(out / "table.md", "\n".join(md))
    return (header + "\n\n" + format_trade_offs(items, networks, labels=labels)
            + "\n\nEvery protocol and T:\n" + format_summary(summaries))


def add_network_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--network", action="append", default=None, metavar="SPEC",
                   help="lan, wan or LATENCY_MS,BANDWIDTH_MBIT[,link|party] (repeatable; "
                        "default: lan and wan)")


def networks_from_args(args: argparse.Namespace) -> list[Network]:
    return [parse_network(s) for s in (args.network or ("lan", "wan"))]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("table", help="the DistAIM vs FLAIM trade-off table of a sweep")
    p.add_argument("dir", help="sweep directory")
    add_network_option(p)
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    print(write_table(args.dir, networks_from_args(args)))
    print(f"\nwrote {args.dir}/table.csv, {args.dir}/table.md and {args.dir}/summary.csv")
    return 0


__all__ = ["Summary", "TradeOff", "TableError", "summarise", "best_t", "near_best_t",
           "trade_offs",
           "client_throughput", "server_throughput", "client_traffic_by_round",
           "crossover_round", "crossover_for", "write_table", "format_trade_offs",
           "format_summary"]
