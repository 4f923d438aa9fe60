"""Running protocols for the command line and sweeps: one or more protocols on one prepared
data set, result.json / config.json writing, and the short comparison table."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from flaimsim.parties.distaim.options import MpcMode
from flaimsim.protocols import RunConfig, runner
from flaimsim.protocols.central import reference_record
from flaimsim.protocols.prepare import prepare
from flaimsim.protocols.result import RunResult
from flaimsim.safe_output import OutFolder

TABLE_COLUMNS = (
    ("protocol", "protocol", "{}"),
    ("rounds", "T", "{}"),
    ("l1_workload_error", "L1 W+", "{:.4f}"),
    ("l1_workload_error_3way", "L1 3-way", "{:.4f}"),
    ("nll", "NLL", "{:.3f}"),
    ("auc", "AUC", "{:.3f}"),
    ("rho_spent", "rho spent", "{:.4g}"),
    ("client_bytes_sent_mean", "client sent /K", "bytes"),
    ("client_bytes_received_mean", "client recv /K", "bytes"),
    ("client_bytes_sent_mean_participating", "sent /part.", "bytes"),
    ("client_bytes_received_mean_participating", "recv /part.", "bytes"),
    ("server_sent", "server sent", "bytes"),
    ("server_received", "server recv", "bytes"),
    ("bytes_source", "source", "{}"),
    ("comm_rounds", "rounds", "{}"),
    ("wall_seconds", "wall s", "{:.1f}"),
    ("evaluate_s", "of it eval s", "{:.1f}"),
)


def human_bytes(n: float | None) -> str:
    """MB means 10^6 bytes everywhere."""
    if n is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def _server_view(r: dict[str, Any]) -> dict[str, Any]:
    """Server-side traffic: mean per MPC compute server, or the FL aggregator's."""
    sent = r.get("server_bytes_sent_mean")
    received = r.get("server_bytes_received_mean")
    if sent is None and r.get("aggregator_bytes_sent") is not None:
        sent, received = r.get("aggregator_bytes_sent"), r.get("aggregator_bytes_received")
    return {**r, "server_sent": sent, "server_received": received}


TABLE_LEGEND = ("client /K: mean over all K clients (never-sampled ones count as 0); "
                "/part.: mean over the clients that took part at least once; "
                "source: wire = counted on a socket, modelled = from the MPC cost table; "
                "rounds: communication rounds on the critical path (docs/rounds.md); "
                "wall s: the protocol's run; of it eval s: the utility metrics (L1, NLL, AUC), "
                "the harness's work, not the protocol's")


def reference_rows(reference: dict[str, Any]) -> list[dict[str, Any]]:
    """The reference figures (:func:`~flaimsim.protocols.central.reference_record`) as rows
    of the comparison table."""
    return [{"protocol": "ref: real train data", "auc": reference.get("auc_real_data")},
            {"protocol": "ref: one-way only",
             **{key: reference.get(f"oneway_{key}") for key in (
                 "l1_workload_error", "l1_workload_error_3way", "nll", "auc", "rho_spent")}}]


def reference_notes(reference: dict[str, Any]) -> list[str]:
    """How to read the reference rows, and whether the workload covers the label."""
    label, n, m = (reference.get(k) for k in ("label", "label_in_workload",
                                              "workload_marginals"))
    coverage = (f"label {label!r} is in {n} of the {m} workload marginals" if n else
                f"label {label!r} is in none of the {m} workload marginals: AIM is not asked "
                "to keep its relation to the other attributes, so an AUC near 0.5 is expected")
    return [coverage, "reference rows read the real data and are not private; the one-way "
            "baseline spends the same (ε, δ) on the one-way marginals alone"]


TERMINAL_WIDTH = 120
# The terminal's columns (keys of TABLE_COLUMNS, with shorter heads): what fits 120
# characters, communication rounds included once the table has them; --wide and the files
# (table.csv/md) carry every column.
NARROW_COLUMNS = {"protocol": "protocol", "rounds": "T", "l1_workload_error": "L1 W+",
                  "nll": "NLL", "auc": "AUC", "client_bytes_sent_mean": "cl. sent",
                  "client_bytes_received_mean": "cl. recv", "server_sent": "srv sent",
                  "server_received": "srv recv", "bytes_source": "source",
                  "comm_rounds": "rounds", "wall_seconds": "wall s"}
NARROW_LEGEND = ("cl. sent/recv: a client's bytes, mean over all K clients (never-sampled "
                 "ones count as 0); srv: the mean MPC compute server, or the aggregator; "
                 "source: wire = counted on a socket, modelled = from the MPC cost table; "
                 "wall s: the protocol's run. Every column: --wide, or table.csv/md in --out")


