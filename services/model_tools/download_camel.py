"""Download the released CAMEL models from the Hub into the models volume.

``python -m services.model_tools.download_camel --model-name CAMEL-13B-Combined-Data
[--models-dir DIR]`` (also ``--download-directory``, ``--download_directory``; default
MODELS_DIR) fetches the whole Hub repo ``camel-ai/<name>`` as real files into ``DIR/<name>``.
Files already there are kept and partial ones resumed, so an interrupted download continues
where it stopped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.cli import SettingsParser, exit_status
from shared.settings import CommonSettings

CAMEL_MODELS = (
    "CAMEL-13B-Role-Playing-Data",
    "CAMEL-13B-Combined-Data",
    "CAMEL-33B-Combined-Data",
)
HUB_ORG = "camel-ai"


class DownloadError(Exception):
    """The model could not be fetched; the message says why and what to do."""


def _snapshot_download(**kwargs: Any) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(**kwargs)


def download(
    model_name: str, directory: Path, fetch: Callable[..., str] = _snapshot_download
) -> Path:
    """Fetches ``camel-ai/<model_name>`` into ``directory/<model_name>`` (real files)."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    if model_name not in CAMEL_MODELS:
        raise DownloadError(f"unknown model {model_name!r}; one of {', '.join(CAMEL_MODELS)}")
    repo_id, target = f"{HUB_ORG}/{model_name}", directory / model_name
    target.mkdir(parents=True, exist_ok=True)
    try:
        fetch(repo_id=repo_id, local_dir=str(target))
    except (OfflineModeIsEnabled, LocalEntryNotFoundError, ConnectionError, TimeoutError) as exc:
        raise DownloadError(
            f"could not download {repo_id} into {target}: the Hub is not reachable "
            f"(offline: HF_HUB_OFFLINE is set, or no network) ({type(exc).__name__}: {exc}). "
            "Run again with network access; files already downloaded are kept and resumed."
        ) from exc
    return target


def main(argv: list[str] | None = None) -> int:
    cli = SettingsParser(
        __doc__.split("\n\n")[0],
        CommonSettings,
        aliases={"--download-directory": "--models-dir", "--download_directory": "--models-dir"},
        fields=("models_dir",),
        prog="python -m services.model_tools.download_camel",
    )
    cli.parser.add_argument(
        "--model-name", "--model_name", "--model", required=True, choices=CAMEL_MODELS
    )
    args = cli.parse(argv)
    directory = cli.settings(CommonSettings).models_dir

    def run() -> str:
        target = download(args.model_name, directory)
        return f"downloaded {HUB_ORG}/{args.model_name} into {target}"

    return exit_status(run, DownloadError)


if __name__ == "__main__":
    sys.exit(main())
