#!/bin/bash
# 4-bit QLoRA on one GPU (the original's train_qlora.py recipe): NF4 + double quantization, bf16
# compute, LoRA r=64 alpha 16 dropout 0.05 on every linear layer but the head, paged AdamW,
# max grad norm 0.3, lr 1e-4 constant, batch 1 x 16 accumulation, gradient checkpointing.
# VRAM at batch 1 (original's notes): 7B 9.5 GB, 13B 16 GB, 33B 36 GB, 65B 65 GB.
# Resuming needs no flags: rerun with the same OUTPUT_DIR (adapter, optimizer, scheduler, RNG and
# data position all come back from the newest complete checkpoint).
# Usage: MODEL_PATH=... DATA_PATH=... sbatch scripts/train/train_camel_qlora.sh [extra flags]
#SBATCH --job-name=camel-qlora
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=6
#SBATCH --mem=256G
#SBATCH --time=24:00:00
#SBATCH --output=slurm/%x.%A.out
#SBATCH --error=slurm/%x.%A.err
##SBATCH --reservation=A100
set -euo pipefail
MODEL_PATH=${MODEL_PATH:-<path_to_hf_llama_model>}
DATA_PATH=${DATA_PATH:-<path_to_dataset.json_file>}
OUTPUT_DIR=${OUTPUT_DIR:-./output/camel-qlora}
PRESET=camel-qlora-1gpu
source "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}/scripts/train/common.sh"
require_filled MODEL_PATH DATA_PATH

"$ACCELERATE" launch --config_file "$CONFIGS/$PRESET.yaml" \
    -m services.trainer.train --preset "$PRESET" \
    --base-model "$MODEL_PATH" --data-path "$DATA_PATH" --output-dir "$OUTPUT_DIR" "$@"
