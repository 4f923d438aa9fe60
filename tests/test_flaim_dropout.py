"""FLAIM under dropouts (issue 25, item 12): a round whose secure aggregation fails is
skipped, only its Gaussians refunded (its EM charge stays), the record counts it, and the
run stops with one clear error only when no round can succeed."""

from __future__ import annotations

import pytest

from flaimsim.protocols.config import PRESETS, ConfigError, RunConfig
from flaimsim.protocols.flaim import FlaimBackend, FlaimRoundError, simulate_flaim

SMALL = dict(PRESETS["synthfs-small"], protocol="naive-flaim")
T = RunConfig(**SMALL).rounds


def test_failed_rounds_are_skipped_and_only_their_gaussians_refunded():
    # At 15% dropout some of synthfs-small's rounds lose too many shares (seed 0: 3 of 10).
    result, backend = simulate_flaim(RunConfig(**SMALL, dropout=0.15))
    failed = [r.round for r in backend.rounds if r.failed]
    assert failed and len(failed) < T
    assert result.record["failed_rounds"] == len(failed)
    spends = result.loop.privacy.to_records()
    em_rounds = sorted(s["round"] for s in spends if s["mechanism"] == "exponential")
    assert em_rounds == list(range(1, T + 1))  # every EM stays charged
    gauss_rounds = {s["round"] for s in spends if s["mechanism"] == "gaussian"}
    assert not gauss_rounds & set(failed)  # a failed round's Gaussians were refunded
    refunds = [e for e in result.loop.privacy.event_records() if e["kind"] == "refund"]
    assert {e["round"] for e in refunds} == set(failed)
    assert any("rounds failed at secure aggregation" in n for n in result.notes)


def test_round_zero_failing_every_fresh_sample_is_one_clear_error():
    with pytest.raises(FlaimRoundError, match="5 fresh samples all failed .* no round can "
                                              "succeed: lower --dropout"):
        simulate_flaim(RunConfig(**SMALL, dropout=0.5))


def test_every_later_round_failing_is_one_clear_error(monkeypatch):
    real = FlaimBackend._secure

    def fails_after_round_0(self, round, *args, **kwargs):
        if round >= 1:
            raise FlaimRoundError(round, "injected: too many dropouts")
        return real(self, round, *args, **kwargs)

    monkeypatch.setattr(FlaimBackend, "_secure", fails_after_round_0)
    with pytest.raises(ConfigError, match=f"all {T} FLAIM rounds failed .* lower --dropout"):
        simulate_flaim(RunConfig(**SMALL, dropout=0.1))
