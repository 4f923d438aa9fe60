"""DistAIM's public arithmetic (``parties.distaim.plan``): importable without MPyC, and equal to
the widths of the MPyC types the servers build from it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from flaimsim.parties.distaim import plan


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_plan_imports_no_mpyc() -> None:
    assert not [m for m in _loaded_after("import flaimsim.parties.distaim.plan")
                if m.split(".")[0] == "mpyc"]


def test_driver_does_not_import_the_mpc_runtime() -> None:
    """The driver (protocol, engines, cost model) computes the plan in the clear; importing
    ``mpyc.runtime`` would start an MPyC runtime and parse the driver's command line."""
    loaded = _loaded_after("import flaimsim.protocols.distaim, flaimsim.parties.distaim.cost_model")
    assert "mpyc.runtime" not in loaded


@pytest.mark.parametrize("max_count, frac_bits", [(1, 0), (100, 2), (50_000, 0), (2 ** 20, 8)])
def test_count_widths_match_the_servers_types(max_count: int, frac_bits: int) -> None:
    from flaimsim.parties.distaim.secure_l2 import l2_count_secint
    from flaimsim.parties.distaim.secure_scoring import count_secint

    assert plan.count_bits_for(max_count, frac_bits, "l1") == count_secint(
        max_count, frac_bits).bit_length
    assert plan.count_bits_for(max_count, frac_bits, "l2") == l2_count_secint(
        max_count, frac_bits).bit_length


@pytest.mark.parametrize("score_bound", [1.0, 255.5, 1e4, 1e7, 3.3e9])
@pytest.mark.parametrize("epsilon, sensitivity", [(0.05, 1.0), (1.0, 1.0), (0.3, 2.5)])
def test_em_widths_match_the_servers_types(score_bound: float, epsilon: float,
                                           sensitivity: float) -> None:
    from flaimsim.parties.distaim.secure_em import comparison_bits, em_fxp_type

    fxp = em_fxp_type(score_bound)
    assert (fxp.bit_length, fxp.frac_length) == (plan.em_score_bits(score_bound),
                                                 plan.EM_FRAC_BITS)
    assert plan.select_bits(score_bound, epsilon, sensitivity) == comparison_bits(
        fxp, epsilon, sensitivity)


def test_bad_public_values_are_refused() -> None:
    with pytest.raises(plan.SecureMechanismError):
        plan.em_score_bits(0.0)
    with pytest.raises(plan.SecureMechanismError):
        plan.em_scale(1.0, 0.0)
    with pytest.raises(plan.SecureScoringError):
        plan.round_public_marginal(np.array([1.0, -1.0]), 0)
    with pytest.raises(plan.SecureNoiseError):
        plan.added_variance(1.0, 3, 3)
