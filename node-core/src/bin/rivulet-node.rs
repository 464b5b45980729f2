//! `rivulet-node`: the peer engine without the GUI. `cache` runs a cache until SIGINT or
//! SIGTERM; `watch` logs in, makes sure the movie is bought, rebuilds it from verified chunks
//! of caches and the origin into a file while reporting to the tracker, and prints one JSON
//! report.

use std::process::ExitCode;

use rivulet_node_core::cache::{Cache, CacheOptions};
use rivulet_node_core::cli::{self, NodeCli, NodeCommand};
use rivulet_node_core::viewer::{self, WatchOptions};
use rivulet_node_core::{headless, paths};
use rivulet_tracker_client::Credentials;

fn main() -> ExitCode {
    cli::init_tracing();
    let cli: NodeCli = match cli::parse("rivulet-node") {
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

async fn run(cli: NodeCli) -> anyhow::Result<()> {
    match cli.command {
        NodeCommand::Cache {
            tracker,
            user,
            size,
            upload,
            download,
            listen,
            passive_ports,
            advertise,
            no_port_mapping,
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
            .passive_ports(passive_ports)
            .advertise(advertise)
            .port_mapping(!no_port_mapping);
            let cache = Cache::start(options).await?;
            let mut status = cache.status();
            let now = status.borrow_and_update().clone();
            say(&serde_json::json!({
                "node_id": now.node_id,
                "addr": now.addr,
                "mapping": now.mapping,
            }));
            let mut said = None;
            loop {
                let now = status.borrow_and_update().clone();
                let state = now.reach.as_ref().map(|r| r.state);
                if state != said {
                    said = state;
                    say(&serde_json::json!({"reach": now.reach, "line": now.reach_line()}));
                }
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    changed = status.changed() => if changed.is_err() { break },
                }
            }
            let last = status.borrow().clone();
            cache.stop().await;
            say(&serde_json::json!({
                "stopped": true,
                "fetched_bytes": last.fetched_bytes,
                "sent_bytes": last.sent_bytes,
                "holdings": last.holdings.len(),
            }));
            Ok(())
        }
        NodeCommand::Watch {
            tracker,
            user,
            video,
            out,
            realtime,
            buy,
        } => {
            let password = cli::password()?;
            viewer::clean_downloads(&paths::downloads_dir(), viewer::DownloadLimits::default());
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

/// Prints one JSON line on stdout; a reader that has gone (a closed pipe) is not an error
/// of the cache, which goes on serving.
fn say(line: &serde_json::Value) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}
