"""FLAIM under dropouts (issue 25, item 12): a round whose secure aggregation fails is
skipped, only its Gaussians refunded (its EM charge stays), the record counts it, and the
run stops with one clear error only when no round can succeed."""

from __future__ import annotations

import pytest

from flaimsim.protocols.config import PRESETS, ConfigError, RunConfig
from flaimsim.protocols.flaim import FlaimBackend, FlaimRoundError, simulate_flaim

SMALL = dict(PRESETS["synthfs-small"], protocol="naive-flaim")
T = RunConfig(**SMALL).rounds


@pytest.mark.parametrize("protocol", ["naive-flaim", "aug-flaim-private"])
def test_at_30_percent_dropout_most_rounds_succeed(protocol):
    # Every session of a round runs over the whole sample with the majority threshold
    # t = floor(k/2) + 1: round(0.3·|S|) dropouts leave enough shares whenever 2d < |S| - 1
    # (seeds 0-2: no round fails). Before (groups of 4, t = ceil(2k/3)) 10, 9, 10 of 10 failed.
    result, backend = simulate_flaim(RunConfig(**dict(SMALL, protocol=protocol),
                                               dropout=0.3, rounds=5))
    assert result.record["late_dropouts"] > 0  # dropouts were exercised
    assert result.record["failed_rounds"] < 5 / 2
    assert sum(not r.failed for r in backend.rounds if r.round > 0) > 5 / 2


def test_the_default_threshold_is_the_majority_of_the_neighbours():
    from flaimsim.parties.secagg.protocol import DEFAULT_THRESHOLD, resolve_threshold

    assert [resolve_threshold(DEFAULT_THRESHOLD, k) for k in (1, 2, 3, 8, 9)] == [1, 2, 2, 5, 5]


def test_failed_rounds_are_skipped_and_only_their_gaussians_refunded():
    # At 40% dropout a sample of 9 loses 4 (2d = 8 >= |S| - 1, too few shares): seed 1
    # fails 5 of 10 rounds.
    result, backend = simulate_flaim(RunConfig(**SMALL, dropout=0.4, seed=1))
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
    # round(|S|/2) dropped always leave a live client fewer than t = floor(k/2) + 1 shares
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