def _wrap(text: str, width: int = TERMINAL_WIDTH) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, subsequent_indent="  ") or [""]


def fit_width(text: str, width: int = TERMINAL_WIDTH) -> str:
    """Every line of ``text`` wrapped to ``width`` characters (continuations indented)."""
    return "\n".join(w for line in text.splitlines() for w in _wrap(line, width))


def format_header(config: RunConfig, preset: str | None, data: dict[str, Any]) -> str:
    """The settings that decide a run's cost, with the preset they started from;
    ``data`` is :meth:`PreparedData.describe`. Lines of at most 120 characters."""
    mpc = f"mpc {config.mpc}, {config.servers} servers"
    parts = (f"K = {data['clients']} clients ({config.partition}), p = "
             f"{config.participation:g}", f"W = {data['workload_marginals']} marginals, "
             f"W+ = {data['candidates']} candidates, {data['cells']:,} cells",
             f"T = {config.rounds}", f"ε = {config.epsilon:g}, δ = {config.delta:g}", mpc)
    lines = [f"preset {preset or '-'}: {config.dataset} ({data['train_records']} train / "
             f"{data['test_records']} test records, label {data['label']!r})", ""]
    for part in parts:
        joined = f"{lines[-1]} | {part}" if lines[-1] else part
        if len(joined) > TERMINAL_WIDTH:
            lines.append(part)
        else:
            lines[-1] = joined
    return "\n".join(lines)


def table_cells(records: Sequence[dict[str, Any]], reference: dict[str, Any] | None = None,
                wide: bool = True) -> tuple[list[str], list[list[str]]]:
    """The comparison table's head and formatted rows (protocols', then the reference's);
    ``wide``: every column of :data:`TABLE_COLUMNS`, else the terminal's."""
    columns = [(k, h if wide else NARROW_COLUMNS[k], f) for k, h, f in TABLE_COLUMNS
               if wide or k in NARROW_COLUMNS]
    extra = reference_rows(reference) if reference is not None else []
    rows = []
    for r in map(_server_view, [*records, *extra]):
        row = []
        for key, _, fmt in columns:
            v = r.get(key)
            if v is None:
                row.append("-")
            elif fmt == "bytes":
                row.append(human_bytes(v))
            else:
                row.append(fmt.format(v))
        rows.append(row)
    return [h for _, h, _ in columns], rows


def format_table(records: Sequence[dict[str, Any]],
                 reference: dict[str, Any] | None = None, wide: bool = False) -> str:
    """The comparison table; "server" is the mean MPC compute server, or the aggregator.
    With ``reference``, its rows follow the protocols' under a rule, then its notes; the
    legend says which client mean is which and what ``source`` means. Unless ``wide``, the
    terminal's columns only, every line at most 120 characters."""
    head, rows = table_cells(records, reference, wide)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(head)]
    rule = "  ".join("-" * w for w in widths)
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
              for r in rows[:len(records)]]
    notes = []
    if reference is not None:
        lines.append(rule)
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                  for r in rows[len(records):]]
        notes = [f"note: {n}" for n in reference_notes(reference)]
    legend = TABLE_LEGEND if wide else NARROW_LEGEND
    if wide:
        return "\n".join(lines + notes + [legend])
    return "\n".join(lines + [fit_width("\n".join(notes + [legend]))])


def format_table_markdown(records: Sequence[dict[str, Any]],
                          reference: dict[str, Any] | None = None) -> str:
    """Every column of the comparison table as a Markdown table, then the notes."""
    head, rows = table_cells(records, reference, wide=True)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    notes = reference_notes(reference) if reference is not None else []
    return "\n".join(lines + [""] + [f"- {n}" for n in notes + [TABLE_LEGEND]])


def progress_callback(total: int, desc: str, every_s: float = 30.0):
    """A tqdm bar over rounds on a terminal, its clock refreshed every second; elsewhere (a
    log file) a line every ``every_s`` seconds whether or not a round ended (round 0, a long
    round and the final fit included), so that a long run is never silent."""
    import threading
    import time

    stop = threading.Event()
    start, done = time.monotonic(), [0]
    if not sys.stderr.isatty():
        def beat() -> None:
            while not stop.wait(every_s):
                print(f"{desc}: round {done[0]}/{total} done, {time.monotonic() - start:.0f} s",
                      file=sys.stderr, flush=True)
        update = lambda t: done.__setitem__(0, t)  # noqa: E731
        close = stop.set
    else:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit="round", leave=False)

        def beat() -> None:
            while not stop.wait(1.0):
                bar.refresh()
        update = lambda t: bar.update(1)  # noqa: E731

        def close() -> None:
            stop.set()
            thread.join()
            bar.close()
    thread = threading.Thread(target=beat, name=f"progress-{desc}", daemon=True)
    thread.start()
    return update, close


