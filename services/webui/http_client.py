"""What the web UI's two HTTP clients share: the controller's address, one ``httpx`` client for
every session, and failures turned into plain-words ``ServiceError``s.

``ControllerClient`` (chat: FastChat routes, worker streams) and ``ManagementClient`` (training and
models pages: ``/v1`` routes, worker probes) differ only in how they read an answer.
"""

from __future__ import annotations

from typing import Any, Self

import httpx


class ServiceError(Exception):
    """A failure to show to the user; ``str(exc)`` is the plain-words message."""


class ControllerUnavailable(ServiceError):
    def __init__(self, controller: str, detail: str) -> None:
        super().__init__(
            f"The controller at {controller} could not be reached ({detail}). "
            "Check that it is running, then try again."
        )
        self.controller = controller


def describe(exc: Exception) -> str:
    """An exception in a few words: its message, else its type (httpx errors are often blank)."""
    return str(exc) or type(exc).__name__


class HTTPClient:
    """Sync (Gradio runs handlers in threads) and thread-safe: one instance serves every session.

    Closes its ``httpx`` client on ``close()`` or at the end of a ``with`` block.
    """

    def __init__(self, controller_address: str, http: httpx.Client) -> None:
        self.controller_address = controller_address.rstrip("/")
        self._http = http

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request to the controller; a connection failure or timeout is
        ``ControllerUnavailable``."""
        try:
            return self._http.request(method, f"{self.controller_address}{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise ControllerUnavailable(self.controller_address, describe(exc)) from exc

    def _json(self, response: httpx.Response, path: str) -> Any:
        """The answer's JSON body; anything else means something other than the controller
        answered."""
        try:
            return response.json()
        except ValueError as exc:
            raise ControllerUnavailable(
                self.controller_address, f"{path} answered something that is not JSON"
            ) from exc
