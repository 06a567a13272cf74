"""Getting raw files onto disk: single dataset files from the Hugging Face Hub (real files under
the chosen folder, no cache links) and http(s) downloads. Both write through a temporary name, so
a broken transfer never looks complete.

A URL is fetched only as ``shared.paths.UrlPolicy`` allows (http(s), an allow-listed host, no
internal address unless that host is listed by name): redirects are followed by hand, each hop
checked the same way, the address actually connected to is checked too (a host whose name
resolves differently the second time), and a download stops at ``max_bytes``.
"""

from __future__ import annotations

import os
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

import httpx
from huggingface_hub import hf_hub_download

from services.ingestor.sources import HubDataset
from shared.paths import RefusedReference, Resolver, UrlPolicy, UrlTarget, system_addresses
from shared.settings import IngestorSettings


def hub_token() -> str | None:
    """Token for the gated camel-ai datasets; None lets huggingface_hub use a stored login."""
    return os.environ.get("HF_TOKEN") or None


def download_hub_file(dataset: HubDataset, filename: str, download_dir: Path) -> Path:
    """One dataset file as a real file at ``download_dir/filename`` (no cache symlinks)."""
    path = hf_hub_download(
        repo_id=dataset.repo_id,
        filename=filename,
        repo_type="dataset",
        local_dir=download_dir,
        token=hub_token(),
    )
    return Path(path)


def url_file_name(url: str) -> str:
    name = unquote(Path(urlparse(url).path).name)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".") or "download"


@dataclass(frozen=True)
class UrlFetch:
    """How URL sources are fetched: the policy, and the limits of one download."""

    policy: UrlPolicy
    timeout: float = 60.0
    max_bytes: int = 20 * 1024**3
    max_redirects: int = 5
    resolve: Resolver = system_addresses  # how hosts are looked up before each hop

    @classmethod
    def from_settings(cls, settings: IngestorSettings) -> UrlFetch:
        return cls(
            UrlPolicy.parse(settings.url_allowed_hosts),
            settings.http_timeout,
            settings.max_download_bytes,
            settings.max_redirects,
        )


class DownloadRefused(RefusedReference):
    """The URL, a redirect, or the size of what it serves is not allowed."""


def download_url(url: str, target: Path, fetch: UrlFetch) -> Path:
    """Stream ``url`` into ``target``; raises httpx.HTTPError or DownloadRefused on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with httpx.Client(timeout=fetch.timeout, follow_redirects=False) as client:
            response = _final_response(client, url, fetch)
            try:
                response.raise_for_status()
                with partial.open("wb") as out:
                    _copy_limited(response, out, fetch.max_bytes)
            finally:
                response.close()
        partial.rename(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _final_response(client: httpx.Client, url: str, fetch: UrlFetch) -> httpx.Response:
    """The open (streaming) response at the end of ``url``'s redirects, each hop checked."""
    for _ in range(fetch.max_redirects + 1):
        try:
            target = fetch.policy.check(url, fetch.resolve)
        except RefusedReference as exc:
            raise DownloadRefused(str(exc)) from None
        response = client.send(client.build_request("GET", url), stream=True)
        try:
            _check_peer(response, target, fetch.policy)
        except DownloadRefused:
            response.close()
            raise
        if not response.is_redirect:
            return response
        url = str(response.url.join(response.headers["location"]))
        response.close()
    raise DownloadRefused(f"more than {fetch.max_redirects} redirects")


def _check_peer(response: httpx.Response, target: UrlTarget, policy: UrlPolicy) -> None:
    """The address connected to must be one the policy allows for the host (a name may
    resolve to another address the second time); a proxy's address is the operator's choice."""
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer or _through_proxy(target):
        return
    try:
        policy.check_addresses(target.host, [str(peer[0])], target.url)
    except RefusedReference as exc:
        raise DownloadRefused(str(exc)) from None


def _through_proxy(target: UrlTarget) -> bool:
    scheme = urlparse(target.url).scheme
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(target.host)


def _copy_limited(response: httpx.Response, out: BinaryIO, max_bytes: int) -> None:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise DownloadRefused(
            f"{response.url} is {declared} bytes, over the limit of {max_bytes} "
            "(INGEST_MAX_DOWNLOAD_BYTES)"
        )
    written = 0
    for chunk in response.iter_bytes(1 << 20):
        written += len(chunk)
        if written > max_bytes:
            raise DownloadRefused(
                f"{response.url} sent more than the limit of {max_bytes} bytes "
                "(INGEST_MAX_DOWNLOAD_BYTES)"
            )
        out.write(chunk)
