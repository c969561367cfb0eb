#!/bin/sh
# Builds the fuzz targets on stable Rust: SanitizerCoverage through -C passes / -C llvm-args (the
# instrumentation cargo-fuzz asks for, minus AddressSanitizer, which needs nightly).
set -eu
cd "$(dirname "$0")"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps these flags off build scripts and proc macros (they cannot link them).
host="$(rustc -vV | sed -n 's/^host: //p')"
exec cargo build --release --bins --target "$host" "$@"
