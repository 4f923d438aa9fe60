"""Issue 24: what each party learns. Charges before every opening (the contributor count),
the KLS slack reserved in the schedule, wrapped arrays never opened, the synthetic table's
size, per-party knowledge in every result."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flaimsim.mechanisms.accounting import PrivacyLedger
from flaimsim.protocols.config import RunConfig

TINY = dict(dataset="synthfs", clients=6, synthfs_features=4, synthfs_records=40, max_bins=5,
            workload_marginals=3, rounds=2, iters_round=20, iters_final=40, seed=5)


class OpensOnlyWhenCharged:
    """A secure engine whose opening checks the ledger: a charge for it must be unreleased."""

    def __init__(self, privacy: PrivacyLedger) -> None:
        self.privacy, self.opened = privacy, 0

    def measure(self, round, offset, length, sigma):
        charged = [e.seq for e in self.privacy.events if e.kind == "charge"
                   and e.mechanism == "gaussian" and e.detail == "contributor count"]
        released = {e.charge for e in self.privacy.events if e.kind == "release"}
        assert set(charged) - released, "the count was opened before its charge"
        self.opened += 1
        return np.full(length, 3, dtype=np.int64), 1.0


def test_contributor_count_is_charged_with_slack_before_it_is_opened():
    """Fails on the code before issue 24 (it opened the count, then charged it, no release)."""
    from flaimsim.protocols.distaim import ContributorCount
    from flaimsim.protocols.prepare import prepare

    data = prepare(RunConfig(protocol="distaim", **TINY))
    lengths = np.array([data.workload.n_cells(c) for c in data.workload.answered])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    count = ContributorCount(data.workload, offsets, lengths, 2, 240)
    privacy = PrivacyLedger(10.0)
    engine = OpensOnlyWhenCharged(privacy)
    count.release(engine, 0, 1.0, True, privacy, honest=2)
    assert engine.opened == 1
    kinds = [(e.kind, e.mechanism) for e in privacy.events]
    assert kinds == [("charge", "gaussian"), ("charge", "dgauss-sum-slack"),
                     ("release", "gaussian")]
    privacy.check_order()


@pytest.mark.parametrize("epsilon", [20.0, 50.0])
def test_a_distaim_run_that_starts_finishes_within_budget(epsilon):
    """The schedule reserves KLS21's worst-case slack (measurements, and counts in poisson
    mode), so the last round's slack never overdraws ρ. Before issue 24 the schedule spent ρ
    exactly and these runs raised BudgetError in a late round."""
    from flaimsim.protocols.distaim import run_distaim

    cfg = RunConfig(protocol="distaim", mpc="model", epsilon=epsilon,
                    distaim_participation="poisson", participation=0.5,
                    **{**TINY, "rounds": 10})
    res = run_distaim(cfg)
    privacy = res.loop.privacy
    assert privacy.rho_spent <= privacy.rho_budget * (1 + 1e-9)
    assert res.loop.rounds_run == 10
    slack = privacy.rho_by_mechanism()["dgauss-sum-slack"]
    assert slack > 0        # the slack is real at this ε, and was paid within the budget


def test_reserved_schedule_leaves_room_for_the_worst_case_slack():
    from flaimsim.mechanisms.accounting import AimSchedule, cdp_rho
    from flaimsim.protocols.distaim import slack_reserve
    from flaimsim.protocols.prepare import prepare

    cfg = RunConfig(protocol="distaim", epsilon=50.0, **{**TINY, "rounds": 10})
    reserve = slack_reserve(cfg, prepare(cfg).workload)
    rho = cdp_rho(cfg.epsilon, cfg.delta)
    n = 10 + 4
    plain = AimSchedule.fixed(rho, 10, n, 0.9)
    reserved = AimSchedule.reserving(rho, 10, n, 0.9, reserve)
    assert plain.total_cost + reserve(plain.sigma) > rho        # the old schedule overdraws
    assert reserved.total_cost + reserve(reserved.sigma) <= rho * (1 + 1e-12)
    assert reserved.total_cost > 0.3 * rho   # KLS21's τ²d/2 term is most of the rest here


def test_no_opening_path_takes_a_wrapped_array():
    """open, open_to, and distaim_measure outside the decomposition refuse s = x + w·2^b;
    distaim_prepare keeps the mark (its array still holds s). Fails before issue 24: open_to
    never checked, and distaim_prepare dropped the mark."""
    from mpyc.runtime import mpc

    from flaimsim.parties.distaim import server_commands  # noqa: F401  (registers them)
    from flaimsim.parties.distaim.secure_scoring import count_secint
    from flaimsim.parties.mpc.server import COMMANDS, CommandError, ServerState

    b = 6
    x = np.array([3, 0, 63, 17, 5])
    w = np.array([1, 2, 0, 1, 2])                 # wrap counts: they depend on the shares
    stype = count_secint((1 << b) - 1)
    state = ServerState(runtime=mpc, secint=stype)
    state.arrays["s"] = stype.array(x + w * (1 << b))
    state.extras["wrapped"] = {"s": b}

    def run(cmd, **kw):
        return mpc.run(COMMANDS[cmd](state, **kw))

    with pytest.raises(CommandError, match="wrapped"):
        run("open", name="s")
    with pytest.raises(CommandError, match="wrapped"):
        run("open_to", name="s", host="127.0.0.1", port=9, receiver=0)
    run("distaim_prepare", name="s", max_count=(1 << b) - 1, anchor=[0, 5])
    assert state.extras["wrapped"] == {"s": b}
    with pytest.raises(CommandError, match="wrapped"):
        run("open", name="s")
    with pytest.raises(CommandError, match="wrapped"):
        run("open_to", name="s", host="127.0.0.1", port=9, receiver=0)
    state.arrays["t"] = state.arrays["s"]          # another name, no decomposition: refused
    state.extras["wrapped"]["t"] = b
    with pytest.raises(CommandError, match="wrapped"):
        run("distaim_measure", name="t", offset=0, length=5, sigma=2.0)
    # the decomposition's x is what a measurement opens, not s
    out = run("distaim_measure", name="s", offset=0, length=5, sigma=0.5)
    assert np.all(np.abs(np.asarray(out["values"]) - x) < 32)


def test_synthetic_table_has_the_models_noisy_total_not_n():
    from flaimsim.protocols.central import run_central

    res = run_central(RunConfig(protocol="central", **TINY))
    n = res.loop.model.total
    assert res.synthetic.n == max(1, round(n)) == res.record["synthetic_rows"]
    from flaimsim.protocols.prepare import prepare

    assert res.synthetic.n != prepare(RunConfig(protocol="central", **TINY)).train.n


def test_record_bound_error_does_not_print_n():
    from flaimsim.protocols.config import ConfigError
    from flaimsim.protocols.prepare import RecordBound, check_record_bound

    with pytest.raises(ConfigError) as err:
        check_record_bound(RecordBound(100, True, "--max-records"), 4321)
    assert "4321" not in str(err.value) and "record bound 100" in str(err.value)


def _flaim_audit(**kw):
    from flaimsim.parties.ledger import Ledger
    from flaimsim.protocols.aim import run_fixed
    from flaimsim.mechanisms.model import GraphicalModel
    from flaimsim.protocols.flaim import FlaimBackend
    from flaimsim.protocols.prepare import prepare

    base = dict(protocol="naive-flaim", dataset="synthfs", clients=10, synthfs_features=5,
                synthfs_records=40, max_bins=4, workload_marginals=6, rounds=4,
                participation=0.4, iters_round=30, iters_final=30, seed=2)
    config = RunConfig(**{**base, **kw})
    data = prepare(config)
    backend = FlaimBackend(config, data, "naive", Ledger("t", config.protocol), audit=True)
    model = GraphicalModel.for_table(data.train, config.iters_round, config.iters_final)
    loop = run_fixed(config, data.workload, model, backend)
    return backend, loop


@pytest.mark.parametrize("noise", ["central", "distributed"])
def test_the_aggregators_view_is_never_one_clients_exact_vector(noise):
    """Issue 24's lone chooser: before, a cover joined with zeros and the unmasked sum was
    the chooser's exact marginal. Now every sum the aggregator unmasks is over >= 2 real
    vectors, or carries the group's noise shares."""
    backend, loop = _flaim_audit(flaim_noise=noise)
    lone = [r for r in backend.records if r.phase == "choice" and len(r.contributors) == 1]
    assert lone, "the setting must produce lone choosers to test anything"
    for rec in backend.records:
        own = [backend.clients[k].marginal(rec.clique) if rec.phase == "choice"
               else backend.clients[k].one_way(rec.clique[0]) for k in rec.contributors]
        for k, vec in zip(rec.contributors, own):
            assert not np.array_equal(rec.exact_sum, vec), (rec.round, rec.clique, k)
        if noise == "distributed" or len(rec.contributors) < 2:
            assert rec.noise_shares == len(rec.contributors) + len(rec.covers)
    kinds = loop.privacy.rho_by_mechanism()
    assert loop.privacy.rho_spent <= loop.privacy.rho_budget * (1 + 1e-9)
    assert "dgauss-sum-slack" in kinds


