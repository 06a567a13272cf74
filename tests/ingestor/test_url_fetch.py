"""URL sources are fetched only as the URL policy allows: http(s), allow-listed hosts, no internal
address unless that host is listed by name, redirects checked hop by hop, a size limit. A server
on 127.0.0.1 plays both the allowed host and the internal one; ``resolve`` stands in for DNS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from services.ingestor.files import fetch
from services.ingestor.files.fetch import DownloadRefused, UrlFetch, download_url
from shared.paths import RefusedReference, UrlPolicy, UrlTarget
from tests.ingestor.url_server import UrlServer

BODY = b'[{"id": "a"}]'


@pytest.fixture
def server() -> Iterator[UrlServer]:
    running = UrlServer(BODY)
    yield running
    running.close()


def fake_dns(names: dict[str, str]):
    def resolve(host: str, port: int) -> list[str]:
        if host not in names:
            raise OSError("unknown host")
        return [names[host]]

    return resolve


def test_an_allow_listed_loopback_host_is_fetched(server: UrlServer, tmp_path: Path) -> None:
    local = UrlFetch(UrlPolicy.parse("127.0.0.1"))
    target = download_url(f"{server.base}/data.json", tmp_path / "d.json", local)
    assert target.read_bytes() == BODY


def test_the_default_policy_refuses_loopback_and_other_schemes(
    server: UrlServer, tmp_path: Path
) -> None:
    default = UrlFetch(UrlPolicy.parse("huggingface.co,*.huggingface.co,hf.co,*.hf.co"))
    for url in (f"{server.base}/data.json", "file:///etc/passwd", "ftp://huggingface.co/x"):
        with pytest.raises(DownloadRefused):
            download_url(url, tmp_path / "d.json", default)
    assert server.hits == []
    assert not (tmp_path / "d.json").exists() and not (tmp_path / "d.json.part").exists()


def test_a_redirect_to_a_host_off_the_list_is_not_followed(
    server: UrlServer, tmp_path: Path
) -> None:
    local = UrlFetch(UrlPolicy.parse("127.0.0.1"))
    url = f"{server.base}/to?url=http://localhost:{server.port}/secret"
    with pytest.raises(DownloadRefused, match="host 'localhost' is not in"):
        download_url(url, tmp_path / "d.json", local)
    assert server.hits == [f"/to?url=http://localhost:{server.port}/secret"]


def test_a_redirect_to_a_name_resolving_to_a_private_address_is_not_followed(
    server: UrlServer, tmp_path: Path
) -> None:
    policy = UrlPolicy.parse("127.0.0.1,*.example.org")
    dns = fake_dns({"127.0.0.1": "127.0.0.1", "internal.example.org": "10.1.2.3"})
    url = f"{server.base}/to?url=http://internal.example.org:{server.port}/secret"
    with pytest.raises(DownloadRefused, match="private or internal address"):
        download_url(url, tmp_path / "d.json", UrlFetch(policy, resolve=dns))
    assert len(server.hits) == 1


def test_redirects_are_bounded(server: UrlServer, tmp_path: Path) -> None:
    local = UrlFetch(UrlPolicy.parse("127.0.0.1"), max_redirects=3)
    with pytest.raises(DownloadRefused, match="more than 3 redirects"):
        download_url(f"{server.base}/loop", tmp_path / "d.json", local)
    assert len(server.hits) == 4
    ok = download_url(f"{server.base}/to?url=/data.json", tmp_path / "d.json", local)
    assert ok.read_bytes() == BODY


def test_downloads_stop_at_the_size_limit(server: UrlServer, tmp_path: Path) -> None:
    small = UrlFetch(UrlPolicy.parse("127.0.0.1"), max_bytes=4096)
    with pytest.raises(DownloadRefused, match="over the limit of 4096"):
        download_url(f"{server.base}/big", tmp_path / "big", small)
    with pytest.raises(DownloadRefused, match="more than the limit of 4096"):
        download_url(f"{server.base}/endless", tmp_path / "endless", small)
    assert list(tmp_path.iterdir()) == []


def test_the_address_connected_to_is_checked_too() -> None:
    """A name that resolved to a public address, then (rebound) to a private one on connect."""
    policy = UrlPolicy.parse("*.example.org")
    target = UrlTarget("http://files.example.org/x", "files.example.org", 80, ("93.184.216.34",))
    stream = SimpleNamespace(get_extra_info=lambda name: ("127.0.0.1", 80))
    response = SimpleNamespace(extensions={"network_stream": stream})
    with pytest.raises(DownloadRefused, match="private or internal address"):
        fetch._check_peer(response, target, policy)  # type: ignore[arg-type]
    public = SimpleNamespace(get_extra_info=lambda name: ("93.184.216.34", 80))
    fetch._check_peer(SimpleNamespace(extensions={"network_stream": public}), target, policy)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fc00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
    ],
)
def test_internal_addresses_are_refused_unless_the_host_is_listed_by_name(address: str) -> None:
    wildcard = UrlPolicy.parse("*.example.org")
    with pytest.raises(RefusedReference, match="private or internal address"):
        wildcard.check("https://cdn.example.org/x", fake_dns({"cdn.example.org": address}))
    by_name = UrlPolicy.parse("cdn.example.org")
    by_name.check("https://cdn.example.org/x", fake_dns({"cdn.example.org": address}))


def test_host_patterns() -> None:
    policy = UrlPolicy.parse("huggingface.co, *.hf.co")
    assert policy.host_allowed("huggingface.co") and policy.host_allowed("cdn-lfs.hf.co")
    assert not policy.host_allowed("evilhuggingface.co")
    assert not policy.host_allowed("hf.co.evil.org") and not policy.host_allowed("hf.co")
    assert not UrlPolicy.parse("*.0.0.1").host_allowed("127.0.0.1")  # never an address
    public = fake_dns({"huggingface.co": "13.35.1.1"})
    assert policy.check("https://HuggingFace.co./d.json", public).host == "huggingface.co"
    with pytest.raises(RefusedReference, match="cannot be resolved"):
        policy.check("https://huggingface.co/x", fake_dns({}))
    assert policy.check("https://huggingface.co/x", fake_dns({}), unresolved_ok=True).host
