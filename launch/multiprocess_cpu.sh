#!/usr/bin/env bash
# N processes on this machine, joined by jax.distributed with CPU (gloo)
# collectives: the multi-host code path without a cluster.
#   launch/multiprocess_cpu.sh NUM_PROCESSES DEVICES_PER_PROCESS CONFIG WORKDIR [overrides...]
# Example: launch/multiprocess_cpu.sh 2 4 configs/demo.py /tmp/audiopt_mp
# Logs go to WORKDIR/process_<i>.log; the exit status is the first failure's.
set -uo pipefail
num=${1:?number of processes}; per=${2:?devices per process}
config=${3:?config file}; workdir=${4:?workdir}; shift 4
port=${AUDIOPT_PORT:-$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
mkdir -p "$workdir"
pids=()
for ((i = 0; i < num; i++)); do
  JAX_PLATFORMS=cpu \
  XLA_FLAGS="--xla_force_host_platform_device_count=$per" \
  AUDIOPT_COORDINATOR="127.0.0.1:$port" AUDIOPT_NUM_PROCESSES="$num" AUDIOPT_PROCESS_ID="$i" \
    python -m audiopt.main --config="$config" --workdir="$workdir" "$@" \
    >"$workdir/process_$i.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || { [ $status -eq 0 ] && status=$?; }
done
exit $status
