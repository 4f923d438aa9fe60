"""Communication rounds: Lamport stamps from round logs, their charge to ledger rows, SecAgg+'s
rounds per session, and rounds counted on a real DistAIM run."""

from __future__ import annotations

import numpy as np
import pytest

from flaimsim.parties.ledger import Ledger
from flaimsim.parties.rounds import (LamportClocks, RoundLogError, block_charge,
                                     message_stamps, received_event, sent_event, step_rounds)

S, R = sent_event, received_event


def test_chain_of_three_parties_is_three_rounds_deep():
    """0 -> 1, then 1 -> 2, then 2 -> 0: each message waits for the one before."""
    logs = [[S(1, 10), R(2, 12)],
            [R(0, 10), S(2, 11)],
            [R(1, 11), S(0, 12)]]
    stamps = message_stamps(logs)
    assert stamps == {(0, 1, 10): 1, (1, 2, 11): 2, (2, 0, 12): 3}
    assert step_rounds(stamps) == (3, {(2, 0): 3})


def test_parallel_fan_out_and_replies_is_two_rounds():
    """Everyone sends to everyone at once (one round), then replies after reading (a
    second): the depth is 2 however many messages there are."""
    logs = []
    for p in range(3):
        peers = [q for q in range(3) if q != p]
        logs.append([S(q, 1) for q in peers] + [R(q, 1) for q in peers]
                    + [S(q, 2) for q in peers] + [R(q, 2) for q in peers])
    stamps = message_stamps(logs)
    assert len(stamps) == 12
    assert {s for (a, b, pc), s in stamps.items() if pc == 1} == {1}
    assert {s for (a, b, pc), s in stamps.items() if pc == 2} == {2}
    depth, charged = step_rounds(stamps)
    assert depth == 2 and charged == {(0, 1): 2}   # one row carries the step's depth


def test_send_before_a_receive_does_not_depend_on_it():
    """A send logged before a receive keeps the older clock (program order matters)."""
    logs = [[S(1, 1), S(1, 2)], [S(0, 3), R(0, 1), R(0, 2)]]
    assert message_stamps(logs) == {(0, 1, 1): 1, (0, 1, 2): 1, (1, 0, 3): 1}


def test_receive_from_an_earlier_step_counts_as_zero_and_bad_logs_raise():
    assert message_stamps([[R(1, 99), S(1, 1)], [R(0, 1)]]) == {(0, 1, 1): 1}
    with pytest.raises(RoundLogError):   # each takes what the other sends only afterwards
        message_stamps([[R(1, 2), S(1, 1)], [R(0, 1), S(0, 2)]])


def test_frontier_charges_add_up_to_the_depth():
    clocks = LamportClocks()
    a = clocks.send("aggregator")                  # 1
    clocks.take("client:0", a)
    b = clocks.send("client:0")                    # 2
    c = clocks.send("client:1")                    # 1: read nothing
    charged = clocks.charge([(1, "model-broadcast", "aggregator", "client:0", a),
                             (1, "select", "client:0", "aggregator", b),
                             (1, "select", "client:1", "aggregator", c)])
    assert charged == {(1, "model-broadcast", "aggregator", "client:0"): 1,
                       (1, "select", "client:0", "aggregator"): 1}
    assert block_charge([(0, "share-inputs", "client:0", "server:0", 1),
                         (0, "share-inputs", "client:1", "server:0", 1)]) == {
        (0, "share-inputs", "client:0", "server:0"): 1}


def test_ledger_rounds_sum_per_step_and_survive_csv(tmp_path):
    led = Ledger("r", "p")
    led.add(1, "score", "server:0", "server:1", 100, 5, "wire", 3)
    led.add(1, "score", "server:1", "server:0", 100, 5, "wire", 0)
    led.add(1, "select", "server:0", "server:1", 10, 2, "wire", 2)
    assert led.rounds_by_step() == {(1, "score"): 3, (1, "select"): 2}
    assert led.comm_rounds == 5 and led.summary(0, 2)["comm_rounds"] == 5
    led.write_csv(tmp_path / "l.csv")
    assert Ledger.read_csv(tmp_path / "l.csv").rows == led.rows


