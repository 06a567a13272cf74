"""The model the worker or the terminal chat runs, as its settings say (kept light: importing this
loads no torch)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TypeVar

from shared.settings import ModelSettings, default_model_dir

if TYPE_CHECKING:
    from services.model_worker.loader import LoadedModel
    from services.model_worker.placement import PlacementOptions
    from shared.conversation import Conversation

M = TypeVar("M", bound=ModelSettings)


def with_default_model(settings: M) -> M:
    """An empty ``model_path`` means the embedded default model (converted at set-up)."""
    if settings.model_path:
        return settings
    return settings.model_copy(update={"model_path": str(default_model_dir())})


def load_configured_model(
    parser: argparse.ArgumentParser, settings: ModelSettings
) -> tuple[LoadedModel, Conversation]:
    """Load the model and pick its template as the settings say; if that fails, exit with status
    2 and one line ``error: <why>`` (the model pool reports that line as the reason)."""
    from services.model_worker.loader import ModelLoadError, load_model
    from services.model_worker.template_choice import conversation_for

    try:
        loaded = load_model(
            settings.model_path,
            settings.device,
            settings.dtype,
            settings.load_8bit,
            settings.load_4bit,
            placement_options(settings),
        )
        return loaded, conversation_for(
            settings.model_path, loaded.tokenizer, settings.conv_template
        )
    except (ModelLoadError, ValueError, KeyError) as exc:
        parser.exit(2, f"error: {exc}\n")


def placement_options(settings: ModelSettings) -> PlacementOptions:
    """The multi-GPU and offload flags, for ``placement.plan_placement`` (no torch import)."""
    from services.model_worker.placement import PlacementOptions

    return PlacementOptions(
        device=settings.device,
        num_gpus=settings.num_gpus,
        gpus=settings.gpus,
        max_gpu_memory=settings.max_gpu_memory,
        max_cpu_memory=settings.max_cpu_memory,
        cpu_offloading=settings.cpu_offloading,
        load_8bit=settings.load_8bit,
        offload_folder=settings.offload_folder,
    )
