//! Standard output that returns write errors instead of panicking.
//!
//! `println!` panics when standard output is a pipe whose reader has exited,
//! as in `checkin ledger tail -n 1000 | head`. Commands print with [`outln!`]
//! and [`out!`], which return the `io::Error`, and `main` ends with exit code
//! 0 when that error is `BrokenPipe`, because the reader already has every
//! line it wanted. Rust ignores SIGPIPE, so the write fails with `EPIPE`
//! instead of killing the process.

/// Writes a formatted line to standard output; returns `std::io::Result<()>`.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// Writes formatted text to standard output; returns `std::io::Result<()>`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// Reports whether an error, or any error in its chain, is a closed pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn broken_pipe_found_under_context() {
        let err = Err::<(), _>(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("failed to print the ledger")
            .unwrap_err();
        assert!(is_broken_pipe(&err));
    }

    #[test]
    fn other_io_errors_are_not_broken_pipe() {
        let err = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert!(!is_broken_pipe(&err));
        assert!(!is_broken_pipe(&anyhow::anyhow!("no such stream")));
    }
}
