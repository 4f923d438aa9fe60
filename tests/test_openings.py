"""Openings checked from outside the commands: the server program's runtime hook counts every
``output`` call; an extra opening through the runtime is caught, the reveal log is not asked."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from flaimsim.parties.mpc.input_sharing import share_inputs
from flaimsim.parties.mpc.launcher import ServerLauncher
from flaimsim.parties.mpc.openings import (Opening, OpeningCounter, OpeningViolation, Rule,
                                           check_openings, fetch_openings)
from flaimsim.parties.fl.server_aggregation import OPENING_RULES
from flaimsim.parties.transport import ClientTransport

pytestmark = pytest.mark.timeout(180)


def _o(seq: int, call: int, command: str, elements: int = 1, receivers=None) -> Opening:
    return Opening(seq, call, command, "test.caller", elements, receivers)


def test_rules_allow_what_they_name_and_nothing_else():
    rules = {"open_to": Rule(count=1, receivers=(0,)), "select": Rule(max_elements=1)}
    check_openings([_o(0, 4, "open_to", 10, (0,)), _o(1, 5, "select"), _o(2, 6, "open_to", 3, (0,))],
                   rules)
    for bad in ([_o(0, 4, "open_to", 10, None)],                   # to every server
                [_o(0, 4, "open_to", 1, (0,)), _o(1, 4, "open_to", 1, (0,))],  # twice in a call
                [_o(0, 5, "select", 2)],                            # too many elements
                [_o(0, 7, "score", 1)]):                            # a command with no rule
        with pytest.raises(OpeningViolation):
            check_openings(bad, rules)
    with pytest.raises(OpeningViolation, match="expected 4"):
        check_openings([_o(0, 1, "select")], {"select": Rule()}, elements=lambda o: 4)


def test_counter_separates_mpyc_internal_openings():
    class FakeRuntime:
        def output(self, x, receivers=None, threshold=None, raw=False):
            return ("opened", x, receivers)

    rt, counter = FakeRuntime(), OpeningCounter()
    counter.install(rt)
    counter.start_command(3, "open_to")
    opened = rt.output(np.zeros((2, 5)), receivers=[0])  # the original still runs
    assert opened[0] == "opened" and opened[2] == [0]
    glb = {"__name__": "mpyc.runtime", "rt": rt}
    exec("rt.output([1, 2])", glb)  # a call from inside MPyC: a masked value, not listed
    assert [(o.call, o.command, o.elements, o.receivers) for o in counter.openings] == [
        (3, "open_to", 10, (0,))]
    assert counter.internal == 1 and counter.internal_elements == 2   # counted, with elements
    with pytest.raises(RuntimeError, match="already installed"):
        counter.install(rt)


def test_an_extra_opening_through_the_runtime_is_caught(monkeypatch):
    tests_dir = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [tests_dir, *filter(None, [os.environ.get("PYTHONPATH")])]))
    vectors = {k: np.arange(6) + k for k in range(3)}
    with ServerLauncher(m=3, load=["leaky_commands"]).start() as servers, \
            ClientTransport(servers.client_addresses) as transport:
        share_inputs(servers, transport, vectors, "x", "shamir")
        out = servers.call("leaky_sum", name="x")
        assert out[0]["sum"] == int(sum(v[0] + v[1] for v in vectors.values()))
        # the command's own reveal log shows one opening: it hides the extra one
        assert [r["name"] for r in servers.reveal_log()] == ["sum"]
        per_server = fetch_openings(servers.call)
    assert all([o.elements for o in opened] == [3, 1] for opened in per_server)
    assert all({o.command for o in opened} == {"leaky_sum"} for opened in per_server)
    with pytest.raises(OpeningViolation, match="opening 2 in one call"):
        check_openings(per_server[0], {"leaky_sum": Rule(count=1)})
    with pytest.raises(OpeningViolation, match="may open nothing"):
        check_openings(per_server[0], OPENING_RULES)
