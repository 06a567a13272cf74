"""``python -m services.trainer.train_qlora <the original's flags>``: the original's QLoRA
command line (``train_qlora.py``: ``--bits 4 --quant_type nf4 --double_quant True --lora_r 64
--max_memory_MB 80000 --max_samples N --checkpoint_path DIR --load_weights False`` ...), read by
``services.trainer.hf_cli`` into the same job request the REST API builds."""

import sys

from services.trainer.hf_cli import main

if __name__ == "__main__":
    sys.exit(main(None, "python -m services.trainer.train_qlora", qlora=True))
