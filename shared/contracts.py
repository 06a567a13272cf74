"""Names and small rules that several services must agree on, each written once.

A service that writes one of these and a service that reads it import it from here; changing a
name here changes it for both sides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The trainer writes this file next to a trained model (its template, method, base model); the
# merger carries it into the merged model and serving reads its template from it.
TRAINING_SUMMARY_FILE = "camel_training.json"

# Carried from the client through the controller to the worker, and echoed in responses and logs.
REQUEST_ID_HEADER = "X-Request-Id"

# The template name meaning "prompt with the tokenizer's own Jinja chat template".
CHAT_TEMPLATE = "chat_template"

# Special tokens a chat template may reference, passed to it by name as transformers does.
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token")


def special_tokens_of(tokenizer: Any) -> dict[str, str]:
    """The special-token strings a chat template may reference (as serving and training pass
    them to the template), skipping the ones the tokenizer does not have."""
    return {
        name: str(getattr(tokenizer, name))
        for name in SPECIAL_TOKEN_NAMES
        if getattr(tokenizer, name, None)
    }


def looks_like_path(name: str) -> bool:
    """Whether a model or data reference is meant as a local path rather than a Hub id or a
    name: it starts like a path (``/``, ``.``, ``~``) or names something that exists here."""
    if name.startswith((".", "/", "~")):
        return True
    try:
        return Path(name).exists()
    except (OSError, ValueError):  # a NUL byte, a name too long
        return False
