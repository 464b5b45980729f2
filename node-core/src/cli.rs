//! What every Rivulet command line shares: argument errors in one line on stderr, and
//! passwords from `RIVULET_PASSWORD` or stdin (never argv); and `rivulet-node`'s own
//! command line, here so that man pages and completions can be made from it.

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
            eprintln!("{program}: {}", usage_error_line(&e));
            Err(ExitCode::from(2))
        }
    }
}

/// clap's message for a bad command line in one line, without the usage block and the
/// leading `error: `.
pub fn usage_error_line(error: &clap::Error) -> String {
    let text = error.to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    message.join(" ").trim_start_matches("error: ").to_owned()
}

/// `rivulet-node`'s command line: the peer engine without the GUI.
#[derive(clap::Parser, Debug)]
#[command(
    name = "rivulet-node",
    version,
    about = "Rivulet's peer engine, headless"
)]
pub struct NodeCli {
    /// What to run.
    #[command(subcommand)]
    pub command: NodeCommand,
}

fn size_arg(s: &str) -> Result<u64, String> {
    crate::units::parse_size(s, crate::cache::DEFAULT_STORAGE_BYTES)
}

fn rate_arg(s: &str) -> Result<u64, String> {
    crate::units::parse_rate(s, crate::cache::DEFAULT_UPLOAD_BPS)
}

/// `rivulet-node`'s subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum NodeCommand {
    /// Hold chunks that the tracker places here and serve them to viewers over FTP; prints
    /// one JSON line (node id, address, port mapping) once serving, one each time the
    /// tracker's reachability verdict changes, and one when it stops (bytes fetched and
    /// sent); runs until SIGINT or SIGTERM. The password comes from RIVULET_PASSWORD or the
    /// first line of stdin.
    Cache {
        /// The tracker's base URL, e.g. http://127.0.0.1:7878.
        #[arg(long)]
        tracker: String,
        /// The account the cache earns points for.
        #[arg(long)]
        user: String,
        /// Storage budget: 1.5GB, 300MB, or a multiplier of 1.5 GB such as 0.5x.
        #[arg(long, default_value = "1.5GB", value_parser = size_arg)]
        size: u64,
        /// Upload cap: 10Mbit, 2Mbit, or a multiplier of 10 Mbit/s such as 0.2x.
        #[arg(long, default_value = "10Mbit", value_parser = rate_arg)]
        upload: u64,
        /// Download budget from the origin (a multiplier scales 10 Mbit/s).
        #[arg(long, default_value = "40Mbit", value_parser = rate_arg)]
        download: u64,
        /// Where the FTP server binds: [::]:PORT is every interface, IPv6 and IPv4 (IPv4
        /// only where IPv6 is off); 127.0.0.1:0 keeps it on this machine.
        #[arg(long, default_value = "[::]:7880")]
        listen: std::net::SocketAddr,
        /// The passive (data) ports, to forward on a router beside the control port.
        #[arg(long, value_name = "A-B", default_value = "7881-7912",
              value_parser = crate::net::parse_port_range)]
        passive_ports: std::ops::RangeInclusive<u16>,
        /// The host (or host:port) viewers dial, when it differs from the bound address.
        #[arg(long)]
        advertise: Option<String>,
        /// Do not ask the home router (UPnP, NAT-PMP) to forward the ports.
        #[arg(long)]
        no_port_mapping: bool,
        /// The cache folder (default: the platform's cache folder).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// The store key (default: the platform's config folder; never inside --dir).
        #[arg(long)]
        key: Option<std::path::PathBuf>,
    },
    /// Rebuild a movie into a file from verified chunks; prints a JSON report. The password
    /// comes from RIVULET_PASSWORD or the first line of stdin.
    Watch {
        /// The tracker's base URL, e.g. http://127.0.0.1:7878.
        #[arg(long)]
        tracker: String,
        /// The account that watches (and buys).
        #[arg(long)]
        user: String,
        /// The movie's id.
        #[arg(long)]
        video: String,
        /// Where to write the rebuilt movie.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Consume at the movie's bitrate like a player, counting stalls.
        #[arg(long)]
        realtime: bool,
        /// Buy the movie first if the account has not.
        #[arg(long)]
        buy: bool,
    },
}

/// `rivulet-node`'s clap command, for man pages and shell completions.
pub fn node_command() -> clap::Command {
    <NodeCli as clap::CommandFactory>::command()
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
