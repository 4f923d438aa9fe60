"""Typed options: the modes are checked once, where a RunConfig is built, and read, print and
serialise as the strings they were given (config.json, sweep cell keys and the servers' JSON
commands stay the same); DistAimOptions is the one value the engines and the cost model take."""

from __future__ import annotations

import json

import pytest

from flaimsim.mechanisms.scores import Score
from flaimsim.parties.distaim.cost_model import cache_key
from flaimsim.parties.distaim.options import DistAimOptions, MpcMode, Participation, Selection
from flaimsim.parties.mpc.sharing_modes import Sharing
from flaimsim.protocols.config import Aggregation, ConfigError, LoopMode, RunConfig
from flaimsim.protocols.distaim import secure_em_epsilon, selection_epsilon

GIVEN = dict(protocol="distaim", mpc="real", sharing="additive", score="l2", em="rnm",
             distaim_participation="poisson", aggregation="servers")


def test_modes_become_enums_and_serialise_as_their_strings() -> None:
    config = RunConfig(**GIVEN)
    assert (config.mpc, config.sharing, config.score, config.em, config.distaim_participation,
            config.aggregation, config.mode) == (
        MpcMode.REAL, Sharing.ADDITIVE, Score.L2, Selection.RNM, Participation.POISSON,
        Aggregation.SERVERS, LoopMode.FIXED)
    as_json = json.loads(json.dumps(config.to_dict()))
    assert {k: as_json[k] for k in GIVEN} == GIVEN
    assert f"{config.sharing}-{config.score}" == "additive-l2"
    # replace() goes through the same boundary
    assert config.replace(sharing="shamir").sharing is Sharing.SHAMIR


@pytest.mark.parametrize("field, bad, message", [
    ("sharing", "packed", "sharing must be 'compact', 'shamir' or 'additive', got 'packed'"),
    ("score", "l3", "score must be 'l1' or 'l2', got 'l3'"),
    ("em", "laplace", "em must be 'gumbel' or 'rnm', got 'laplace'"),
    ("mpc", "ideal", "mpc must be 'real' or 'model', got 'ideal'"),
    ("mode", "greedy", "mode must be 'fixed' or 'adaptive', got 'greedy'"),
    ("distaim_participation", "some", "distaim_participation must be 'all' or 'poisson'"),
    ("aggregation", "trusted", "aggregation must be 'secagg' or 'servers'"),
])
def test_a_bad_mode_is_named_at_the_boundary(field: str, bad: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        RunConfig(**{field: bad})
    assert str(err.value) == message


def test_the_modes_behaviour() -> None:
    assert [s.converts_to_shamir for s in Sharing] == [False if s is Sharing.SHAMIR else True
                                                     for s in Sharing]
    assert (Selection.GUMBEL.cost_op, Selection.RNM.cost_op) == ("select", "select-rnm")
    assert selection_epsilon(0.4, Selection.RNM) == (0.2, pytest.approx(0.2 ** 2 / 2),
                                                     "report-noisy-max")
    assert selection_epsilon(0.4, "gumbel") == (0.4, pytest.approx(0.4 ** 2 / 8), "exponential")
    # fixed-point slack: 8η for the EM, 4η for report-noisy-max
    gap = secure_em_epsilon(1.0, Selection.GUMBEL) - secure_em_epsilon(1.0, Selection.RNM)
    assert gap == pytest.approx(-4e-4)
    assert Participation.POISSON.counted and not Participation.ALL.counted
    assert [Score(s).order for s in ("l1", "l2")] == [1, 2]


def test_distaim_options_of_a_config() -> None:
    config = RunConfig(**GIVEN, servers=3, score_frac_bits=2)
    options = DistAimOptions.of(config, 4000)
    assert options == DistAimOptions(3, 4000, "additive", "l2", "rnm", 2)
    assert options.sharing is Sharing.ADDITIVE and options.em is Selection.RNM
    assert options.threshold == 1 and options.compact_bits == 12
    assert not options.measures_need_bits
    assert DistAimOptions(score="l1", sharing="compact").measures_need_bits
    # the cost table's key reads the same with an enum or its string
    assert cache_key(3, 4000, 1e5, 2, Score.L2, 20) == cache_key(3, 4000, 1e5, 2, "l2", 20)
