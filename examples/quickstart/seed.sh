#!/usr/bin/env bash
# Builds the quickstart's world in a running iaprun-emulator through the real Cloud Run Admin API v2:
# one Cloud Run service, "hello" in us-central1 of project "quickstart-project".
# Usage: seed.sh HOST:PORT
set -euo pipefail
emulator=${1:?usage: seed.sh HOST:PORT}
project=${QUICKSTART_PROJECT:-quickstart-project}
region=${QUICKSTART_REGION:-us-central1}

curl -fsS -X POST \
  -H "Authorization: Bearer quickstart" -H "Content-Type: application/json" \
  "http://$emulator/v2/projects/$project/locations/$region/services?serviceId=hello" \
  -d '{
        "ingress": "INGRESS_TRAFFIC_ALL",
        "template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello",
                                      "ports": [{"name": "http1", "containerPort": 8080}]}]}
      }' > /dev/null
