"""The ports the pool hands to its model workers."""

from __future__ import annotations

import socket
from collections.abc import Collection, Iterable


def parse_port_range(text: str) -> list[int]:
    """``"21100-21199"`` -> the ports in it; a clear ValueError for anything else."""
    try:
        first, last = (int(part) for part in text.split("-", 1))
    except ValueError:
        raise ValueError(f"port range must look like 21100-21199, not {text!r}") from None
    if not 0 < first <= last < 65536:
        raise ValueError(f"port range {text!r} is empty or outside 1-65535")
    return list(range(first, last + 1))


def first_free_port(host: str, ports: Iterable[int], taken: Collection[int]) -> int | None:
    """The first port not ``taken`` by a child that nothing else on ``host`` listens on."""
    for port in ports:
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        return port
    return None
