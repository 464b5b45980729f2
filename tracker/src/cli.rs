//! `rivulet-tracker`'s command line (clap), here in the library so that man pages and shell
//! completions can be made from it; `main.rs` parses it and runs the command.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

/// `rivulet-tracker`'s command line.
#[derive(Parser, Debug)]
#[command(
    name = "rivulet-tracker",
    version,
    about = "Rivulet's tracker and origin"
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// `rivulet-tracker`'s subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the tracker: HTTP API and database (SIGINT or SIGTERM stops it gracefully).
    Serve {
        #[arg(long)]
        data: Option<PathBuf>,
        /// Address of the HTTP API.
        #[arg(long, default_value = "127.0.0.1:7878")]
        http: std::net::SocketAddr,
        /// Address of the origin's FTP server.
        #[arg(long, default_value = "127.0.0.1:2121")]
        ftp: std::net::SocketAddr,
        /// Host name or IP nodes should dial for the origin, if not the bound one.
        #[arg(long)]
        advertise: Option<String>,
        /// Points a new account starts with.
        #[arg(long, value_name = "POINTS", default_value_t = 100, allow_negative_numbers = true,
              value_parser = clap::value_parser!(u64).range(0..=1_000_000_000))]
        initial_points: u64,
        /// Seconds of silence after which a node is dropped.
        #[arg(long, value_name = "SECS", default_value_t = 15,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        node_timeout: u64,
        /// The reverse proxy in front of the tracker: only its X-Forwarded-For names the
        /// client (log-in limits, sign-up limits); from anyone else that header is ignored.
        #[arg(long, value_name = "ADDR")]
        trusted_proxy: Option<std::net::IpAddr>,
    },
    /// Create an account; the password comes from RIVULET_PASSWORD or the first line of stdin.
    Account {
        /// The username.
        name: String,
        /// Make it an administrator.
        #[arg(long)]
        admin: bool,
        /// Starting balance in points.
        #[arg(long, value_name = "N", default_value_t = 100, allow_negative_numbers = true,
              value_parser = clap::value_parser!(u64).range(0..=1_000_000_000))]
        points: u64,
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Add a movie to the catalogue; prints its new id.
    Ingest {
        /// The media file to ingest (any container ffmpeg reads).
        file: PathBuf,
        /// Title shown in the catalogue.
        #[arg(long)]
        title: String,
        /// Price in points.
        #[arg(long, value_name = "POINTS", default_value_t = 0, allow_negative_numbers = true,
              value_parser = clap::value_parser!(u64).range(0..=1_000_000_000))]
        price: u64,
        /// Use this id instead of a random one (lowercase letters, digits, '-', '_').
        #[arg(long)]
        id: Option<String>,
        /// Data directory [default: the platform's data dir for rivulet-tracker].
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// List the catalogue.
    Videos {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Make a sample movie with ffmpeg, ingest it as "sample" and verify it: a tour of the
    /// data path with nothing but this binary and ffmpeg.
    Sample {
        /// Length of the sample movie in seconds.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=3600))]
        seconds: u32,
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Rebuild every segment of a movie from random chunks and check every hash.
    Verify {
        /// The video id.
        id: String,
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

/// The clap command `rivulet-tracker` parses, for man pages and shell completions.
pub fn command() -> clap::Command {
    Cli::command()
}
