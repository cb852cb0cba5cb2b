//! Shared by the model-based test files.

use proptest::test_runner::Config;

/// Proptest settings of the model tests: `TIDELOG_MODEL_CASES` overrides the number of cases,
/// and failures are reported, not written into the source tree.
pub fn model_config(default_cases: u32) -> Config {
    Config {
        cases: std::env::var("TIDELOG_MODEL_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_cases),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    }
}

/// Prints a case's steps when `TIDELOG_MODEL_TRACE` is set.
pub fn print_trace(trace: &[String]) {
    if std::env::var_os("TIDELOG_MODEL_TRACE").is_some() {
        eprintln!("---- case ----\n{}", trace.join("\n"));
    }
}
