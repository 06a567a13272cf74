"""``--moderate``: each message goes to an OpenAI-compatible ``POST <base>/moderations`` first.

As FastChat's ``violates_moderation``: the verdict is ``results[0].flagged``, and a check that
cannot be made (network error, refused key, odd answer) lets the message through, logged. Unlike
it, the body is real JSON (quotes in a message broke the original's hand-built one).
"""

from __future__ import annotations

import logging
import os

import httpx

from shared.auth import bearer_header
from shared.settings import WebUISettings

log = logging.getLogger(__name__)


class Moderator:
    """Asks the moderation endpoint about one text at a time; callable as ``moderator(text)``."""

    def __init__(self, base_url: str, api_key: str = "", timeout: float = 5.0) -> None:
        self.url = base_url.rstrip("/") + "/moderations"
        self._http = httpx.Client(timeout=timeout, headers=bearer_header(api_key))

    @classmethod
    def from_settings(cls, settings: WebUISettings) -> Moderator | None:
        """None unless ``--moderate``; the key falls back to OPENAI_API_KEY as in FastChat."""
        if not settings.moderate:
            return None
        key = settings.moderation_api_key or os.environ.get("OPENAI_API_KEY", "")
        return cls(settings.moderation_base_url, key, settings.moderation_timeout)

    def __call__(self, text: str) -> bool:
        """Whether the endpoint flags ``text`` (newlines removed, as FastChat sends it)."""
        try:
            answer = self._http.post(self.url, json={"input": text.replace("\n", "")})
            answer.raise_for_status()
            flagged = answer.json()["results"][0]["flagged"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            log.warning("event=moderation_failed url=%s error=%r", self.url, exc)
            return False
        if not isinstance(flagged, bool):
            log.warning("event=moderation_failed url=%s error='flagged is not a boolean'", self.url)
            return False
        return flagged

    def close(self) -> None:
        self._http.close()
