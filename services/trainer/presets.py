"""List the training presets or write their launch configs (``python -m services.trainer.presets``).

The presets themselves live in ``shared/training_presets.py`` (the controller applies them too).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from shared.training_presets import CONFIG_DIR, DEEPSPEED_CONFIG_NAME, PRESETS, Preset

__all__ = ["CONFIG_DIR", "DEEPSPEED_CONFIG_NAME", "PRESETS", "Preset", "main", "write_configs"]


def write_configs(folder: Path) -> list[Path]:
    """Write every preset's accelerate YAML (and the DeepSpeed JSON) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for preset in PRESETS.values():
        for name, content in preset.config_files().items():
            path = folder / name
            path.write_text(content)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="List presets or write their launch configs.")
    parser.add_argument("--write", type=Path, help=f"folder to write configs to ({CONFIG_DIR})")
    args = parser.parse_args(argv)
    if args.write:
        for path in write_configs(args.write):
            print(path)
        return
    for preset in PRESETS.values():
        print(f"{preset.name:<26} {preset.description}")


if __name__ == "__main__":
    main()