@pytest.mark.parametrize("options,role,present,absent", [
    (dict(protocol="naive-flaim"), "aggregator", "exact sum of each chosen marginal over its "
     ">= 2 choosers", "noisy sums only"),
    (dict(protocol="naive-flaim", flaim_noise="distributed"), "aggregator", "noisy sums only",
     "exact sum"),
    (dict(protocol="aug-flaim-oracle"), "aggregator", "NOT private", "noisy sums only"),
    (dict(protocol="distaim"), "compute_server", "selected index", "EVERY client"),
    (dict(protocol="distaim", servers=2), "compute_server", "EVERY client", "any 1 server"),
    (dict(protocol="distaim", distaim_participation="poisson"), "compute_server",
     "noisy count", "EVERY client"),
    (dict(protocol="naive-flaim", aggregation="servers"), "compute_server", "Shamir shares",
     "no compute servers"),
    (dict(protocol="central"), "aggregator", "every record", "noisy"),
])
def test_knowledge_follows_the_options(options, role, present, absent):
    from flaimsim.protocols.knowledge import ROLES, knowledge

    k = knowledge(RunConfig(**options))
    assert tuple(k) == ROLES and all(isinstance(v, list) and v for v in k.values())
    text = " | ".join(k[role])
    assert present in text and absent not in text
    assert any("noisy total" in s for s in k["downstream"])   # never the exact N


