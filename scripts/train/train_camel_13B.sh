#!/bin/bash
# Full finetune of LLaMA-13B on 1 node x 8 GPUs (A100-80GB): FSDP full_shard over decoder layers,
# bf16, gradient checkpointing, global batch 128 (4 x 4 accumulation x 8 GPUs), lr 2e-5 cosine.
# Usage: MODEL_PATH=... DATA_PATH=... sbatch scripts/train/train_camel_13B.sh [extra flags]
#SBATCH --job-name=camel-13b
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=48
#SBATCH --mem=384G
#SBATCH --time=24:00:00
#SBATCH --output=slurm/%x.%A.out
#SBATCH --error=slurm/%x.%A.err
##SBATCH --reservation=A100
set -euo pipefail
MODEL_PATH=${MODEL_PATH:-<path_to_hf_llama_model>}
DATA_PATH=${DATA_PATH:-<path_to_dataset.json_file>}
OUTPUT_DIR=${OUTPUT_DIR:-./output/camel-13b}
PRESET=camel-13b-full-8gpu
source "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}/scripts/train/common.sh"
require_filled MODEL_PATH DATA_PATH

"$ACCELERATE" launch --config_file "$CONFIGS/$PRESET.yaml" --main_process_port "$(free_port)" \
    -m services.trainer.train --preset "$PRESET" \
    --base-model "$MODEL_PATH" --data-path "$DATA_PATH" --output-dir "$OUTPUT_DIR" "$@"
