//! A runtime failure of a command: one line of text, printed once by `main`.

use std::error::Error;
use std::fmt;

/// A runtime failure; `main` prints it as one line and exits with status 1.
#[derive(Debug)]
pub struct Fail(String);

impl Fail {
    pub fn new(msg: impl Into<String>) -> Fail {
        Fail(one_line(&msg.into()))
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Adds what was being done to an error, keeping its whole source chain on one line.
pub trait Context<T> {
    fn context(self, what: &str) -> Result<T, Fail>;
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, Fail>;
}

impl<T, E: Error> Context<T> for Result<T, E> {
    fn context(self, what: &str) -> Result<T, Fail> {
        self.map_err(|e| Fail::new(format!("{what}: {}", chain(&e))))
    }
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, Fail> {
        self.map_err(|e| Fail::new(format!("{}: {}", what(), chain(&e))))
    }
}

/// An error and its sources, joined with `: ` (a source already quoted by its parent is
/// left out).
pub fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        let m = x.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = x.source();
    }
    s
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_sources_on_one_line() {
        let inner = std::io::Error::other("disk on fire\nreally");
        let r: Result<(), _> = Err(std::io::Error::other(inner));
        let f = r.context("writing").unwrap_err();
        assert_eq!(f.to_string(), "writing: disk on fire really");
    }
}
