# Shared by the launch scripts in this folder; sourced, not run.
#
# Submit from the repository root: `mkdir -p slurm && sbatch scripts/train/<script>.sh` (Slurm
# opens the slurm/ log files before the script runs), or run with `bash` on a node directly.
#
# Placeholders: set MODEL_PATH (a Hugging Face LLaMA folder) and DATA_PATH (a conversation-format
# .json/.jsonl, e.g. the ingestor's dataset.jsonl) in the environment, or edit the defaults at the
# top of each script. OUTPUT_DIR is the job folder: rerunning with the same one resumes from its
# newest complete checkpoint. Extra arguments are appended to the trainer's command line: the
# original's flags (any TrainingArguments flag, e.g. --learning_rate 1e-5 --max_steps 100) for the
# train_mem/train_qlora scripts, services.trainer.train's flags for the DeepSpeed one.

# Run from the repository root: under sbatch the script itself is a copy in Slurm's spool folder.
cd "${SLURM_SUBMIT_DIR:-$(dirname "${BASH_SOURCE[0]}")/../..}"
PYTHON=${PYTHON:-python}
ACCELERATE=${ACCELERATE:-accelerate}
TORCHRUN=${TORCHRUN:-torchrun}
CONFIGS=scripts/train/configs

require_filled() {
    # Fail early on a placeholder that was not replaced.
    local name
    for name in "$@"; do
        if [[ -z "${!name:-}" || "${!name}" == \<*\> ]]; then
            echo "set $name (now: '${!name:-}'); see the comment at the top of $0" >&2
            exit 2
        fi
    done
}

free_port() {
    # A free TCP port on this host, found by binding port 0 (as the original scripts did).
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

first_node() {
    # The rendezvous host: the first node of the Slurm allocation, or this host outside Slurm.
    if [[ -n "${SLURM_JOB_NODELIST:-}" ]]; then
        scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1
    else
        hostname
    fi
}
