#!/usr/bin/env bash
# Submits the training job to a GKE TPU cluster with XPK
# (https://github.com/AI-Hypercomputer/xpk), which builds the image from this
# directory and starts python -m audiopt.main on every host of every slice.
#   launch/xpk.sh CLUSTER TPU_TYPE NUM_SLICES CONFIG WORKDIR [overrides...]
# Example:
#   launch/xpk.sh my-cluster v5p-128 2 configs/mtc.py gs://bucket/runs/mtc \
#     --config.data.data_dir=gs://bucket/tfds --config.data.name=uts_records
# XPK_ZONE, XPK_PROJECT and XPK_WORKLOAD (default audiopt-<unix time>) pass
# through; XPK_DRY_RUN=1 prints the xpk command instead of running it.
set -euo pipefail
cluster=${1:?cluster}; tpu_type=${2:?TPU type, e.g. v5p-128}
slices=${3:?number of slices}; config=${4:?config}; workdir=${5:?workdir}
shift 5
overrides=$(printf ' %q' "$@")
cmd=(xpk workload create --cluster="$cluster" --tpu-type="$tpu_type"
     --num-slices="$slices" --workload="${XPK_WORKLOAD:-audiopt-$(date +%s)}"
     --base-docker-image=python:3.11
     --command="pip install -q -e . 'jax[tpu]' && AUDIOPT_DISTRIBUTED=auto python -m audiopt.main --config=$config --workdir=$workdir$overrides")
[ -n "${XPK_ZONE:-}" ] && cmd+=(--zone="$XPK_ZONE")
[ -n "${XPK_PROJECT:-}" ] && cmd+=(--project="$XPK_PROJECT")
if [ "${XPK_DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${cmd[@]}"; echo
else
  exec "${cmd[@]}"
fi
