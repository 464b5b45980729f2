//! `rivulet-node`: the peer engine without the GUI. `cache` runs a cache until SIGINT or
//! SIGTERM; `watch` logs in, makes sure the movie is bought, rebuilds it from verified chunks
//! of caches and the origin into a file while reporting to the tracker, and prints one JSON
//! report.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rivulet_node_core::cache::{self, Cache, CacheOptions};
use rivulet_node_core::viewer::{self, WatchOptions};
use rivulet_node_core::{cli, headless, paths, units};
use rivulet_tracker_client::Credentials;

#[derive(Parser, Debug)]
#[command(
    name = "rivulet-node",
    version,
    about = "Rivulet's peer engine, headless"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn size_arg(s: &str) -> Result<u64, String> {
    units::parse_size(s, cache::DEFAULT_STORAGE_BYTES)
}

fn rate_arg(s: &str) -> Result<u64, String> {
    units::parse_rate(s, cache::DEFAULT_UPLOAD_BPS)
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Hold chunks that the tracker places here and serve them to viewers over FTP; prints
    /// one JSON line (node id, address) once serving, runs until SIGINT or SIGTERM. The
    /// password comes from RIVULET_PASSWORD or the first line of stdin.
    Cache {
        /// The tracker's base URL, e.g. http://127.0.0.1:7878.
        #[arg(long)]
        tracker: String,
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
        /// Where the FTP server binds (use 0.0.0.0:PORT or [::]:PORT to serve other hosts).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// The host (or host:port) viewers dial, when it differs from the bound address.
        #[arg(long)]
        advertise: Option<String>,
        /// The cache folder (default: the platform's cache folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The store key (default: the platform's config folder; never inside --dir).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Rebuild a movie into a file from verified chunks; prints a JSON report. The password
    /// comes from RIVULET_PASSWORD or the first line of stdin.
    Watch {
        /// The tracker's base URL, e.g. http://127.0.0.1:7878.
        #[arg(long)]
        tracker: String,
        #[arg(long)]
        user: String,
        /// The movie's id.
        #[arg(long)]
        video: String,
        /// Where to write the rebuilt movie.
        #[arg(long)]
        out: PathBuf,
        /// Consume at the movie's bitrate like a player, counting stalls.
        #[arg(long)]
        realtime: bool,
        /// Buy the movie first if the account has not.
        #[arg(long)]
        buy: bool,
    },
}

fn main() -> ExitCode {
    cli::init_tracing();
    let cli: Cli = match cli::parse("rivulet-node") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rivulet-node: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rivulet-node: {}", cli::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Cache {
            tracker,
            user,
            size,
            upload,
            download,
            listen,
            advertise,
            dir,
            key,
        } => {
            use tokio::signal::unix::{SignalKind, signal};
            let password = cli::password()?;
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            let credentials = Credentials {
                username: user,
                password,
            };
            let options = CacheOptions::new(
                tracker,
                credentials,
                dir.unwrap_or_else(paths::cache_dir),
                key.unwrap_or_else(paths::store_key),
            )
            .storage_bytes(size)
            .upload_bps(upload)
            .download_bps(download)
            .listen(listen)
            .advertise(advertise);
            let cache = Cache::start(options).await?;
            let status = cache.status().borrow().clone();
            println!(
                "{}",
                serde_json::json!({"node_id": status.node_id, "addr": status.addr})
            );
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            cache.stop().await;
            Ok(())
        }
        Command::Watch {
            tracker,
            user,
            video,
            out,
            realtime,
            buy,
        } => {
            let password = cli::password()?;
            viewer::clean_downloads(&paths::downloads_dir(), viewer::DOWNLOAD_MAX_AGE);
            let options = WatchOptions {
                realtime,
                ..WatchOptions::default()
            };
            let report =
                headless::watch(&tracker, &user, &password, &video, &out, &options, buy).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}
