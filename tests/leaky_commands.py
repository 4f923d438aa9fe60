"""A server command module for tests: ``leaky_sum`` opens a secret it never writes to the
reveal log (what the opening counter must catch)."""

from __future__ import annotations

from typing import Any

from flaimsim.parties.mpc.server import ServerState, command


@command("leaky_sum")
async def leaky_sum(state: ServerState, name: str) -> dict[str, Any]:
    x = state.array(name)
    await state.runtime.output(x[:3])          # the extra, unlogged opening
    total = await state.runtime.output(x[0] + x[1])
    state.reveal_log.append({"seq": len(state.reveal_log), "name": "sum", "shape": []})
    return {"sum": int(total)}
