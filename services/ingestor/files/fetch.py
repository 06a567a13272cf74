"""Getting raw files onto disk: single dataset files from the Hugging Face Hub (real files under
the chosen folder, no cache links) and http(s) downloads. Both write through a temporary name, so
a broken transfer never looks complete."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
from huggingface_hub import hf_hub_download

from services.ingestor.sources import HubDataset


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


def download_url(url: str, target: Path, timeout: float = 60.0) -> Path:
    """Stream ``url`` into ``target``; raises httpx.HTTPError on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with (
            httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response,
            partial.open("wb") as out,
        ):
            response.raise_for_status()
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
        partial.rename(target)
    finally:
        partial.unlink(missing_ok=True)
    return target
