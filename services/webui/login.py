"""The page's login and the key it sends: secure whenever the stack has keys.

With ``CONTROLLER_API_KEYS`` configured, Gradio asks for a login before serving anything (the
page, its API, its files): any user name, and one of the users' keys as the password. Without
keys the page stays open, as the rest of the stack does.

The page itself calls the controller and the workers with one key of its own: ``WEBUI_API_KEY``,
else the stack's ``WORKER_TOKEN`` (the web UI is one of the stack's own processes).
"""

from __future__ import annotations

from collections.abc import Callable

from shared.auth import Credentials, Role
from shared.settings import AuthSettings, WebUISettings

LOGIN_MESSAGE = "Sign in with any user name and one of the stack's API keys as the password."


def login_check(credentials: Credentials) -> Callable[[str, str], bool] | None:
    """Gradio's ``auth``: accepts a user's key as the password; None (no login) without keys."""
    if not credentials.api_keys:
        return None

    def check(username: str, password: str) -> bool:
        return credentials.role(password) is Role.USER

    return check


def outgoing_key(settings: WebUISettings, auth: AuthSettings | None = None) -> str:
    """The key the page sends to the controller and to workers; empty: none."""
    return settings.api_key or (auth or AuthSettings()).worker_token
