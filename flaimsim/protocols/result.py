"""What a protocol run returns: the result record (one row of result.json and sweep.csv),
the synthetic data, the communication ledger and the privacy ledger."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flaimsim.mechanisms.data import Table
from flaimsim.mechanisms.evaluation import downstream_auc, workload_error
from flaimsim.parties.ledger import Ledger
from flaimsim.protocols.aim import LoopResult
from flaimsim.protocols.config import RunConfig, stream
from flaimsim.protocols.prepare import PreparedData
from flaimsim.protocols.privacy import privacy_block

# What each client mean in a record averages over (written into every record with traffic).
CLIENT_MEANS = {
    "client_bytes_sent_mean": "all K clients (clients never sampled count as 0)",
    "client_bytes_received_mean": "all K clients (clients never sampled count as 0)",
    "client_bytes_sent_mean_participating": "clients that took part at least once",
    "client_bytes_received_mean_participating": "clients that took part at least once",
}
COMM_FIELDS = ("client_bytes_sent_mean", "client_bytes_received_mean",
               "server_bytes_sent_mean", "server_bytes_received_mean", "bytes_source",
               "comm_rounds")


@dataclass
class RunResult:
    record: dict[str, Any]
    synthetic: Table
    ledger: Ledger
    loop: LoopResult
    notes: list[str] = field(default_factory=list)
    # Protocol-specific material for tests and teaching (reveal log, secure steps, ...).
    artifacts: dict[str, Any] = field(default_factory=dict)

    def save(self, out_dir: str | Path) -> None:
        """Ledger CSV and privacy spends next to result.json (which the caller writes)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tag = f"{self.record['protocol']}-T{self.record['rounds']}-s{self.record['seed']}"
        self.ledger.write_csv(out / f"ledger-{tag}.csv")
        (out / f"privacy-{tag}.json").write_text(json.dumps(self.loop.privacy.to_records(),
                                                           indent=1))
        (out / f"privacy-events-{tag}.json").write_text(json.dumps(
            self.loop.privacy.event_records(), indent=1))


def finite_record(record: dict[str, Any]) -> dict[str, Any]:
    """NaN and ±inf become None (JSON null)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in record.items()}


def synthetic_rows(model_total: float) -> int:
    """Rows of the synthetic table: the model's noisy total, rounded, at least 1."""
    return max(1, int(round(model_total))) if math.isfinite(model_total) else 1


def build_record(config: RunConfig, data: PreparedData, loop: LoopResult, ledger: Ledger,
                 n_servers: int, wall_seconds: float, extra: dict[str, Any] | None = None
                 ) -> tuple[dict[str, Any], Table]:
    """Generate the synthetic data, evaluate it and assemble the record for result.json.

    Times ``generate_s`` (sampling the synthetic table, part of the protocol) apart from
    ``evaluate_s`` (the utility metrics, the harness's own work)."""
    # The model's total is a noisy (DP) estimate of N; the exact N would leak through |D̂|.
    rows = config.synthetic_rows or synthetic_rows(loop.model.total)
    t0 = time.perf_counter()
    synth = loop.model.synthetic(rows, int(stream(config.seed, "synthetic").integers(2**31)))
    generated = time.perf_counter()
    three_way = [c for c in data.workload.candidates if len(c) == config.workload_degree]
    comm = ledger.summary(data.federation.n_clients, n_servers) if ledger.rows else {
        k: None for k in COMM_FIELDS}
    record: dict[str, Any] = {
        "protocol": config.protocol, "dataset": config.dataset, "epsilon": config.epsilon,
        "delta": config.delta, "rounds": config.rounds, "rounds_run": loop.rounds_run,
        "seed": config.seed, "clients": data.federation.n_clients,
        "partition": data.federation.method,
        "l1_workload_error": workload_error(data.train, synth, data.workload.candidates),
        "l1_workload_error_3way": workload_error(data.train, synth, three_way),
        "nll": loop.model.nll(data.test),
        "auc": downstream_auc(synth, data.test, data.label, seed=config.seed),
        "rho_budget": loop.privacy.rho_budget, "rho_spent": loop.privacy.rho_spent,
        "sigma": loop.schedule.sigma if loop.schedule else None,
        "epsilon_select": loop.schedule.epsilon_select if loop.schedule else None,
        "measurements": len(loop.measurements),
        "synthetic_rows": synth.n,
        "selected": ["|".join(c) for rnd in loop.selected for c in rnd],
        "select_s": loop.times.select_s, "estimate_s": loop.times.estimate_s,
        "generate_s": generated - t0, "wall_seconds": wall_seconds,
        **{k: comm.get(k) for k in COMM_FIELDS}, **{k: v for k, v in comm.items()
                                                     if k not in COMM_FIELDS},
    }
    if ledger.rows:
        record["client_means_over"] = dict(CLIENT_MEANS)
        record["bytes_source_meaning"] = ("wire: counted where written to a socket; "
                                          "modelled: charged from the MPC cost table")
    record["evaluate_s"] = time.perf_counter() - generated
    record.update(extra or {})
    note = (extra or {}).get("privacy_note")
    record["privacy"] = privacy_block(config, data, loop.privacy, [note] if note else [])
    return finite_record(record), synth