def test_secagg_session_takes_seven_rounds():
    """SecAgg+'s four steps, counted as message hops on the critical path: advertise keys
    (up, neighbours' keys down: 2), share keys (up, forwarded down: 2), masked input (up: 1),
    unmask (request down, shares up: 2)."""
    from flaimsim.parties.secagg.aggregate import secure_aggregate

    led = Ledger()
    secure_aggregate({k: np.arange(4) + k for k in range(6)}, 50, led, 1,
                     np.random.default_rng(0))
    assert led.rounds_by_step() == {(1, "secagg-keys"): 4, (1, "secagg-masked-input"): 1,
                                    (1, "secagg-unmask"): 2}


def test_rounds_do_not_change_a_byte_of_the_star_network():
    """The same session with stamps kept out of band writes exactly the frames' sizes."""
    from flaimsim.parties.secagg.aggregate import secure_aggregate
    from flaimsim.parties.star import StarNetwork

    with StarNetwork() as net:
        led = Ledger()
        secure_aggregate({k: np.arange(4) + k for k in range(5)}, 50, led, 1,
                         np.random.default_rng(0), network=net)
        sent = net.sent.totals()
        assert sent == net.received.totals()
        assert sum(b for b, _ in sent.values()) == sum(r.bytes for r in led.rows)
        # read stamps equal written stamps, frame by frame per link
        for link in {(r.sender, r.receiver) for r in net.sent.records}:
            assert ([r.stamp for r in net.sent.records if (r.sender, r.receiver) == link]
                    == [r.stamp for r in net.received.records
                        if (r.sender, r.receiver) == link])


def test_a_section_follows_the_work_it_set_up_into_later_tasks():
    """The profile's premise: a task created inside a section keeps its tag when the event
    loop runs it after the section closed (asyncio copies the context at creation)."""
    import asyncio

    from flaimsim.parties.profile import SECTION, section

    async def later() -> str:
        await asyncio.sleep(0)
        return SECTION.get()

    async def main() -> tuple[str, str, str]:
        with section("argmax"):
            task = asyncio.get_running_loop().create_task(later())
        return await task, SECTION.get(), await asyncio.get_running_loop().create_task(later())

    assert asyncio.run(main()) == ("argmax", "", "")


def test_secagg_profile_has_the_four_steps_and_adds_up_to_the_ledger():
    from flaimsim.parties import profile
    from flaimsim.parties.secagg.aggregate import secure_aggregate

    led = Ledger()
    with profile.collecting() as prof:
        secure_aggregate({k: np.arange(4) + k for k in range(6)}, 50, led, 1,
                         np.random.default_rng(0))
    ops = {o.op: o for o in prof.ops}
    assert {op: o.rounds for op, o in ops.items()} == {
        "SecAgg+ advertise keys": 2, "SecAgg+ share keys": 2, "SecAgg+ masked input": 1,
        "SecAgg+ unmask": 2}
    assert all(o.seconds is not None and o.seconds >= 0 for o in prof.ops)
    table = profile.profile_table(prof.ops, led)
    assert not [r for r in table if r["op"] == "other"]   # every byte claimed by a step
    assert sum(r["bytes"] for r in table) == sum(r.bytes for r in led.rows)
    assert sum(r["messages"] for r in table) == sum(r.messages for r in led.rows)
    assert "SecAgg+ unmask" in profile.format_profile(table)


def test_unclaimed_traffic_is_listed_as_other():
    from flaimsim.parties.profile import OpCost, profile_table

    led = Ledger()
    led.add(1, "score", "server:0", "server:1", 100, 4, "wire", 3)
    rows = profile_table([OpCost(1, "score", "dot products", 60, 1, 1, 0.5)], led)
    assert [(r["op"], r["bytes"], r["messages"]) for r in rows] == [
        ("dot products", 60, 1), ("other", 40, 3)]
    assert all(r["phase_rounds"] == 3 for r in rows)
