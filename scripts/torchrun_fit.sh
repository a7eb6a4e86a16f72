#!/bin/bash
# Multi-GPU training on one node (or several) without SLURM, started by torchrun; Lightning picks up
# torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR).
#   scripts/torchrun_fit.sh configs/seg_unet3d.yaml /data/Task09_Spleen 4
set -euo pipefail
CONFIG=${1:-configs/seg_unet3d.yaml}
DATA=${2:?give the dataset folder}
GPUS=${3:-$(nvidia-smi -L | wc -l)}
exec .venv/bin/torchrun --standalone --nproc_per_node "$GPUS" -m medimg fit --config "$CONFIG" \
    --data.dataset_dir "$DATA" --trainer.devices "$GPUS" --trainer.strategy ddp --trainer.precision bf16-mixed "${@:4}"
