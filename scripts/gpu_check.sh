#!/usr/bin/env bash
# Superseded by scripts/gpu_lease.sh (the whole prepared GPU lease); kept so old notes still work.
exec bash "$(dirname "$0")/gpu_lease.sh" "$@"
