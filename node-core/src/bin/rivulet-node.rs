//! `rivulet-node`: the peer engine without the GUI. `watch` logs in, makes sure the movie is
//! bought, registers a viewer node, rebuilds the movie from verified chunks into a file while
//! reporting to the tracker, and prints one JSON report.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rivulet_node_core::viewer::WatchOptions;
use rivulet_node_core::{cli, headless};

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

#[derive(Subcommand, Debug)]
enum Command {
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
            eprintln!("rivulet-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Watch {
            tracker,
            user,
            video,
            out,
            realtime,
            buy,
        } => {
            let password = cli::password()?;
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
