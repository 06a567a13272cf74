#!/bin/bash
# Full finetune of LLaMA-7B on 1 node x 4 GPUs (A100-80GB): FSDP full_shard over decoder layers,
# bf16, gradient checkpointing, global batch 128 (2 x 16 accumulation x 4 GPUs), lr 2e-5 cosine.
# Usage: MODEL_PATH=... DATA_PATH=... sbatch scripts/train/train_camel_7B.sh [extra flags]
#    or: MODEL_PATH=... DATA_PATH=... bash scripts/train/train_camel_7B.sh [extra flags]
#SBATCH --job-name=camel-7b
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=24
#SBATCH --mem=128G
#SBATCH --time=24:00:00
#SBATCH --output=slurm/%x.%A.out
#SBATCH --error=slurm/%x.%A.err
##SBATCH --reservation=A100
set -euo pipefail
MODEL_PATH=${MODEL_PATH:-<path_to_hf_llama_model>}
DATA_PATH=${DATA_PATH:-<path_to_dataset.json_file>}
OUTPUT_DIR=${OUTPUT_DIR:-./output/camel-7b}
source "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}/scripts/train/common.sh"
require_filled MODEL_PATH DATA_PATH

"$TORCHRUN" --nproc_per_node=4 --master_port="$(free_port)" \
    -m services.trainer.train_mem \
    --model_name_or_path "$MODEL_PATH" \
    --data_path "$DATA_PATH" \
    --bf16 True \
    --output_dir "$OUTPUT_DIR" \
    --num_train_epochs 3 \
    --per_device_train_batch_size 2 \
    --per_device_eval_batch_size 16 \
    --gradient_accumulation_steps 16 \
    --evaluation_strategy "steps" \
    --eval_steps 1500 \
    --save_strategy "steps" \
    --save_steps 1500 \
    --save_total_limit 8 \
    --learning_rate 2e-5 \
    --weight_decay 0. \
    --warmup_ratio 0.04 \
    --lr_scheduler_type "cosine" \
    --logging_steps 1 \
    --fsdp "full_shard auto_wrap" \
    --fsdp_transformer_layer_cls_to_wrap 'LlamaDecoderLayer' \
    --tf32 True \
    --model_max_length 2048 \
    --gradient_checkpointing True \
    --lazy_preprocess True \
    "$@"
