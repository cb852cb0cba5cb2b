//! Writing a command's result to stdout.

use std::io::{self, Write};

use crate::fail::{Context, Fail};

/// Writes `text` and a newline to stdout. A reader that went away (`| head -1`) is not an
/// error: it has what it wanted, and the command's exit status must still say what it found.
pub fn print(text: &str) -> Result<(), Fail> {
    let mut out = io::stdout().lock();
    let r = out
        .write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    quiet_pipe(r).context("writing to stdout")
}

/// `r` with a closed pipe counted as success.
pub fn quiet_pipe(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}
