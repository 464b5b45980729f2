//! `rivulet-tracker serve`: binds the HTTP API, serves until told to stop, then drains.
//! Tests start it on `127.0.0.1:0` with [`Server::bind`] and read the bound address.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin;
use crate::api::{self, AppState};
use crate::catalogue_cache::CatalogueCache;
use crate::data_dir::DataDir;
use crate::db;
use crate::http_serve::{self, HttpLimits};
use crate::login_limit::{LoginLimiter, LoginLimits};
use crate::nodes;
use crate::origin_ftp;
use crate::placement::{MovieFacts, Network};
use crate::tickets;
use rivulet_node_core::peer::chunk_server::ChunkServer;

/// How the tracker runs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The data directory (created if missing).
    pub data: PathBuf,
    /// Where the HTTP API listens.
    pub http: SocketAddr,
    /// Points a new account starts with.
    pub initial_points: u64,
    /// Failed log-in limits.
    pub login_limits: LoginLimits,
    /// Sign-ups allowed per client address (the per-account limit is unused).
    pub signup_limits: LoginLimits,
    /// Silence after which a node is dropped and its holdings no longer offered.
    pub node_timeout: Duration,
    /// Where the origin's FTP server listens.
    pub ftp: SocketAddr,
    /// The host nodes should dial for the origin's FTP (when it differs from the bound IP:
    /// NAT, cloud hosts).
    pub advertise: Option<String>,
    /// A cache's account earns one point per this many credited bytes.
    pub bytes_per_point: u64,
    /// How often placement and topology run.
    pub placement_interval: Duration,
    /// What HTTP connections may hold (timeouts, connection caps).
    pub http_limits: HttpLimits,
    /// The reverse proxy whose `X-Forwarded-For` names the client (`--trusted-proxy`);
    /// without one that header is ignored.
    pub trusted_proxy: Option<IpAddr>,
}

impl ServeConfig {
    /// Defaults that work on a laptop: HTTP on 127.0.0.1:7878, 100 starting points.
    pub fn new(data: PathBuf) -> ServeConfig {
        ServeConfig {
            data,
            http: SocketAddr::from(([127, 0, 0, 1], 7878)),
            initial_points: 100,
            login_limits: LoginLimits::default(),
            signup_limits: LoginLimits {
                per_account: usize::MAX,
                per_address: 30,
                window: Duration::from_secs(3600),
            },
            node_timeout: Duration::from_secs(15),
            ftp: SocketAddr::from(([127, 0, 0, 1], 2121)),
            advertise: None,
            bytes_per_point: nodes::DEFAULT_BYTES_PER_POINT,
            placement_interval: Duration::from_secs(2),
            http_limits: HttpLimits::default(),
            trusted_proxy: None,
        }
    }
}

/// Drops silent nodes, checking a few times per timeout, until `stop` turns true.
async fn expire_silent_nodes(
    db: sqlx::SqlitePool,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval((timeout / 4).max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = nodes::expire(&db, timeout.as_millis() as i64).await {
                    eprintln!("rivulet-tracker: expiring silent nodes failed: {e}");
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Empties the origin's per-receiver byte counts every minute until `stop` turns true:
/// nothing reads them on the origin, and unread they would grow with every node ever seen.
async fn drain_origin_counters(
    served: Arc<rivulet_node_core::peer::chunk_server::ServedBytes>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => drop(served.take_by_peer()),
            _ = stop.changed() => return,
        }
    }
}

/// Runs placement and topology every `every` until `stop` turns true.
async fn place_periodically(
    db: sqlx::SqlitePool,
    catalogue: Arc<CatalogueCache>,
    network: Arc<Network>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let (live, purchases) = match (
            nodes::list(&db, None).await,
            admin::purchases_by_video(&db).await,
        ) {
            (Ok(live), Ok(purchases)) => (live, purchases),
            (live, purchases) => {
                // The database closes as the tracker stops: not worth a word then.
                if !*stop.borrow() {
                    let e = live
                        .err()
                        .map(|e| e.to_string())
                        .or_else(|| purchases.err().map(|e| e.to_string()))
                        .unwrap_or_default();
                    eprintln!("rivulet-tracker: placement skipped a round: {e}");
                }
                continue;
            }
        };
        let movies: Vec<MovieFacts> = catalogue
            .all()
            .await
            .iter()
            .map(|v| {
                let m = &v.manifest;
                MovieFacts {
                    id: v.record.id.clone(),
                    rate: m.file_size as f64 * 1000.0 / v.record.duration_ms.max(1) as f64,
                    index_bytes: (0..m.segment_count()).map(|s| m.wire_len(s) as u64).sum(),
                    k: m.k,
                    n: m.n,
                    purchases: purchases.get(&v.record.id).copied().unwrap_or(0),
                }
            })
            .collect();
        network.round(&live, &movies);
    }
}

