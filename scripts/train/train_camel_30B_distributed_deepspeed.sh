#!/bin/bash
# Full finetune of LLaMA-30B on 4 nodes x 4 GPUs with DeepSpeed ZeRO-3, optimizer and parameters
# offloaded to CPU (configs/ds_config_zero3_offload.json; 16-bit weights are gathered on save, so
# final/ holds a whole model). Global batch 128 (1 x 8 accumulation x 16 GPUs), lr 2e-5.
# Usage: MODEL_PATH=... DATA_PATH=... sbatch scripts/train/train_camel_30B_distributed_deepspeed.sh
# Needs `pip install deepspeed` on the nodes; OUTPUT_DIR on storage every node sees.
#SBATCH --job-name=camel-30b-ds
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=24
#SBATCH --mem=0
#SBATCH --time=24:00:00
#SBATCH --output=slurm/%x.%A.out
#SBATCH --error=slurm/%x.%A.err
##SBATCH --reservation=A100
set -euo pipefail
MODEL_PATH=${MODEL_PATH:-<path_to_hf_llama_model>}
DATA_PATH=${DATA_PATH:-<path_to_dataset.json_file>}
OUTPUT_DIR=${OUTPUT_DIR:-./output/camel-30b}
PRESET=camel-30b-full-deepspeed
source "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}/scripts/train/common.sh"
require_filled MODEL_PATH DATA_PATH
MAIN_HOST=$(first_node)
MAIN_PORT=$(free_port)

srun --ntasks-per-node=1 bash -c "$ACCELERATE launch --config_file $CONFIGS/$PRESET.yaml \
    --machine_rank \$SLURM_NODEID --main_process_ip $MAIN_HOST --main_process_port $MAIN_PORT \
    -m services.trainer.train --preset $PRESET \
    --base-model '$MODEL_PATH' --data-path '$DATA_PATH' --output-dir '$OUTPUT_DIR' $*"
