//! Runs the built `tidelog` binary: `bench --json` in every durability mode, with consumers,
//! TTLs, filters and message-size ranges, and the error paths (bad arguments, a directory
//! that already holds a bench store).

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
    let v = bench_json("none", &[]);
    check(&v, "none");
    assert_eq!(v["consumers"], 0);
    for k in [
        "ack",
        "consume_msgs_total",
        "consumer_runs",
        "ttl_secs",
        "filter",
    ] {
        assert!(v[k].is_null(), "{k} = {} without the option", v[k]);
    }
    assert_eq!(v["payload"], 128);
    assert_eq!(v["message_size_min"], 128);
    assert_eq!(v["message_size_max"], 128);
    assert_eq!(v["filter_matching_msgs"], 20000);
    assert_eq!(v["reopen_messages"], 20000);
    assert_eq!(v["load_random_missing"], 0);
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

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} missing or not a number in {v}"))
}

/// Every consumer read every matching message, in order, and acknowledged it.
fn check_consumers(v: &Value, n: u64, expected: u64, ack: &str) {
    assert_eq!(v["consumers"], n);
    assert_eq!(v["ack"], ack);
    assert_eq!(v["consume_expected_per_consumer"], expected);
    assert_eq!(v["consume_msgs_total"], n * expected);
    assert_eq!(v["consume_missed_msgs"], 0);
    assert_eq!(v["consume_redelivered"], 0);
    assert_eq!(v["consume_ack_floor_at_last"], true);
    let runs = v["consumer_runs"].as_array().expect("consumer_runs");
    assert_eq!(runs.len() as u64, n);
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r["name"], format!("bench-c{i}"));
        assert_eq!(r["msgs"], expected, "{r}");
        assert_eq!(r["ack_pending"], 0, "{r}");
        assert_eq!(r["ack_floor"], r["last_delivered"], "{r}");
        assert!(num(r, "msgs_per_s") > 0.0, "{r}");
    }
    for k in [
        "consume_msgs_per_s",
        "consume_fetch_p50_us",
        "consume_e2e_p50_us",
    ] {
        assert!(num(v, k) > 0.0, "{k} in {v}");
    }
    assert!(num(v, "consume_fetch_p50_us") <= num(v, "consume_fetch_p999_us"));
    assert!(num(v, "consume_e2e_p50_us") <= num(v, "consume_e2e_p99_us"));
    assert!(num(v, "consume_e2e_p99_us") <= num(v, "consume_e2e_p999_us"));
}

#[test]
fn bench_consumers_read_every_message() {
    let v = bench_json("none", &["--consumers", "2", "--ack", "explicit"]);
    check(&v, "none");
    check_consumers(&v, 2, 20000, "explicit");
    assert_eq!(v["consume_acks"], 40000, "one ack per message");
    assert!(num(&v, "consume_ack_p50_us") <= num(&v, "consume_ack_p999_us"));
}

#[test]
fn bench_consumers_with_filter_and_other_ack_policies() {
    let filter = ["--subjects", "10", "--filter", "bench.s3"];
    let v = bench_json(
        "interval",
        &[&["--consumers", "1", "--ack", "all"][..], &filter].concat(),
    );
    check_consumers(&v, 1, 2000, "all");
    assert_eq!(v["filter"], "bench.s3");
    assert_eq!(v["filter_matching_msgs"], 2000);
    assert!(num(&v, "consume_acks") >= 1.0);
    let v = bench_json(
        "none",
        &[&["--consumers", "3", "--ack", "none"][..], &filter].concat(),
    );
    check_consumers(&v, 3, 2000, "none");
    assert_eq!(v["consume_acks"], 0);
    assert!(v["consume_ack_p50_us"].is_null());
    // The default policy is explicit.
    let v = bench_json("none", &["--consumers", "1", "--filter", "bench.*"]);
    check_consumers(&v, 1, 20000, "explicit");
}

#[test]
fn bench_message_size_range_and_ttl() {
    let v = bench_json("none", &["--message-size", "64..1K", "--ttl", "1m"]);
    check(&v, "none");
    assert_eq!(v["message_size_min"], 64);
    assert_eq!(v["message_size_max"], 1024);
    // Uniform over 64..=1024: the mean of 20,000 draws is close to 544.
    let mean = num(&v, "payload");
    assert!((520.0..=568.0).contains(&mean), "mean payload {mean}");
    let total = num(&v, "payload_bytes_total");
    assert!((20000.0 * 64.0..=20000.0 * 1024.0).contains(&total));
    assert_eq!(v["ttl_secs"], 60);
    assert_eq!(v["ttl_expired_before_load"], 0);
    assert_eq!(v["ttl_expired_at_reopen"], 0);
    assert_eq!(v["load_random_missing"], 0);
    assert_eq!(v["reopen_messages"], 20000);
    assert!(num(&v, "ttl_run_secs") > 0.0);
}

