#!/usr/bin/env bash
# Prints the connection settings of the services started by test/infra/*.sh, for eval:
#   eval "$(test/infra/env.sh)"
set -euo pipefail
cat <<'VARS'
export GOVMAP_REDIS_URL=redis://127.0.0.1:6390
export GOVMAP_REDIS_CLUSTER_NODES=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
export GOVMAP_ETCD_ENDPOINTS=http://127.0.0.1:2389
export GOVMAP_KAFKA_BROKERS=127.0.0.1:9092
export GOVMAP_PROMETHEUS_URL=http://127.0.0.1:9095
VARS
