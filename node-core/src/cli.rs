//! What every Rivulet command line shares: argument errors in one line on stderr, and
//! passwords from `RIVULET_PASSWORD` or stdin (never argv).

use std::process::ExitCode;

/// Parses the command line; on `--help`/`--version` prints and exits 0, on an error prints
/// clap's message as one line (`PROGRAM: message`) and exits 2.
pub fn parse<P: clap::Parser>(program: &str) -> Result<P, ExitCode> {
    match P::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!(
                "{program}: {}",
                message.join(" ").trim_start_matches("error: ")
            );
            Err(ExitCode::from(2))
        }
    }
}

/// Sends `tracing` events to stderr, filtered by `RUST_LOG` (default: warnings, and `info`
/// for Rivulet's own crates). Binaries call it first; a second call does nothing.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,rivulet_node_core=info,rivulet_tracker=info,rivulet_app=info,rivulet_localnet=info",
        )
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// The password from `RIVULET_PASSWORD`, or else the first line of stdin.
pub fn password() -> std::io::Result<String> {
    if let Some(p) = crate::env::password() {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// An error and its causes in one line, `outer: inner: …`, leaving out a cause that the
/// message before it already ends with (errors that print their source).
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::other("disk full");
        let e = anyhow::Error::new(std::io::Error::other(format!("writing x: {io}")))
            .context("joining");
        assert_eq!(one_line(&e), "joining: writing x: disk full");
        #[derive(Debug, thiserror::Error)]
        #[error("writing x: {source}")]
        struct Write {
            source: std::io::Error,
        }
        let e = anyhow::Error::new(Write { source: io }).context("joining");
        assert_eq!(one_line(&e), "joining: writing x: disk full");
    }
}
