#!/bin/bash
# Train every cross-validation fold of a config one after another on this machine: the members of an ensemble
# (nnU-Net's way; `medimg segment FOLD0.ckpt FOLD1.ckpt ... IMAGE OUT.nii.gz` averages them). On SLURM, train the
# folds side by side instead: `sbatch --array=0-(K-1) scripts/slurm_fit.sbatch CONFIG DATA` (one fold per task).
#   scripts/fit_folds.sh CONFIG DATASET_DIR FOLDS [medimg fit options ...]
#   scripts/fit_folds.sh configs/seg_unet3d.yaml data/Task09_Spleen 5 --trainer.max_epochs 300
# Fold K trains with --data.fold K --data.num_folds FOLDS into $MEDIMG_RUN_DIR/fold_K (default outputs/runs/folds);
# a fold whose folder already has checkpoints/last.ckpt resumes from it, so running the script again continues
# where it stopped. medimg runs from $MEDIMG_VENV (default .venv). Stops at the first fold that fails.
set -euo pipefail
die() {
    echo "fit_folds: error: $*" >&2
    exit 2
}
CONFIG=${1:-}
DATA=${2:-}
FOLDS=${3:-}
[[ -n $CONFIG && -n $DATA && -n $FOLDS ]] || die "usage: scripts/fit_folds.sh CONFIG DATASET_DIR FOLDS [medimg fit options]"
[[ -f $CONFIG ]] || die "config file $CONFIG not found (working directory $PWD)"
[[ -d $DATA ]] || die "dataset folder $DATA does not exist"
[[ $FOLDS =~ ^[1-9][0-9]*$ ]] || die "FOLDS must be a positive number (the number of cross-validation folds), not '$FOLDS'"
MEDIMG=${MEDIMG_VENV:-.venv}/bin/medimg
[[ -x $MEDIMG ]] || die "$MEDIMG not found: run 'make setup' or set MEDIMG_VENV"
ROOT=${MEDIMG_RUN_DIR:-outputs/runs/folds}
for ((k = 0; k < FOLDS; k++)); do
    RUN=$ROOT/fold_$k
    CKPT=()
    [[ -f $RUN/checkpoints/last.ckpt ]] && CKPT=(--ckpt_path last)
    echo "fit_folds: fold $k of $FOLDS, run folder $RUN${CKPT:+, resuming from last.ckpt}"
    "$MEDIMG" fit --config "$CONFIG" --data.dataset_dir "$DATA" --trainer.default_root_dir "$RUN" \
        "${CKPT[@]}" "${@:4}" --data.num_folds "$FOLDS" --data.fold "$k"
done
echo "fit_folds: $FOLDS fold(s) trained: $ROOT/fold_*/checkpoints/last.ckpt"
