#!/bin/bash
# 4-bit QLoRA on one GPU (the original's train_qlora.py recipe): NF4 + double quantization, bf16
# compute, LoRA r=64 alpha 16 dropout 0.05 on every linear layer but the head, paged AdamW,
# max grad norm 0.3, lr 1e-4 constant, batch 1 x 16 accumulation, gradient checkpointing.
# VRAM at batch 1 (original's notes): 7B 9.5 GB, 13B 16 GB, 33B 36 GB, 65B 65 GB.
# Resuming needs no flags: rerun with the same OUTPUT_DIR (adapter, optimizer, scheduler, RNG and
# data position all come back from the newest complete checkpoint); the original's
# --checkpoint_path/--load_weights False recipe works too (see the end of this script).
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
source "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}/scripts/train/common.sh"
require_filled MODEL_PATH DATA_PATH

"$TORCHRUN" --nproc_per_node=1 --master_port="$(free_port)" \
    -m services.trainer.train_qlora \
    --model_name_or_path "$MODEL_PATH" \
    --data_path "$DATA_PATH" \
    --bf16 True \
    --output_dir "$OUTPUT_DIR" \
    --num_train_epochs 3 \
    --per_device_train_batch_size 1 \
    --per_device_eval_batch_size 16 \
    --gradient_accumulation_steps 16 \
    --evaluation_strategy "steps" \
    --eval_steps 250 \
    --save_strategy "steps" \
    --save_steps 250 \
    --save_total_limit 100 \
    --learning_rate 1e-4 \
    --weight_decay 0. \
    --warmup_ratio 0.03 \
    --lr_scheduler_type "constant" \
    --logging_steps 1 \
    --model_max_length 2048 \
    --gradient_checkpointing True \
    --lazy_preprocess True \
    --max_eval_samples 1000 \
    --double_quant \
    --quant_type nf4 \
    --bits 4 \
    --lora_r 64 \
    --lora_alpha 16 \
    --lora_dropout 0.05 \
    --max_memory_MB 80000 \
    --ddp_find_unused_parameters False \
    --max_grad_norm 0.3 \
    "$@"
# Resume from an adapter checkpoint keeping the optimizer, scheduler and data position of the
# newest checkpoint in OUTPUT_DIR/checkpoints (they must match), as the original:
#   bash scripts/train/train_camel_qlora.sh --checkpoint_path "$OUTPUT_DIR/checkpoints/checkpoint-N" \
#       --load_weights False
