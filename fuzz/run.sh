#!/bin/sh
# Runs one fuzz target for SECONDS (default 300) on its corpus: ./run.sh value_codec 300
set -eu
cd "$(dirname "$0")"
target="$1"
seconds="${2:-300}"
mkdir -p "corpus/$target" "artifacts/$target"
host="$(rustc -vV | sed -n 's/^host: //p')"
exec "target/$host/release/$target" -max_total_time="$seconds" -max_len=4096 \
  -artifact_prefix="artifacts/$target/" "corpus/$target" "seeds/$target"
