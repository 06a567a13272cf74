"""The sampling defaults a model ships in its ``generation_config.json``.

A request that leaves temperature, top_p, top_k or repetition_penalty out gets the model's value
(what its authors recommend: SmolLM2-Instruct's 0.2 / 0.9), else the protocol's neutral default.
Only keys written in the file count: ``GenerationConfig`` would fill in its own (top_k=50).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from shared.schemas import GenerateParams

log = logging.getLogger(__name__)

SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "repetition_penalty")


def read_sampling_defaults(model_path: str | Path) -> dict[str, float | int]:
    """The model's values of ``SAMPLING_FIELDS``; ``do_sample: false`` means greedy
    (temperature 0). Empty when the folder has no readable, valid generation_config.json."""
    path = Path(model_path) / "generation_config.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    found = {k: raw[k] for k in SAMPLING_FIELDS if isinstance(raw.get(k), int | float)}
    if raw.get("do_sample") is False:
        found["temperature"] = 0.0
    try:
        checked = GenerateParams(prompt="x", **found)
    except ValueError as exc:
        log.warning("event=bad_generation_config path=%s error=%r", path, exc)
        return {}
    return {k: getattr(checked, k) for k in found}


def with_defaults(params: GenerateParams, defaults: dict[str, Any]) -> GenerateParams:
    """``params`` with the model's value for each sampling field the request did not set."""
    missing = {k: v for k, v in defaults.items() if k not in params.model_fields_set}
    if not missing:
        return params
    return params.model_copy(update=missing)
