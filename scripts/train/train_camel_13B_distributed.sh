#!/bin/bash
# Full finetune of LLaMA-13B on 2 nodes x 4 GPUs: one `torchrun` per node (srun), c10d
# rendezvous at the first node, FSDP full_shard, global batch 128 (4 x 4 accumulation x 8 GPUs).
# Usage: MODEL_PATH=... DATA_PATH=... sbatch scripts/train/train_camel_13B_distributed.sh
# OUTPUT_DIR must be on storage every node sees (checkpoints are written by rank 0).
#SBATCH --job-name=camel-13b-2node
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=24
#SBATCH --mem=384G
#SBATCH --time=24:00:00
#SBATCH --output=slurm/%x.%A.out
#SBATCH --error=slurm/%x.%A.err
##SBATCH --reservation=A100
set -euo pipefail
MODEL_PATH=${MODEL_PATH:-<path_to_hf_llama_model>}
DATA_PATH=${DATA_PATH:-<path_to_dataset.json_file>}
OUTPUT_DIR=${OUTPUT_DIR:-./output/camel-13b-2node}
source "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}/scripts/train/common.sh"
require_filled MODEL_PATH DATA_PATH
MAIN_HOST=$(first_node)
MAIN_PORT=$(free_port)

# One torchrun per node, meeting at the first node (c10d rendezvous), as the original.
srun --ntasks-per-node=1 "$TORCHRUN" --nnodes=2 --nproc_per_node=4 \
    --rdzv_id="${SLURM_JOB_ID:-camel}" --rdzv_backend=c10d --rdzv_endpoint="$MAIN_HOST:$MAIN_PORT" \
    -m services.trainer.train_mem \
    --model_name_or_path "$MODEL_PATH" \
    --data_path "$DATA_PATH" \
    --bf16 True \
    --output_dir "$OUTPUT_DIR" \
    --num_train_epochs 3 \
    --per_device_train_batch_size 4 \
    --per_device_eval_batch_size 32 \
    --gradient_accumulation_steps 4 \
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
