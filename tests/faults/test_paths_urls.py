"""SSRF through dataset URL sources, against a controller and a real ingestor.

An "internal" HTTP service on 127.0.0.1 counts the requests it gets. With the default allow-list
(Hugging Face hosts) the controller refuses its URL at once; with 127.0.0.1 allow-listed by
name (as a test serving its own files does) a redirect from it to another, unlisted host is not
followed by the ingestor, and a download over the size limit stops.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.ingestor.url_server import UrlServer
from tests.support import TERMINAL, Stack, wait_record

CONVERSATIONS = json.dumps(
    [
        {
            "id": "a",
            "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
        }
    ]
).encode()


@pytest.fixture
def internal() -> Iterator[UrlServer]:
    """The service an attacker wants reached (``/secret``), counting what it is asked."""
    server = UrlServer(CONVERSATIONS)
    yield server
    server.close()


def test_an_internal_url_is_refused_by_the_controller(
    start_stack: Callable[..., Stack], internal: UrlServer
) -> None:
    stack = start_stack()  # the default allow-list: Hugging Face hosts only
    for url in (
        f"http://127.0.0.1:{internal.port}/secret",
        f"http://localhost:{internal.port}/secret",
        f"http://[::1]:{internal.port}/secret",
        "http://169.254.169.254/latest/meta-data/",
    ):
        response = httpx.post(f"{stack.url}/v1/datasets", json={"sources": ["alpaca", url]})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "sources[1]" and "INGEST_URL_ALLOWED_HOSTS" in error["message"]
    assert internal.hits == []


def test_the_ingestor_follows_no_redirect_to_an_unlisted_host_and_stops_at_the_size_limit(
    start_stack: Callable[..., Stack], internal: UrlServer, tiny_model_dir: Path
) -> None:
    stack = start_stack(
        {"INGEST_URL_ALLOWED_HOSTS": "127.0.0.1", "INGEST_MAX_DOWNLOAD_BYTES": "50000"}
    )
    stack.start("ingestor")
    base = internal.base
    sources = [
        f"{base}/to?url=http://localhost:{internal.port}/secret",
        f"{base}/big",
        f"{base}/data.json",
    ]
    body = {"sources": sources, "tokenizer": str(tiny_model_dir), "keep_lang": "all"}
    created = httpx.post(f"{stack.url}/v1/datasets", json=body)
    assert created.status_code == 201, created.text
    record = wait_record(f"{stack.url}/v1/datasets/{created.json()['id']}", TERMINAL, 120)
    assert record["status"] == "succeeded", record
    assert "/secret" not in internal.hits  # the redirect's target was never asked
    rejected = [
        json.loads(line)
        for line in (Path(record["path"]) / "rejected.jsonl").read_text().splitlines()
    ]
    details = {row["file"]: row["detail"] for row in rejected if row["stage"] == "download"}
    assert "host 'localhost' is not in INGEST_URL_ALLOWED_HOSTS" in details[sources[0]]
    assert "over the limit of 50000" in details[sources[1]]
    assert record["manifest"]["records"] >= 1  # the allowed source was fetched
