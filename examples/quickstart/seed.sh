#!/usr/bin/env bash
# Builds the quickstart's world in a running iaprun-emulator through the real Cloud Run Admin API v2, as
# gcloud or the google provider would: one Cloud Run service, "hello" in us-central1 of project
# "quickstart-project". Waits for the create operation to finish. Prints the service's name.
# Usage: seed.sh HOST:PORT
set -euo pipefail
emulator=${1:?usage: seed.sh HOST:PORT}
project=${QUICKSTART_PROJECT:-quickstart-project}
region=${QUICKSTART_REGION:-us-central1}
api="http://$emulator/v2"
auth="Authorization: Bearer quickstart"

operation=$(curl -fsS -X POST -H "$auth" -H "Content-Type: application/json" \
  "$api/projects/$project/locations/$region/services?serviceId=hello" \
  -d '{
        "ingress": "INGRESS_TRAFFIC_ALL",
        "template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello",
                                      "ports": [{"name": "http1", "containerPort": 8080}]}]}
      }')
name=$(printf '%s' "$operation" | grep -o '"name" *: *"[^"]*/operations/[^"]*"' | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')
[ -n "$name" ] || { echo "no operation in the answer: $operation" >&2; exit 1; }

done_operation=$(curl -fsS -X POST -H "$auth" -H "Content-Type: application/json" \
  "$api/$name:wait" -d '{"timeout": "60s"}')
if ! printf '%s' "$done_operation" | grep -q '"done" *: *true' ||
  printf '%s' "$done_operation" | grep -q '"error" *:'; then
  echo "creating the Cloud Run service did not finish: $done_operation" >&2
  exit 1
fi
echo "projects/$project/locations/$region/services/hello"
