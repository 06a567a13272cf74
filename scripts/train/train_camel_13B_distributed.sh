#!/bin/bash
# Full finetune of LLaMA-13B on 2 nodes x 4 GPUs: one `accelerate launch` per node (srun), c10d
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
PRESET=camel-13b-full-2node
source "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}/scripts/train/common.sh"
require_filled MODEL_PATH DATA_PATH
MAIN_HOST=$(first_node)
MAIN_PORT=$(free_port)

# SLURM_NODEID is expanded by each task, on its own node.
srun --ntasks-per-node=1 bash -c "$ACCELERATE launch --config_file $CONFIGS/$PRESET.yaml \
    --machine_rank \$SLURM_NODEID --main_process_ip $MAIN_HOST --main_process_port $MAIN_PORT \
    -m services.trainer.train --preset $PRESET \
    --base-model '$MODEL_PATH' --data-path '$DATA_PATH' --output-dir '$OUTPUT_DIR' $*"
