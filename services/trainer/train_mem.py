"""``python -m services.trainer.train_mem <the original's flags>``: the original's full-finetune
command line (``train_mem.py``: ``--model_name_or_path``, ``--data_path``, ``--bf16 True``,
``--fsdp``, ``--lazy_preprocess True`` ...), read by ``services.trainer.hf_cli`` into the same
job request the REST API builds. Flash attention needs no patch: the trainer uses
flash-attention 2 where it is installed on a GPU, else SDPA."""

import sys

from services.trainer.hf_cli import main

if __name__ == "__main__":
    sys.exit(main(None, "python -m services.trainer.train_mem", qlora=False))
