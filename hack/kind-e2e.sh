#!/usr/bin/env bash
# For people with Docker and kind (not run in CI here: these machines have no Docker engine).
# Creates a kind cluster, builds and loads the image, deploys Sluice, and applies the sample connector.
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER="${KIND_CLUSTER:-sluice}"
IMAGE="${IMAGE:-sluice:dev}"
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed; kind-e2e needs Docker, kind and kubectl" >&2; exit 1; }
done
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER"
docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"
kubectl kustomize manifests/ | sed "s#image: ghcr.io/sluice-dev/sluice:0.1.0#image: $IMAGE#" | kubectl apply -f -
kubectl -n sluice-system rollout status deploy/sluice-operator --timeout=180s
kubectl -n sluice-system rollout status deploy/sluice-api --timeout=180s
echo "Sluice is deployed. Point manifests/samples/postgres-to-postgres.yaml at your databases, then:"
echo "  kubectl apply -f manifests/samples/postgres-to-postgres.yaml && kubectl get connectors -w"
