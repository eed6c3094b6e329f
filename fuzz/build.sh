#!/usr/bin/env bash
# Builds every fuzz target as `cargo fuzz build` does (libFuzzer with
# SanitizerCoverage, release with debug assertions), with nothing but the
# nightly toolchain: cargo-fuzz itself is not needed. CI runs it last (.ci/run),
# so that an API change cannot break the targets unseen.
#
# usage: fuzz/build.sh            then, e.g. (bounded, and reports its runs):
#   ~/.cache/irsa-proxy/fuzz-target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release/webhook \
#     -max_total_time=120 "$(mktemp -d)" fuzz/seeds/webhook
# With cargo-fuzz installed, `cargo +nightly fuzz run webhook` is the same.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
# Outside the checkout, like the image replay's cache: CI runs on a fresh clone,
# and a nightly build of the whole dependency tree takes 15 minutes on 2 cores.
target_dir="${IRSA_PROXY_FUZZ_TARGET:-${XDG_CACHE_HOME:-$HOME/.cache}/irsa-proxy/fuzz-target}"
# --target: the flags then reach the targets but not build scripts and proc
# macros, which libFuzzer's runtime is not linked into.
RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions" \
  CARGO_TARGET_DIR="$target_dir" \
  cargo +nightly build --quiet --release --manifest-path fuzz/Cargo.toml --bins --target "$host"
echo "fuzz targets built in $target_dir/$host/release: $(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -vx irsa-proxy-fuzz | tr '\n' ' ')"
