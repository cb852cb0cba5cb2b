#!/usr/bin/env python3
"""Prints the results table of docs/performance.md from criterion's files.

Reads every `<criterion dir>/**/new/{benchmark,estimates}.json` written by
`cargo bench --bench hotpaths` and prints one Markdown row per case: the tidelog figure, the raw
limit measured in the same run, their ratio and the command that measures that row again.

    python3 benches/report.py [criterion dir]

The directory defaults to `$CARGO_TARGET_DIR/criterion`, else `target/criterion` of this
workspace. Figures are criterion's median time per iteration; rates are the benchmark's
throughput divided by it. A case is `<group>/<case>/tidelog` with its reference
`<group>/<case>/raw`, or `<group>/<case>/c_abi` with `<group>/<case>/rust`; the ratio is the
measured rate over the reference rate, so 1.0 means as fast as the reference. Other benchmarks
(those of the other bench files share the directory) are left out.
"""

import datetime
import json
import os
import re
import sys

GROUPS = [
    "append",
    "batch",
    "load_seq",
    "load_last",
    "load_next",
    "num_pending",
    "ttl_expire",
    "fetch_ack",
    "recovery",
    "compaction",
    "ffi",
]
REFERENCE = {"tidelog": "raw", "c_abi": "rust"}
# What one element of an `Elements` throughput is, when not a message.
ELEMENT = {"num_pending": "calls"}
DURABILITY = {"none": 0, "always": 1}


def criterion_dir():
    if len(sys.argv) > 1:
        return sys.argv[1]
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "target"
    )
    return os.path.join(target, "criterion")


def results(root):
    found = {}
    for path, _, files in os.walk(root):
        if os.path.basename(path) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(path, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(path, "estimates.json")) as f:
            est = json.load(f)
        found[bench["full_id"]] = {
            "ns": est["median"]["point_estimate"],
            "throughput": bench.get("throughput") or {},
            "mtime": os.path.getmtime(os.path.join(path, "estimates.json")),
        }
    return found


def sig(x, digits=3):
    """`x` with `digits` significant digits, no exponent."""
    if x == 0:
        return "0"
    places = max(0, digits - 1 - int(f"{abs(x):e}".split("e")[1]))
    return f"{x:.{places}f}"


def time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{sig(ns / scale)} {unit}"
    return f"{sig(ns)} ns"


def rate(r, group):
    tp = r["throughput"]
    per_s = 1e9 / r["ns"]
    if "Bytes" in tp or "BytesDecimal" in tp:
        b = (tp.get("Bytes") or tp.get("BytesDecimal")) * per_s
        for unit, scale in (("GiB/s", 2**30), ("MiB/s", 2**20), ("KiB/s", 2**10)):
            if b >= scale:
                return b, f"{sig(b / scale)} {unit}"
        return b, f"{sig(b)} B/s"
    n = tp.get("Elements", 1) * per_s
    word = ELEMENT.get(group, "msgs")
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return n, f"{sig(n / scale)}{unit} {word}/s"
    return n, f"{sig(n)} {word}/s"


def figure(r, group):
    per_s, text = rate(r, group)
    return per_s, f"{text} ({time(r['ns'])}/op)"


def order(case):
    parts = case.split("/")
    group = parts[0]
    size = 0
    m = re.fullmatch(r"(\d+)(B|KiB|MiB)", parts[1]) if len(parts) > 1 else None
    if m:
        size = int(m.group(1)) * {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20}[m.group(2)]
    rank = DURABILITY.get(parts[2], 9) if len(parts) > 2 else 9
    return (GROUPS.index(group), size, rank, case)


def main():
    root = criterion_dir()
    found = results(root)
    rows = []
    used = []
    for full_id, r in found.items():
        case, _, last = full_id.rpartition("/")
        group = case.split("/")[0]
        if group not in GROUPS or last not in REFERENCE:
            continue
        ref = found.get(f"{case}/{REFERENCE[last]}")
        used += [r] + ([ref] if ref else [])
        rows.append((case, last, r, ref))
    if not rows:
        sys.exit(f"no results of `cargo bench --bench hotpaths` under {root}")
    rows.sort(key=lambda row: order(row[0]))

    stamp = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    mtimes = [r["mtime"] for r in used]
    print(f"Results written {stamp(min(mtimes))} to {stamp(max(mtimes))}.\n")
    print("| Hot path | tidelog | Raw limit, same run | tidelog / raw | Reproduce |")
    print("| --- | --- | --- | --- | --- |")
    for case, last, r, ref in rows:
        group = case.split("/")[0]
        per_s, text = figure(r, group)
        if last == "c_abi":
            text = f"C ABI: {text}"
        if ref is None:
            ref_text, ratio = "n/a", "n/a"
        else:
            ref_per_s, ref_text = figure(ref, group)
            if last == "c_abi":
                ref_text = f"Rust: {ref_text}"
            q = per_s / ref_per_s
            ratio = f"{q:.2f}" if q >= 0.1 else sig(q, 2)
        cmd = f"`cargo bench --bench hotpaths -- '{case}/'`"
        print(f"| `{case}` | {text} | {ref_text} | {ratio} | {cmd} |")


if __name__ == "__main__":
    main()
