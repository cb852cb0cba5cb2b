#!/usr/bin/env bash
# Every test of the project: formatting, lints, the Rust suites on both I/O back ends,
# and the fuzz corpus replay. Installs nothing beyond the Rust toolchain today; later host
# tests (C, Go) install what they need here.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== tests (io back end: auto = io_uring where the kernel allows it)"
cargo test --workspace

echo "== engine tests again on the pwrite/fdatasync back end"
TIDELOG_IO=pwrite cargo test -p tidelog

echo "== timing targets, on optimized code"
cargo test --release -p tidelog --test ttl open_with_100k_already_expired_is_fast

echo "== loom models of the lock-free parts"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release -p tidelog --lib pending
