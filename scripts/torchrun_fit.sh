#!/bin/bash
# Multi-GPU training on one node (or several) without SLURM, started by torchrun; Lightning picks up
# torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR).
#   scripts/torchrun_fit.sh CONFIG DATASET_DIR [PROCESSES] [medimg fit options ...]
#   scripts/torchrun_fit.sh configs/seg_unet3d.yaml /data/Task09_Spleen 4
# PROCESSES defaults to the node's GPUs. Without GPUs (DDP over gloo), give the count and the accelerator:
#   scripts/torchrun_fit.sh configs/seg_unet3d.yaml /data/Task09_Spleen 2 --trainer.accelerator cpu
# medimg runs from $MEDIMG_VENV (default .venv). A run that gets SIGUSR1 checkpoints and exits with 75.
set -euo pipefail
die() {
    echo "torchrun_fit: error: $*" >&2
    exit 2
}
CONFIG=${1:-}
DATA=${2:-}
[[ -n $CONFIG && -n $DATA ]] || die "usage: scripts/torchrun_fit.sh CONFIG DATASET_DIR [PROCESSES] [medimg fit options]"
[[ -d $DATA ]] || die "dataset folder $DATA does not exist on $(hostname -s)"
VENV=${MEDIMG_VENV:-.venv}
ACCEL=gpu
for ((i = 4; i <= $#; i++)); do
    case ${!i} in
        --trainer.accelerator) j=$((i + 1)) && ACCEL=${!j:-} ;;
        --trainer.accelerator=*) ACCEL=${!i#*=} ;;
    esac
done
if [[ -n ${3:-} ]]; then
    PROCS=$3
elif [[ $ACCEL != cpu ]] && command -v nvidia-smi >/dev/null; then
    PROCS=$(nvidia-smi -L | grep -c '^GPU' || true)
else
    die "no GPU found (nvidia-smi): give the number of processes as the third argument and --trainer.accelerator cpu"
fi
[[ $PROCS =~ ^[1-9][0-9]*$ ]] || die "PROCESSES must be a positive number, not '$PROCS'"
if [[ $ACCEL == cpu ]]; then PRECISION=32-true; else PRECISION=bf16-mixed; fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec "$VENV/bin/torchrun" --standalone --nproc_per_node "$PROCS" -m medimg fit --config "$CONFIG" \
    --data.dataset_dir "$DATA" --trainer.accelerator "$ACCEL" --trainer.devices "$PROCS" \
    --trainer.strategy ddp --trainer.precision "$PRECISION" "${@:4}"
