#!/usr/bin/env bash
# One process on this machine, all its devices.
#   launch/local.sh CONFIG WORKDIR [--config.key=value ...]
# Example: launch/local.sh configs/demo.py /tmp/audiopt_demo
set -euo pipefail
config=${1:?config file}; workdir=${2:?workdir}; shift 2
exec python -m audiopt.main --config="$config" --workdir="$workdir" "$@"
