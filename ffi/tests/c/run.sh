#!/usr/bin/env bash
# The C host tests: builds libtidelog, checks that include/tidelog.h compiles on its own (as
# C99, C11 and C++17) and that tidelog_test.c calls every function it declares, then runs
# tidelog_test.c against the static library under AddressSanitizer + UndefinedBehaviorSanitizer
# and under valgrind.
# Every step runs even when an earlier one failed, so one run reports everything; the exit
# status is non-zero if any step failed.
#
# Usage: ffi/tests/c/run.sh [test-name-substring]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
HERE=ffi/tests/c
OUT=target/c-host
mkdir -p "$OUT"
FILTER=("$@")

started=$(date +%s)
failures=()
step() { printf '\n== %s\n' "$*"; }
failed() {
    failures+=("$1")
    printf '!! FAILED: %s\n' "$1"
}

step "cargo build -p tidelog-ffi"
cargo build -p tidelog-ffi

CFLAGS=(-std=c11 -Wall -Wextra -Werror -Wpedantic -g -I include)
# The native libraries the Rust standard library needs in a static link.
LIBS=(target/debug/libtidelog.a -lgcc_s -lutil -lrt -lpthread -lm -ldl)

step "include/tidelog.h compiles on its own (C99, C11 and C++17)"
# Uses the typedef names and the functions that once shared them, so that a clash between a
# typedef and a function fails here rather than in a host's build.
cat >"$OUT/header_only.c" <<'EOF'
#include "tidelog.h"
int main(void) {
    tidelog_stream_state ss;
    tidelog_consumer_state cs;
    tidelog_error_info ei = tidelog_error_get_info(NULL);
    tidelog_msg_view mv = tidelog_msg_get_view(NULL);
    tidelog_message m;
    tidelog_packed_message pm;
    enum tidelog_status (*get_stream)(const tidelog_stream *, tidelog_stream_state *,
                                      tidelog_error *) = tidelog_stream_get_state;
    enum tidelog_status (*get_consumer)(const tidelog_consumer *, tidelog_consumer_state *,
                                        tidelog_error *) = tidelog_consumer_get_state;
    (void)m;
    (void)pm;
    int bad = get_stream(NULL, &ss, NULL) != TIDELOG_STATUS_NULL_ARGUMENT ||
              get_consumer(NULL, &cs, NULL) != TIDELOG_STATUS_NULL_ARGUMENT ||
              ei.status != 0 || mv.seq != 0;
    return !bad && tidelog_abi_version() == TIDELOG_ABI_VERSION ? 0 : 1;
}
EOF
header_ok=1
for std in c99 c11; do
    if gcc -std=$std -Wall -Wextra -Werror -Wpedantic -I include "$OUT/header_only.c" \
        -o "$OUT/header_only_$std" "${LIBS[@]}" && "$OUT/header_only_$std"; then
        echo "ok: $std"
    else
        echo "   $std: failed"
        header_ok=0
    fi
done
if ! command -v g++ >/dev/null 2>&1; then
    echo "   g++ is not installed"
    header_ok=0
elif g++ -std=c++17 -Wall -Wextra -Werror -Wpedantic -I include -x c++ "$OUT/header_only.c" \
    -x none -o "$OUT/header_only_cxx" "${LIBS[@]}" && "$OUT/header_only_cxx"; then
    echo "ok: c++17"
else
    echo "   c++17: failed"
    header_ok=0
fi
[ "$header_ok" = 1 ] || failed "include/tidelog.h does not compile on its own (errors above)"

step "every function declared in include/tidelog.h is called in tidelog_test.c"
declared=$(grep -o 'tidelog_[a-z_0-9]*(' include/tidelog.h | tr -d '(' | sort -u)
# Comments are stripped first, so a name that only appears in one does not count.
code=$(gcc -fpreprocessed -dD -E -P "$HERE/tidelog_test.c")
missing=()
for f in $declared; do
    grep -Eq "(^|[^A-Za-z_0-9])$f[[:space:]]*\\(" <<<"$code" || missing+=("$f")
done
total=$(wc -w <<<"$declared")
if [ "${#missing[@]}" -eq 0 ]; then
    echo "ok: all $total functions are called"
else
    printf '   never called: %s\n' "${missing[@]}"
    failed "${#missing[@]} of $total header functions are never called"
fi

step "tests under AddressSanitizer + UndefinedBehaviorSanitizer"
gcc "${CFLAGS[@]}" -fsanitize=address,undefined -fno-sanitize-recover=all \
    -fno-omit-frame-pointer "$HERE/tidelog_test.c" -o "$OUT/tidelog_test_asan" "${LIBS[@]}"
# Leak detection is on: the C side frees everything it is given, so any leak is reported.
# max_leaks keeps a report of many leaked objects readable.
if ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1" \
    LSAN_OPTIONS="max_leaks=12" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "$OUT/tidelog_test_asan" "${FILTER[@]}"; then
    echo "ok"
else
    failed "sanitizer run (test failures, or a sanitizer finding above)"
fi

step "tests under valgrind (quick workloads)"
if command -v valgrind >/dev/null 2>&1; then
    gcc "${CFLAGS[@]}" "$HERE/tidelog_test.c" -o "$OUT/tidelog_test" "${LIBS[@]}"
    log="$OUT/valgrind.log"
    set +e
    TIDELOG_TEST_QUICK=1 valgrind --error-exitcode=1 --leak-check=full --num-callers=40 \
        --errors-for-leak-kinds=definite --show-leak-kinds=definite --log-file="$log" \
        "$OUT/tidelog_test" "${FILTER[@]}"
    vg=$?
    set -e
    errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$log" | tail -1)
    if [ "${errors:-0}" != 0 ]; then
        # The report without blank lines and without frames inside the Rust standard library
        # and the panic guard, so each record shows the library and test frames that matter.
        awk '/^==[0-9]+== *$/ { next }
             /(by|at) 0x/ && /library\/(alloc|core|std)\/|vgpreload|unix\.rs|alloc\.rs|__rust_try|panicking\.rs|unwind_safe/ { next }
             n++ < 200' "$log"
        echo "   (full report: $log)"
        failed "valgrind found $errors error(s)"
    elif [ "$vg" != 0 ]; then
        failed "test failures under valgrind"
    else
        echo "ok (report: $log)"
    fi
else
    failed "valgrind is not installed"
fi

step "summary ($(($(date +%s) - started)) s)"
if [ "${#failures[@]}" -eq 0 ]; then
    echo "all steps passed"
    exit 0
fi
printf '  - %s\n' "${failures[@]}"
exit 1
