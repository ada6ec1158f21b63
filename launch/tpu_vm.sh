#!/usr/bin/env bash
# Starts the same job on every worker of a Cloud TPU VM slice. JAX discovers
# the slice itself (AUDIOPT_DISTRIBUTED=auto -> jax.distributed.initialize()).
#   launch/tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [overrides...]
# WORKDIR should be a gs:// path or a shared file system seen by all workers.
# The repository must be checked out at ~/audiopt on every worker; set
# AUDIOPT_SETUP=1 to clone-free install it there first (pip install -e).
# Example:
#   launch/tpu_vm.sh my-v5p-64 us-east5-a configs/mtc.py gs://bucket/runs/mtc \
#     --config.data.data_dir=gs://bucket/tfds --config.data.name=uts_records
set -euo pipefail
tpu=${1:?TPU name}; zone=${2:?zone}; config=${3:?config}; workdir=${4:?workdir}
shift 4
overrides=$(printf ' %q' "$@")
setup=""
if [ "${AUDIOPT_SETUP:-0}" = 1 ]; then
  setup="pip install -q -e ~/audiopt 'jax[tpu]' &&"
fi
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command="
  set -e; $setup cd ~/audiopt &&
  AUDIOPT_DISTRIBUTED=auto python -m audiopt.main \
    --config=$config --workdir=$workdir $overrides"
