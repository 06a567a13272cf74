"""FastChat 0.2.36 itself, in its own virtualenv (``make install`` builds it from
``requirements/fastchat.txt``): its code is the reference our protocol is checked against."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import FASTCHAT_PYTHON


@pytest.fixture(scope="session")
def fastchat_python() -> Path:
    if not FASTCHAT_PYTHON.exists():
        pytest.skip(f"FastChat's virtualenv is missing ({FASTCHAT_PYTHON}): run make install")
    return FASTCHAT_PYTHON
