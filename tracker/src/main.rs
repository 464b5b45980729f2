//! `rivulet-tracker`: the tracker's command line (serve, accounts, ingest, list, verify).

use std::path::PathBuf;
use std::process::ExitCode;

use rivulet_tracker::accounts;
use rivulet_tracker::catalogue::{self, CatalogueEntry};
use rivulet_tracker::cli::{Cli, Command};
use rivulet_tracker::data_dir::DataDir;
use rivulet_tracker::ingest::{self, IngestRequest};
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
            let defaults = config.clone();
            config.http = args.http.unwrap_or(defaults.http);
            config.ftp = args.ftp.unwrap_or(defaults.ftp);
            config.initial_points = args.initial_points.unwrap_or(defaults.initial_points);
            config.node_timeout = args
                .node_timeout
                .map_or(defaults.node_timeout, std::time::Duration::from_secs);
            config.advertise = args.advertise;
            config.trusted_proxy = args.trusted_proxy;
            serve(config)
        }
        Command::Account {
            name,
            admin,
            points,
            data,
        } => account(&name, admin, points, data_path(data)),
        Command::Ingest {
            file,
            title,
            price,
            id,
            data,
        } => ingest_movie(
            IngestRequest {
                input: file,
                title,
                price,
                id,
            },
            data_path(data),
        ),
        Command::Videos { json, data } => videos(json, data_path(data)),
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
fn account(name: &str, admin: bool, points: u64, data: PathBuf) -> anyhow::Result<ExitCode> {
    let password = rivulet_node_core::cli::password()?;
    accounts::check_username(name)?;
    accounts::check_password(name, &password)?;
    let data = DataDir::create(data)?;
    let hash = accounts::hash_password(&password)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let db = rivulet_tracker::db::open(data.root()).await?;
        accounts::create(&db.write, name, &hash, admin, points).await?;
        db.close().await;
        println!("{name}");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// `ingest`: adds a movie and prints its id.
fn ingest_movie(request: IngestRequest, data: PathBuf) -> anyhow::Result<ExitCode> {
    ingest::remove_staging_on_signal()?;
    let data = DataDir::create(data)?;
    let id = ingest::ingest(&data, &request)?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
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