/// A bound, running tracker.
#[derive(Debug)]
pub struct Server {
    http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    ftp: ChunkServer,
}

impl Server {
    /// Opens the data dir and database, binds, and starts serving in a background task.
    pub async fn bind(config: ServeConfig) -> anyhow::Result<Server> {
        let data = DataDir::create(&config.data)?;
        let db = db::open(data.root()).await?;
        // Nothing is known to be alive after a restart: nodes learn it from their next
        // heartbeat and register again.
        nodes::forget_all(&db.write).await?;
        let signer = tickets::load_or_create(data.root())?;
        let catalogue = Arc::new(CatalogueCache::new(data));
        let ftp = origin_ftp::start(config.ftp, catalogue.clone(), signer.public_key()).await?;
        let ftp_advertised = match &config.advertise {
            Some(host) if host.contains(':') && !host.starts_with('[') => {
                format!("[{host}]:{}", ftp.addr().port())
            }
            Some(host) => format!("{host}:{}", ftp.addr().port()),
            None => ftp.addr().to_string(),
        };
        let (stop, mut stopped) = watch::channel(false);
        let listener = TcpListener::bind(config.http).await?;
        let network = Arc::new(Network::default());
        let http_addr = listener.local_addr()?;
        let state = AppState {
            db: db.clone(),
            catalogue,
            signer: Arc::new(signer),
            origin_ftp: ftp_advertised,
            origin_counters: ftp.served().clone(),
            metrics: Arc::default(),
            heartbeats: nodes::HeartbeatWriter::start(db.write.clone(), config.bytes_per_point),
            network: network.clone(),
            login_limiter: Arc::new(LoginLimiter::new(config.login_limits)),
            signup_limiter: Arc::new(LoginLimiter::new(config.signup_limits)),
            initial_points: config.initial_points,
            node_timeout: config.node_timeout,
        };
        tokio::spawn(place_periodically(
            db.read.clone(),
            state.catalogue.clone(),
            network,
            config.placement_interval,
            stop.subscribe(),
        ));
        let app = crate::web::router(state.clone(), api::router(state));
        tokio::spawn(drain_origin_counters(
            ftp.served().clone(),
            stop.subscribe(),
        ));
        tokio::spawn(expire_silent_nodes(
            db.write.clone(),
            config.node_timeout,
            stop.subscribe(),
        ));
        let task = tokio::spawn(async move {
            let served = http_serve::serve(
                listener,
                app,
                config.http_limits,
                config.trusted_proxy,
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            )
            .await;
            db.close().await;
            served
        });
        Ok(Server {
            http_addr,
            stop,
            task,
            ftp,
        })
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The API's base URL, e.g. `http://127.0.0.1:7878`.
    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Where the origin's FTP server listens.
    pub fn ftp_addr(&self) -> SocketAddr {
        self.ftp.addr()
    }

    /// What the origin has sent, to caches and to viewers.
    pub fn origin_served(&self) -> &Arc<rivulet_node_core::peer::chunk_server::ServedBytes> {
        self.ftp.served()
    }

    /// Stops accepting, lets requests and transfers in flight finish, closes the database.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.ftp.shutdown().await;
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Serves until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        self.shutdown().await
    }
}