#[test]
fn bench_fixed_sizes_and_short_ttl() {
    let v = bench_json(
        "none",
        &["--message-size", "4K", "--ttl", "1s", "--consumers", "1"],
    );
    assert_eq!(v["payload"], 4096);
    assert_eq!(v["message_size_min"], v["message_size_max"]);
    // Messages may expire during the run: the figures must add up, whatever the timing.
    let expired = v["ttl_expired_at_reopen"].as_u64().expect("expired");
    assert_eq!(v["reopen_messages"].as_u64(), Some(20000 - expired));
    assert!(num(&v, "load_random_missing") <= num(&v, "load_random_count"));
    let (got, missed) = (
        num(&v, "consume_msgs_total"),
        num(&v, "consume_missed_msgs"),
    );
    assert_eq!(got + missed, 20000.0);
    let v = bench_json("none", &["--payload", "256"]);
    assert_eq!(v["payload"], 256);
    assert_eq!(v["message_size_max"], 256);
}

#[test]
fn human_summary_names_the_new_options() {
    let out = tidelog(&[
        "bench",
        "--messages",
        "5000",
        "--consumers",
        "1",
        "--ttl",
        "5m",
        "--message-size",
        "64..128",
        "--subjects",
        "10",
        "--filter",
        "bench.s1",
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.is_empty(),
        "no progress bars off a terminal: {stderr:?}"
    );
    for want in [
        "64..128 B payloads",
        "1 consumer(s) with ack explicit",
        "filter bench.s1",
        "TTL 5 min",
        "\nconsume ",
        "end to end",
        "\nttl ",
        "load_next with filter bench.s1",
    ] {
        assert!(stdout.contains(want), "{want:?} missing from:\n{stdout}");
    }
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
        &["bench", "--messages", "100000000001"],
        &["bench", "--messages", "18446744073709551615"],
        &["bench", "--producers", "many"],
        &["bench", "--frobnicate"],
        &["bench", "--consumers", "0"],
        &["bench", "--ack", "explicit"],
        &["bench", "--consumers", "1", "--ack", "maybe"],
        &["bench", "--ttl", "5"],
        &["bench", "--ttl", "0s"],
        &["bench", "--message-size", "4KB"],
        &["bench", "--message-size", "64M"],
        &["bench", "--payload", "1", "--message-size", "2"],
        &["bench", "--filter", "bench.s1*"],
        &["frob"],
        &[],
    ] {
        assert_one_line_error(&tidelog(args), 2);
    }
}

#[test]
fn bad_new_arguments_say_what_is_wrong() {
    for (args, want) in [
        (
            &["--message-size", "10..5"][..],
            "invalid value '10..5' for '--message-size",
        ),
        (&["--message-size", "10..5"], "min above max"),
        (&["--ttl", "500ms"], "whole seconds"),
        (&["--ack", "all"], "'--ack' needs '--consumers N'"),
        (&["--filter", "bench..x"], "empty token"),
        (&["--filter", "orders.>"], "matches none of the subjects"),
        (
            &["--filter", "bench.s7", "--subjects", "5"],
            "bench.s0 to bench.s4",
        ),
        (&["--filter", "bench.s7", "--messages", "7"], "matches none"),
    ] {
        let out = tidelog(&[&["bench"][..], args].concat());
        assert_one_line_error(&out, 2);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(want),
            "{args:?}: {want:?} missing from {stderr}"
        );
    }
}

#[test]
fn help_is_available() {
    let out = tidelog(&["bench", "--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "--durability",
        "--producers",
        "--batch",
        "--json",
        "crash",
        "--message-size",
        "--ttl",
        "--consumers",
        "--ack",
        "--filter",
    ] {
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

#[test]
fn a_closed_stdout_is_not_an_error() {
    for extra in [&[][..], &["--json"]] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_tidelog"))
            .args([&["bench", "--messages", "1000"][..], extra].concat())
            .stdout(writer)
            .output()
            .expect("run tidelog");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{extra:?}: {stderr}");
        assert!(stderr.is_empty(), "{extra:?}: {stderr}");
    }
}

#[test]
fn crash_child_takes_any_time_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    let out = tidelog(&[
        "bench-child",
        "--dir",
        d,
        "--max-messages",
        "10",
        "--max-secs",
        "18446744073709551615",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("acked 10"));
}