@dataclass(frozen=True)
class RunSet:
    """Protocols run on one prepared data set, with the reference figures computed once."""

    config: RunConfig
    preset: str | None
    data: dict[str, Any]  # PreparedData.describe()
    reference: dict[str, Any]  # protocols.central.reference_record
    results: list[RunResult]

    def header(self) -> str:
        return format_header(self.config, self.preset, self.data)

    def table(self, wide: bool = False) -> str:
        return format_table([r.record for r in self.results], self.reference, wide)


def run_protocols(base: RunConfig, protocols: Iterable[str], out_dir: str | Path | None = None,
                  force: bool = False) -> list[RunResult]:
    """Run each protocol on the same prepared data; write config.json and result.json."""
    return run_set(base, protocols, out_dir, force=force).results


def run_set(base: RunConfig, protocols: Iterable[str], out_dir: str | Path | None = None,
            preset: str | None = None, force: bool = False) -> RunSet:
    """Run each protocol on the same prepared data, compute the reference figures once and
    add them to every record.

    With ``out_dir``: the folder is claimed before anything runs
    (:meth:`~flaimsim.safe_output.OutFolder.claim`: locked, probed, an earlier run refused
    without ``force``); config.json is written once the data are prepared, and each
    protocol's ledger, privacy files and an updated result.json (with a ``reference``
    block; ``complete`` false until the last protocol) as soon as it finishes, so that a
    later failure keeps the earlier records; a failure is recorded under ``failed``."""
    from flaimsim.parties.mpc import warm_start

    protocols = list(protocols)
    out = OutFolder.claim(out_dir, force=force) if out_dir is not None else None
    results: list[RunResult] = []
    try:
        try:
            data = prepare(base)
            if "distaim" in protocols and base.mpc is MpcMode.REAL \
                    and not base.server_addresses:
                # DistAIM's servers import and connect while earlier protocols run; at the
                # run's κ, which the default derives from the prepared workload.
                from flaimsim.parties.distaim.engines import launcher_options
                from flaimsim.protocols.mpc_security import mpyc_option, resolve_kappa
                from flaimsim.protocols.prepare import wire_record_bound

                kappa = resolve_kappa(base, data.workload, wire_record_bound(data))
                warm_start.prestart_servers(base.servers, **launcher_options(
                    base.party_timeout_s, mpyc_option(kappa), base.network_spec,
                    base.server_ports()))
            described = data.describe()
            resolved = {**asdict(base), "preset": preset, "protocols": protocols,
                        "data": described}
            if out is not None:
                out.write_json("config.json", resolved)
            reference = reference_record(base, data)
            if out is not None:  # the references alone, until the first record joins them
                _write_result(out, resolved, reference, results, protocols)
            for name in protocols:
                config = base.replace(protocol=name)
                update, close = progress_callback(config.rounds, name)
                try:
                    if config.network is not None:   # twice: without and with the links
                        from flaimsim.bench.emulated import run_on_network
                        result = run_on_network(config, data, update)
                    else:
                        result = runner(name)(config, data=data, progress=update)
                except BaseException as exc:
                    if out is not None and results:
                        _write_result(out, resolved, reference, results, protocols,
                                      failed={"protocol": name,
                                              "error": f"{type(exc).__name__}: {exc}"})
                        print(f"flaimsim: kept the finished protocols' records "
                              f"({', '.join(r.record['protocol'] for r in results)}) in "
                              f"{out.path / 'result.json'}", file=sys.stderr)
                    raise
                finally:
                    close()
                result.record.update(reference)
                results.append(result)
                if out is not None:
                    result.save(out.path)
                    _write_result(out, resolved, reference, results, protocols)
        finally:
            warm_start.release_prestarted()
    finally:
        if out is not None:
            out.release()
    return RunSet(base, preset, described, reference, results)


def _write_result(out: OutFolder, resolved: dict[str, Any], reference: dict[str, Any],
                  results: Sequence[RunResult], protocols: Sequence[str],
                  failed: dict[str, str] | None = None) -> None:
    """result.json with the records finished so far (atomically replacing the last one)."""
    done = len(results)
    doc: dict[str, Any] = {"config": resolved, "reference": reference,
                           "results": [r.record for r in results],
                           "complete": done == len(protocols) and failed is None,
                           "pending": list(protocols[done + (failed is not None):])}
    if failed is not None:
        doc["failed"] = failed
    out.write_json("result.json", doc)
