#!/bin/sh
# One-shot `temporal-setup` job of docker-compose.yml (temporalio/admin-tools): waits until the
# frontend answers its health check, then creates the namespace unless it exists. The custom search
# attributes are registered afterwards by `temporal-search-attributes` (agent-runtime's own list).
set -eu
address=${TEMPORAL_ADDRESS:?}
namespace=${TEMPORAL_NAMESPACE:?}
retention=${TEMPORAL_NAMESPACE_RETENTION:-168h}

tries=0
until temporal operator cluster health --address "$address"; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then
    echo "Temporal at $address did not report SERVING within 120 s" >&2
    exit 1
  fi
  sleep 2
done

if temporal operator namespace describe --address "$address" --namespace "$namespace" >/dev/null 2>&1; then
  echo "namespace $namespace exists"
else
  temporal operator namespace create --address "$address" --namespace "$namespace" --retention "$retention"
  echo "namespace $namespace created (retention $retention)"
fi
