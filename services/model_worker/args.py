"""Command-line flags shared by the worker and the terminal chat (kept light: no torch import)."""

from __future__ import annotations

import argparse

from shared.settings import WorkerSettings, default_model_dir


def add_model_args(parser: argparse.ArgumentParser, settings: WorkerSettings) -> None:
    """Model-loading flags shared by the worker and the terminal chat."""
    parser.add_argument(
        "--model-path",
        default=settings.model_path or str(default_model_dir()),
        help="local Hugging Face folder or Hub id (default: the embedded SmolLM2 model)",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default=settings.device)
    parser.add_argument(
        "--dtype", choices=["auto", "float32", "float16", "bfloat16"], default=settings.dtype
    )
    parser.add_argument("--load-8bit", action="store_true", default=settings.load_8bit)
    parser.add_argument("--load-4bit", action="store_true", default=settings.load_4bit)
    parser.add_argument(
        "--conv-template",
        default=settings.conv_template,
        help="vicuna_v1.1, one_shot or chat_template (default: chosen from the model)",
    )


def load_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple:
    """Load the model and pick its template as the flags say; exit with a clear message if not.

    Returns ``(LoadedModel, Conversation)``.
    """
    from services.model_worker.loader import ModelLoadError, load_model
    from services.model_worker.template_choice import conversation_for

    try:
        loaded = load_model(
            args.model_path, args.device, args.dtype, args.load_8bit, args.load_4bit
        )
        return loaded, conversation_for(args.model_path, loaded.tokenizer, args.conv_template)
    except (ModelLoadError, ValueError, KeyError) as exc:
        parser.exit(2, f"error: {exc}\n")
