"""Hosts on one machine: Linux network namespaces joined by a bridge, addresses in 198.18.0.0/24.

The test process stays in the root namespace with one address on the bridge (198.18.0.254), so it
reaches every host; nothing is routed anywhere else. ``cut``/``heal`` take a host's link down and
up, as a pulled cable would. Everything made here is removed by ``close`` (root only).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "198.18.0"
CLIENT_ADDRESS = f"{SUBNET}.254"


def can_make_namespaces() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _veth(name: str, peer: str, peer_namespace: str) -> None:
    """A veth pair: ``name`` here, ``peer`` in ``peer_namespace``."""
    _ip("link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_namespace)


@dataclass
class Network:
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    hosts: dict[str, str] = field(default_factory=dict)  # name -> address
    _links: dict[str, str] = field(default_factory=dict)  # name -> bridge-side veth
    _namespaces: list[str] = field(default_factory=list)
    _root_link: str = ""

    @property
    def switch(self) -> str:
        return f"cc{self.tag}-sw"

    def namespace(self, host: str) -> str:
        return f"cc{self.tag}-{host}"

    def open(self) -> Network:
        _ip("netns", "add", self.switch)
        self._namespaces.append(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        # The test process's own link to the bridge.
        self._root_link = f"r{self.tag}"
        _veth(self._root_link, "b0", self.switch)
        _ip("-n", self.switch, "link", "set", "b0", "master", "br0", "up")
        _ip("addr", "add", f"{CLIENT_ADDRESS}/24", "dev", self._root_link)
        _ip("link", "set", self._root_link, "up")
        return self

    def add_host(self, name: str, last_octet: int) -> str:
        """A namespace with one address on the bridge; returns the address."""
        ns, index = self.namespace(name), len(self.hosts) + 1
        host_link, bridge_link = f"h{self.tag}{index}", f"b{index}"
        _ip("netns", "add", ns)
        self._namespaces.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        _veth(host_link, bridge_link, self.switch)
        _ip("link", "set", host_link, "netns", ns)
        _ip("-n", self.switch, "link", "set", bridge_link, "master", "br0", "up")
        address = f"{SUBNET}.{last_octet}"
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", host_link)
        _ip("-n", ns, "link", "set", host_link, "up")
        self.hosts[name] = address
        self._links[name] = bridge_link
        return address

    def command(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` run inside ``host``'s namespace."""
        return ["ip", "netns", "exec", self.namespace(host), *argv]

    def cut(self, host: str) -> None:
        _ip("-n", self.switch, "link", "set", self._links[host], "down")

    def heal(self, host: str) -> None:
        _ip("-n", self.switch, "link", "set", self._links[host], "up")

    def close(self) -> None:
        if self._root_link:
            subprocess.run(["ip", "link", "del", self._root_link], capture_output=True)
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._namespaces.clear()


def kill_namespace_processes(network: Network) -> None:
    """Anything still running inside the test's namespaces (a process that ignored SIGTERM)."""
    for ns in network._namespaces:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        for pid in pids.split():
            subprocess.run(["kill", "-9", pid], capture_output=True)


def log_path(root: Path, name: str) -> Path:
    return root / f"{name}.log"
