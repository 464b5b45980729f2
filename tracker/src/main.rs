//! `rivulet-tracker`: the tracker's command line (serve, accounts, ingest, list, verify, and
//! the operator commands whose work is in `rivulet_tracker::ops`).

use std::path::PathBuf;
use std::process::ExitCode;

use rivulet_tracker::accounts;
use rivulet_tracker::catalogue::{self, CatalogueEntry};
use rivulet_tracker::cli::{AccountsAction, Cli, Command, SettingsAction, VideosAction};
use rivulet_tracker::data_dir::DataDir;
use rivulet_tracker::ingest::{self, IngestRequest};
use rivulet_tracker::ops;
use rivulet_tracker::sample::make_sample_movie;
use rivulet_tracker::server::{ServeConfig, Server};
use rivulet_tracker::verify;

fn data_path(data: Option<PathBuf>) -> PathBuf {
    data.unwrap_or_else(DataDir::default_path)
}

fn main() -> ExitCode {
    rivulet_node_core::cli::init_tracing();
    let cli: Cli = match rivulet_node_core::cli::parse("rivulet-tracker") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rivulet-tracker: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let args = match args.with_config_file() {
                Ok(args) => args,
                Err(e) => {
                    eprintln!("rivulet-tracker: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let mut config = ServeConfig::new(data_path(args.data));
            config.database = args.database;
            let defaults = config.clone();
            config.http = args.http.unwrap_or(defaults.http);
            config.ftp = args.ftp.unwrap_or(defaults.ftp);
            config.initial_points = args.initial_points.unwrap_or(defaults.initial_points);
            config.node_timeout = args
                .node_timeout
                .map_or(defaults.node_timeout, std::time::Duration::from_secs);
            config.advertise = args.advertise;
            config.trusted_proxy = args.trusted_proxy;
            config.origin_upload_bps = args.origin_upload_bps.unwrap_or(0);
            config.origin_connection_bps = args.origin_connection_bps.unwrap_or(0);
            config.public = args.public;
            config.reach_every = args
                .reach_every
                .map_or(defaults.reach_every, std::time::Duration::from_secs);
            config.session_recheck = args
                .session_recheck
                .map_or(defaults.session_recheck, std::time::Duration::from_secs);
            config.tls = match (args.tls_cert, args.tls_key) {
                (Some(cert), Some(key)) => Some(rivulet_tracker::server::TlsFiles { cert, key }),
                (None, None) => None,
                _ => {
                    eprintln!("rivulet-tracker: --tls-cert and --tls-key go together");
                    return Ok(ExitCode::from(2));
                }
            };
            config.behind_https_proxy = args.behind_https_proxy;
            config.store = args.store;
            config.segment_cache_bytes = args.segment_cache.unwrap_or(defaults.segment_cache_bytes);
            config.origin_address = args.origin_address;
            serve(config)
        }
        Command::Origin(args) => origin(*args),
        Command::TicketKey { data } => {
            let key = rivulet_tracker::origin::read_ticket_key(&data_path(data))?;
            println!("{}", key.to_hex());
            Ok(ExitCode::SUCCESS)
        }
        Command::Account {
            name,
            admin,
            points,
            data,
            database,
        } => account(&name, admin, points, data_path(data), database),
        Command::Ingest {
            file,
            title,
            price,
            id,
            data,
            store,
        } => ingest_movie(
            IngestRequest {
                input: file,
                title,
                price,
                id,
            },
            data_path(data),
            store.as_deref(),
        ),
        Command::Videos { action, json, data } => {
            let data = data_path(data);
            match action {
                None => videos(json, data),
                Some(VideosAction::List { json: list_json }) => videos(json || list_json, data),
                Some(VideosAction::Set { id, title, price }) => {
                    let record =
                        ops::set_video(&DataDir::open(data), &id, title.as_deref(), price)?;
                    println!("{}\t{}\t{}", record.id, record.title, record.price);
                    Ok(ExitCode::SUCCESS)
                }
                Some(VideosAction::Remove { id }) => {
                    ops::remove_video(&DataDir::open(data), &id)?;
                    println!("removed {id}");
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Settings {
            action,
            data,
            database,
        } => settings(action, data_path(data), database),
        Command::Accounts {
            action,
            data,
            database,
        } => accounts_command(action, data_path(data), database),
        Command::Backup { file, data } => with_db(data_path(data), None, |db| async move {
            let bytes = ops::backup(&db.read, &file).await?;
            println!("{}\t{bytes} bytes", file.display());
            Ok(())
        }),
        Command::Restore { file, data } => {
            let data = DataDir::create(data_path(data))?;
            let runtime = tokio::runtime::Runtime::new()?;
            let restored = runtime.block_on(ops::restore(&data, &file))?;
            if let Some(previous) = restored.previous {
                println!("the replaced database is kept as {}", previous.display());
            }
            println!("restored {} into {}", file.display(), data.root().display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Sample { seconds, data } => sample(seconds, data_path(data)),
        Command::Verify { id, data } => verify_movie(&id, data_path(data)),
    }
}

/// `serve`: runs the tracker until SIGINT or SIGTERM.
fn serve(config: ServeConfig) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let server = Server::bind(config).await?;
        // The first line says where to connect; tests and scripts read it.
        println!("{}", server.url());
        tracing::info!("serving {} (Ctrl-C stops)", server.url());
        server.run_until_signal().await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// `account`: creates an account, the password from RIVULET_PASSWORD or stdin.
fn account(
    name: &str,
    admin: bool,
    points: u64,
    data: PathBuf,
    database: Option<String>,
) -> anyhow::Result<ExitCode> {
    let password = rivulet_node_core::cli::password()?;
    accounts::check_username(name)?;
    accounts::check_password(name, &password)?;
    let data = DataDir::create(data)?;
    let hash = accounts::hash_password(&password)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let db = rivulet_tracker::db::open_configured(database.as_deref(), data.root()).await?;
        accounts::create(&db.write, name, &hash, admin, points).await?;
        db.close().await;
        println!("{name}");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Runs `work` on the database `database` names, or the existing one of `data`, closing it
/// after.
fn with_db<F, Fut>(data: PathBuf, database: Option<String>, work: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(rivulet_tracker::db::Database) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let db = ops::open_existing(&data, database.as_deref()).await?;
        let done = work(db.clone()).await;
        db.close().await;
        done?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `settings show` and `settings set`.
fn settings(
    action: SettingsAction,
    data: PathBuf,
    database: Option<String>,
) -> anyhow::Result<ExitCode> {
    use rivulet_tracker::settings::{self, SettingName};
    with_db(data, database, |db| async move {
        match action {
            SettingsAction::Show => {
                let stored = settings::stored(&db.read).await?;
                for name in SettingName::ALL {
                    match stored.iter().find(|(n, _)| *n == name) {
                        Some((_, value)) => println!("{:<14} {value}", name.as_str()),
                        None => {
                            println!("{:<14} not stored (serve's flag or default)", name.as_str())
                        }
                    }
                }
            }
            SettingsAction::Set { name, value } => {
                settings::store(&db.write, name, value).await?;
                println!("{:<14} {value}", name.as_str());
            }
        }
        Ok(())
    })
}

/// `accounts list`, `accounts disable` and `accounts enable`.
fn accounts_command(
    action: AccountsAction,
    data: PathBuf,
    database: Option<String>,
) -> anyhow::Result<ExitCode> {
    with_db(data, database, |db| async move {
        match action {
            AccountsAction::List { json } => {
                let list = ops::list_accounts(&db.read).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else {
                    println!(
                        "{:<32} {:>5} {:>8} {:>12} {:>9}",
                        "USERNAME", "ADMIN", "DISABLED", "BALANCE", "PURCHASES"
                    );
                    for a in &list {
                        println!(
                            "{:<32} {:>5} {:>8} {:>12} {:>9}",
                            a.username,
                            if a.admin { "yes" } else { "" },
                            if a.disabled { "yes" } else { "" },
                            a.balance,
                            a.purchases
                        );
                    }
                }
            }
            AccountsAction::Disable { name } => {
                accounts::set_disabled(&db.write, &name, true).await?;
                println!("{name} disabled");
            }
            AccountsAction::Enable { name } => {
                accounts::set_disabled(&db.write, &name, false).await?;
                println!("{name} enabled");
            }
        }
        Ok(())
    })
}

/// `ingest`: adds a movie (to the data dir or `store`) and prints its id.
fn ingest_movie(
    request: IngestRequest,
    data: PathBuf,
    store: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let store = rivulet_tracker::store::open_configured(store, None)?;
    ingest::remove_staging_on_signal()?;
    let data = DataDir::create(data)?;
    let target = match &store {
        Some(store) => ingest::IngestTarget::Store(store),
        None => ingest::IngestTarget::DataDir,
    };
    let id = ingest::ingest_to(&data, target, &request)?.id;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// `origin`: serves the store's chunks until SIGINT or SIGTERM.
fn origin(args: rivulet_tracker::cli::OriginArgs) -> anyhow::Result<ExitCode> {
    use rivulet_tracker::origin::{Origin, OriginConfig};
    let config = OriginConfig {
        store: args.store,
        s3: None,
        data: data_path(args.data),
        ticket_key: args.ticket_key,
        ftp: args
            .ftp
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 2121))),
        segment_cache_bytes: args
            .segment_cache
            .unwrap_or(rivulet_tracker::store::DEFAULT_SEGMENT_CACHE_BYTES),
        upload_bps: args.upload_bps.unwrap_or(0),
        connection_bps: args.connection_bps.unwrap_or(0),
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(rivulet_tracker::server::TlsFiles { cert, key }),
            _ => None,
        },
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let origin = Origin::bind(config).await?;
        // The first line says where to connect; tests and scripts read it.
        println!("{}", origin.addr());
        origin.run_until_signal().await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// `videos`: lists the catalogue; fails when an entry is broken.
fn videos(json: bool, data: PathBuf) -> anyhow::Result<ExitCode> {
    let data = DataDir::open(data);
    let (videos, bad) = catalogue::list(&data)?;
    let entries: Vec<CatalogueEntry> = videos.iter().map(|v| v.entry()).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else {
        print_table(&entries);
    }
    for e in &bad {
        eprintln!("rivulet-tracker: {e}");
    }
    Ok(if bad.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `sample`: makes, ingests and verifies a sample movie.
fn sample(seconds: u32, data: PathBuf) -> anyhow::Result<ExitCode> {
    ingest::remove_staging_on_signal()?;
    let data = DataDir::create(data)?;
    let id = "sample";
    if data.video_dir(id).exists() {
        eprintln!("rivulet-tracker: {id} is already in the catalogue; verifying it");
    } else {
        let work = tempfile::tempdir()?;
        let movie = work.path().join("sample.mp4");
        eprintln!("rivulet-tracker: making a {seconds} s sample movie with ffmpeg");
        make_sample_movie(&movie, seconds, 1280, 720)?;
        ingest::ingest(
            &data,
            &IngestRequest {
                input: movie,
                title: "Sample: test pattern and tone".into(),
                price: 10,
                id: Some(id.into()),
            },
        )?;
    }
    let report = verify::verify(&data, id)?;
    let (videos, _) = catalogue::list(&data)?;
    print_table(&videos.iter().map(|v| v.entry()).collect::<Vec<_>>());
    println!(
        "verified {id}: {} segments rebuilt from random chunks ({} parity); data in {}",
        report.segments,
        report.parity_chunks_used,
        data.root().display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `verify`: rebuilds every segment of a movie from random chunks.
fn verify_movie(id: &str, data: PathBuf) -> anyhow::Result<ExitCode> {
    let data = DataDir::open(data);
    let report = verify::verify(&data, id)?;
    println!(
        "video {id}: {} segments rebuilt from random chunks ({} parity) and verified; blake3 {}",
        report.segments, report.parity_chunks_used, report.blake3
    );
    Ok(ExitCode::SUCCESS)
}

fn print_table(entries: &[CatalogueEntry]) {
    println!(
        "{:<14} {:<32} {:>9} {:>12} {:>8} {:>3} {:>3} {:>7}",
        "ID", "TITLE", "DURATION", "BYTES", "SEGMENTS", "K", "N", "PRICE"
    );
    for e in entries {
        let secs = e.duration_ms / 1000;
        let title: String = e.title.chars().take(32).collect();
        println!(
            "{:<14} {:<32} {:>9} {:>12} {:>8} {:>3} {:>3} {:>7}",
            e.id,
            title,
            format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
            e.bytes,
            e.segments,
            e.k,
            e.n,
            e.price
        );
    }
}
