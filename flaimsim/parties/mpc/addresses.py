"""``HOST:PORT`` addresses of compute servers on their own hosts (``flaimsim serve``,
``--servers-at``), parsed with errors that name the bad text."""

from __future__ import annotations


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); IPv6 hosts in brackets (``[::1]:9000``)."""
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT with a port in 1..65535, got {text!r}")
    return host, int(port)


def parse_addresses(text: str) -> list[tuple[str, int]]:
    """``h0:p0,h1:p1,...`` -> [(h0, p0), ...], in party order; duplicates refused."""
    items = [t for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"expected a comma list of HOST:PORT, got {text!r}")
    out = [parse_address(t) for t in items]
    if len(set(out)) != len(out):
        raise ValueError(f"the same address appears twice in {text!r}")
    return out


def format_addresses(addresses: list[tuple[str, int]]) -> str:
    return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in addresses)
