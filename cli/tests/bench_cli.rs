//! Runs the built `tidelog` binary: `bench --json` in every durability mode, and the error
//! paths (bad arguments, a directory that already holds a bench store).

use std::process::{Command, Output};

use serde_json::Value;

fn tidelog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(args)
        .output()
        .expect("run tidelog")
}

/// Keys that must be present and positive.
const POSITIVE: &[&str] = &[
    "append_msgs_per_s",
    "append_mb_per_s",
    "append_p50_us",
    "append_p99_us",
    "append_p999_us",
    "load_random_per_s",
    "reopen_ms",
    "crash_recover_ms",
    "raw_write_mb_per_s",
    "append_vs_raw_ratio",
    "messages",
    "payload",
    "subjects",
    "producers",
    "batch",
];

fn bench_json(mode: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "bench",
        "--messages",
        "20000",
        "--json",
        "--durability",
        mode,
    ];
    args.extend_from_slice(extra);
    let out = tidelog(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{mode}: {:?} {stderr}", out.status);
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    assert_eq!(stdout.trim().lines().count(), 1, "one JSON line: {stdout}");
    serde_json::from_str(stdout.trim()).expect("stdout is JSON")
}

fn check(v: &Value, mode: &str) {
    for k in POSITIVE {
        let x = v[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{mode}: {k} missing in {v}"));
        assert!(x > 0.0, "{mode}: {k} = {x}");
    }
    assert_eq!(v["durability"], mode);
    assert_eq!(v["messages"], 20000);
    let backend = v["io_backend"].as_str().expect("io_backend");
    assert!(["io_uring", "pwrite"].contains(&backend), "{backend}");
    assert!(v["append_p50_us"].as_f64() <= v["append_p999_us"].as_f64());
    // With none/interval an acknowledged append may still be in the killed child's memory,
    // so only the counts' consistency is checked here.
    let (acked, recovered, lost) = (
        v["crash_acked_msgs"].as_u64().expect("crash_acked_msgs"),
        v["crash_recovered_msgs"]
            .as_u64()
            .expect("crash_recovered_msgs"),
        v["crash_lost_acked_msgs"]
            .as_u64()
            .expect("crash_lost_acked_msgs"),
    );
    assert!(acked > 0, "{mode}: the crash child acknowledged nothing");
    assert_eq!(lost, acked.saturating_sub(recovered));
}

#[test]
fn bench_none() {
    check(&bench_json("none", &[]), "none");
}

#[test]
fn bench_interval() {
    check(&bench_json("interval", &[]), "interval");
}

#[test]
fn bench_always() {
    let v = bench_json("always", &[]);
    check(&v, "always");
    let (acked, recovered) = (&v["crash_acked_msgs"], &v["crash_recovered_msgs"]);
    assert!(
        recovered.as_u64() >= acked.as_u64(),
        "{acked} > {recovered}"
    );
    assert!(recovered.as_u64() > Some(0));
    assert_eq!(v["crash_lost_acked_msgs"], 0);
}

#[test]
fn bench_batches_and_producers() {
    let v = bench_json("none", &["--batch", "100", "--producers", "3"]);
    check(&v, "none");
    assert_eq!(v["append_calls"], 201, "3 producers x ceil(6667/100)");
}

fn assert_one_line_error(out: &Output, code: i32) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("tidelog: error: "), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    for args in [
        &["bench", "--durability", "sometimes"][..],
        &["bench", "--messages", "0"],
        &["bench", "--producers", "many"],
        &["bench", "--frobnicate"],
        &["frob"],
        &[],
    ] {
        assert_one_line_error(&tidelog(args), 2);
    }
}

#[test]
fn help_is_available() {
    let out = tidelog(&["bench", "--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["--durability", "--producers", "--batch", "--json", "crash"] {
        assert!(text.contains(word), "{word} missing from help");
    }
    let top = tidelog(&["--help"]);
    assert!(String::from_utf8_lossy(&top.stdout).contains("bench"));
}

#[test]
fn existing_bench_store_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let args = ["bench", "--messages", "2000", "--json", "--dir", d];
    assert!(tidelog(&args).status.success());
    assert!(
        dir.path().join("streams").join("bench").is_dir(),
        "store left in place"
    );
    let again = tidelog(&args);
    assert_one_line_error(&again, 1);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already contains"));
}