def test_result_json_lists_knowledge_and_the_mpc_delta_term():
    import json

    from flaimsim.protocols.distaim import run_distaim

    res = run_distaim(RunConfig(protocol="distaim", mpc="model", **TINY))
    block = json.loads(json.dumps(res.record["privacy"]))
    assert set(block["knowledge"]) == {"client", "compute_server", "aggregator", "downstream"}
    kappa = block["security_terms"]["mpyc_sec_param"]
    u = block["security_terms"]["masked_openings_bound"]
    assert block["delta_terms"]["mpc-statistical"] == pytest.approx(
        (1 + math.exp(block["epsilon"])) * u * 2.0 ** -kappa)
    assert block["delta_terms"]["mpc-statistical"] <= block["delta_target"] / 10
    # κ one lower would not meet δ/10: the default is the smallest that does
    assert (1 + math.exp(block["epsilon"])) * u * 2.0 ** -(kappa - 1) > block["delta_target"] / 10


@pytest.mark.parametrize("participation", ["all", "poisson"])
def test_masked_openings_bound_covers_what_the_servers_count(participation):
    """The plan's bound U must not be below the masked elements the real servers opened
    (counted by the opening counter at server 0), or the δ term would understate."""
    from flaimsim.protocols.distaim import run_distaim
    from flaimsim.protocols.mpc_security import masked_openings_bound
    from flaimsim.protocols.prepare import prepare

    cfg = RunConfig(protocol="distaim", mpc="real", distaim_participation=participation,
                    participation=0.5, mpc_security=30, **{**TINY, "rounds": 2})
    res = run_distaim(cfg)
    data = prepare(cfg)
    counted = res.record["masked_openings"]["elements"]
    bound = masked_openings_bound(cfg, data.workload, data.record_bound.value)
    assert 0 < counted <= bound


def test_flaim_bill_prices_each_noise_option_on_the_wire():
    from flaimsim.bench.flaim_bill import flaim_bill, format_flaim_bill

    cfg = RunConfig(protocol="naive-flaim", dataset="synthfs", clients=8, synthfs_features=4,
                    synthfs_records=40, max_bins=4, workload_marginals=3, rounds=2,
                    participation=0.5, iters_round=20, iters_final=20, seed=3)
    rows = flaim_bill(cfg, alternatives=[({"flaim_noise": "distributed"}, "shares")])
    base, dist = rows
    assert base.source == dist.source == "wire"
    assert dist.noise_share_sessions == dist.sessions > base.noise_share_sessions
    # the same sessions and choices; distributed pays wider SecAgg+ words only
    assert dist.secure_bytes > base.secure_bytes and dist.broadcast_bytes > 0
    assert "distributed" in format_flaim_bill(rows)


def test_servers_run_at_the_runs_kappa_or_are_refused(monkeypatch):
    from flaimsim.parties.distaim import engines
    from flaimsim.parties.ledger import Ledger
    from flaimsim.parties.mpc import launcher

    from flaimsim.parties.distaim.options import DistAimOptions

    eng = engines.MpcEngine(Ledger(), DistAimOptions(3, 100, sec_param=40))
    try:
        assert {i["sec_param"] for i in eng.launcher.info} == {40}
        wide = eng.element_bytes
    finally:
        eng.close()
    real = engines.connect_servers
    monkeypatch.setattr(engines, "connect_servers", lambda m, at, **o: real(
        m, at, **{k: v for k, v in o.items() if k != "sec_param"}))   # servers at MPyC's 30
    with pytest.raises(launcher.LauncherConfigError, match="security parameter"):
        engines.MpcEngine(Ledger(), DistAimOptions(3, 100, sec_param=40))
    monkeypatch.undo()
    eng = engines.MpcEngine(Ledger(), DistAimOptions(3, 100))
    try:
        assert eng.element_bytes < wide        # κ widens the field: that is its byte cost
    finally:
        eng.close()
