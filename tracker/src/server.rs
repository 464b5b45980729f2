//! `rivulet-tracker serve`: binds the HTTP API, serves until told to stop, then drains.
//! Tests start it on `127.0.0.1:0` with [`Server::bind`] and read the bound address.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rivulet_node_core::clock::unix_secs;
use rivulet_node_core::peer::chunk_server::{ServedBytes, ServerTls};
use rivulet_node_core::peer::tls::{Identity, TlsMode};
use rivulet_node_core::task::{Every, Tasks};
use rivulet_tracker_client::NodeKind;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::api::{self, AppState};
use crate::catalogue_cache::CatalogueCache;
use crate::data_dir::DataDir;
use crate::db;
use crate::http_serve::{self, HttpLimits, HttpsMode};
use crate::leader::{self, Leadership};
use crate::login_limit::{LoginLimiter, LoginLimits};
use crate::nodes;
use crate::ops::{self, ServeLock};
use crate::origin_ftp;
use crate::placement::{self, MovieFacts, Network};
use crate::proof::{self, Proofs};
use crate::reach::{self, ReachConfig, Reachability};
use crate::settings::{self, Settings};
use crate::tickets;

/// How the tracker runs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The data directory (created if missing).
    pub data: PathBuf,
    /// The database URL (`--database`): `None` keeps the state in the data dir's SQLite
    /// file; `postgres://…` puts it in a PostgreSQL server.
    pub database: Option<String>,
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
    /// The origin's upload cap over all its connections, bits per second (0: none).
    pub origin_upload_bps: u64,
    /// The origin's upload cap per FTP connection, bits per second (0: none).
    pub origin_connection_bps: u64,
    /// A public tracker (`serve --public`): caches' advertised addresses must be public IPs,
    /// an IPv4 the one the registration came from; a LAN or demo tracker takes any.
    pub public: bool,
    /// Caches the reachability probe has not found reachable are neither placed nor given to
    /// viewers (tests that register caches at addresses nobody serves turn it off).
    pub require_reach: bool,
    /// Time between two reachability probes of one cache.
    pub reach_every: Duration,
    /// How long a checked session is trusted before the database is read again: a log-out
    /// here is seen at once, a disable or admin change made by another process within this.
    pub session_recheck: Duration,
    /// Serve HTTPS with this PEM certificate chain and key (`--tls-cert`, `--tls-key`);
    /// the origin's FTPS uses them too.
    pub tls: Option<TlsFiles>,
    /// Clients reach the tracker over HTTPS through a reverse proxy
    /// (`--behind-https-proxy`): HSTS and `Secure` cookies as when it serves HTTPS.
    pub behind_https_proxy: bool,
    /// FTPS on the origin (its certificate: the HTTPS one, else one made in the data dir).
    pub origin_tls: TlsMode,
    /// Where the movies are (`--store`): `None` for the data dir's `videos/`, or
    /// `s3://BUCKET/PREFIX` (endpoint, region and keys from the AWS_* environment).
    pub store: Option<String>,
    /// How to reach the store; `None`: from the AWS_* environment, as the AWS tools do.
    pub s3: Option<crate::store::S3Settings>,
    /// Memory for the origin's segments read from a store, in bytes.
    pub segment_cache_bytes: u64,
    /// The origin address nodes are told (`--origin-address HOST:PORT`), when origins run on
    /// their own (`rivulet-tracker origin`, e.g. several behind one TCP load balancer);
    /// `None`: this process's own origin.
    pub origin_address: Option<String>,
}

/// A PEM certificate chain and its private key.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The origin's own certificate files in the data dir, when the tracker serves plain HTTP.
pub const ORIGIN_CERT_FILE: &str = "origin-tls-cert.pem";
/// The origin's own key file in the data dir.
pub const ORIGIN_KEY_FILE: &str = "origin-tls-key.pem";

impl ServeConfig {
    /// Defaults that work on a laptop: HTTP on 127.0.0.1:7878, 100 starting points.
    pub fn new(data: PathBuf) -> ServeConfig {
        ServeConfig {
            data,
            database: None,
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
            origin_upload_bps: 0,
            origin_connection_bps: 0,
            public: false,
            require_reach: true,
            reach_every: Duration::from_secs(60),
            session_recheck: crate::sessions::DEFAULT_RECHECK,
            tls: None,
            behind_https_proxy: false,
            origin_tls: TlsMode::default(),
            store: None,
            s3: None,
            segment_cache_bytes: crate::store::DEFAULT_SEGMENT_CACHE_BYTES,
            origin_address: None,
        }
    }

    /// [`ServeConfig::new`] with HTTP and FTP on `127.0.0.1:0`: a tracker for tests and the
    /// local network, on ports the system picks (read them from [`Server::url`]), its
    /// origin in plain FTP.
    pub fn loopback(data: PathBuf) -> ServeConfig {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        ServeConfig {
            http: any_port,
            ftp: any_port,
            // Plain FTP on loopback unless a test asks for FTPS.
            origin_tls: TlsMode::Off,
            ..ServeConfig::new(data)
        }
    }
}

/// Why the tracker could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory could not be created or written.
    #[error(transparent)]
    DataDir(#[from] crate::data_dir::DataDirError),
    /// Another serve holds the data directory (or its lock file could not be made).
    #[error("{0}")]
    Locked(String),
    /// The database could not be opened or migrated.
    #[error("the tracker's database: {0}")]
    Database(#[from] sqlx::Error),
    /// `--database` names no engine the tracker runs on.
    #[error(transparent)]
    DatabaseUrl(#[from] db::BadUrl),
    /// The node registry could not be reset.
    #[error("the tracker's node registry: {0}")]
    Nodes(#[from] nodes::NodeError),
    /// The ticket key could not be read or written.
    #[error("the ticket key in {path}: {source}")]
    TicketKey {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The origin's FTP address could not be bound.
    #[error("the origin's FTP server on {addr}: {source}")]
    Ftp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be read or made.
    #[error("TLS: {0}")]
    Tls(String),
    /// The object store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The HTTP address could not be bound.
    #[error("the HTTP API on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl From<db::OpenError> for ServeError {
    fn from(e: db::OpenError) -> ServeError {
        match e {
            db::OpenError::BadUrl(bad) => ServeError::DatabaseUrl(bad),
            db::OpenError::Database(e) => ServeError::Database(e),
        }
    }
}

/// Drops silent nodes, checking a few times per timeout, until `stop` is cancelled.
async fn expire_silent_nodes(
    db: sqlx::AnyPool,
    timeout: Duration,
    stop: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut every = Every::new((timeout / 4).max(Duration::from_millis(100)));
    while every.tick(&stop).await {
        if let Err(e) = nodes::expire(&db, timeout.as_millis() as i64).await {
            tracing::warn!("expiring silent nodes failed: {e}");
        }
    }
    Ok(())
}

/// Empties the origin's per-receiver byte counts every minute until `stop` is cancelled:
/// nothing reads them on the origin, and unread they would grow with every node ever seen.
async fn drain_origin_counters(
    served: Arc<rivulet_node_core::peer::chunk_server::ServedBytes>,
    stop: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut every = Every::new(Duration::from_secs(60));
    while every.tick(&stop).await {
        drop(served.take_by_peer());
    }
    Ok(())
}

/// Runs placement and topology every `every` until `stop` is cancelled.
async fn place_periodically(
    db: sqlx::AnyPool,
    catalogue: Arc<CatalogueCache>,
    network: Arc<Network>,
    proofs: Arc<Proofs>,
    reachable: Arc<Reachability>,
    (every, quiet_after): (Duration, Duration),
    stop: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut every = Every::new(every);
    while every.tick(&stop).await {
        let (mut live, purchases) = match (
            nodes::list(&db, None).await,
            admin::purchases_by_video(&db).await,
        ) {
            (Ok(live), Ok(purchases)) => (live, purchases),
            (live, purchases) => {
                // The database closes as the tracker stops: not worth a word then.
                if !stop.is_cancelled() {
                    let e = live
                        .err()
                        .map(|e| e.to_string())
                        .or_else(|| purchases.err().map(|e| e.to_string()))
                        .unwrap_or_default();
                    tracing::warn!("placement skipped a round: {e}");
                }
                continue;
            }
        };
        // A cache nobody could reach is not placed (reach.rs).
        live.retain(|n| n.kind != NodeKind::Cache || reachable.allows(&n.node_id));
        let videos = catalogue.all().await;
        // Holdings count only as far as the tracker knows them (proof.rs).
        let segments: HashMap<String, u32> = videos
            .iter()
            .map(|v| (v.record.id.clone(), v.manifest.segment_count()))
            .collect();
        let pending = proofs.filter(&mut live, &segments);
        // A cache silent for two heartbeats is not handed to anyone (it may have crashed)
        // but stays placed until it expires: what it holds counts again when it speaks.
        let quiet_before = unix_secs().saturating_sub(quiet_after.as_secs());
        placement::silence_quiet_caches(&mut live, quiet_before);
        // A cache that comes with holdings the tracker has not checked yet (one started
        // again under a new node id) waits for its check before its first placement: placed
        // without them, it would be told to drop what it has and fetch other indices.
        let waiting: HashSet<String> = pending
            .into_iter()
            .filter(|id| !network.is_placed_cache(id))
            .collect();
        let movies: Vec<MovieFacts> = videos
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
        network.round(&live, &movies, &waiting);
    }
    // Stopped or no longer leading: a round over nothing empties the map, so a follower
    // hands out no stale placement or peers (caches told `placed: false` keep what they hold).
    network.round(&[], &[], &HashSet::new());
    Ok(())
}

/// Spawns leader work `name` into `tasks`: `work` runs while this tracker leads (see
/// [`Leadership::while_leading`]), with a token cancelled when it stops leading.
fn spawn_leading<W, F>(tasks: &Tasks, leadership: &Leadership, name: &'static str, work: W)
where
    W: FnMut(CancellationToken) -> F + Send + 'static,
    F: std::future::Future<Output = Result<(), std::convert::Infallible>> + Send + 'static,
{
    tasks.spawn(name, leadership.clone().while_leading(tasks.token(), work));
}

/// The address nodes should dial for the origin's FTP server on `port`.
fn advertised_ftp(advertise: Option<&str>, bound: SocketAddr) -> String {
    match advertise {
        Some(host) if host.contains(':') && !host.starts_with('[') => {
            format!("[{host}]:{}", bound.port())
        }
        Some(host) => format!("{host}:{}", bound.port()),
        None => bound.to_string(),
    }
}

/// A bound, running tracker. Everything it runs in the background (the HTTP server,
/// placement, node expiry, the heartbeat writer, the origin's FTP server) is a named task of
/// one [`Tasks`] group, which [`Server::shutdown`] cancels and waits for.
#[derive(Debug)]
pub struct Server {
    /// `https` when it serves HTTPS itself.
    scheme: &'static str,
    http_addr: SocketAddr,
    ftp_addr: SocketAddr,
    origin_served: Arc<ServedBytes>,
    tasks: Tasks,
    db: db::Database,
    settings: Arc<Settings>,
    sessions: Arc<crate::sessions::SessionCache>,
    /// Whether this tracker leads the ones sharing its database.
    leadership: Leadership,
    /// Held until [`Server::shutdown`] returns: `restore` and other serves keep off.
    lock: std::sync::Mutex<Option<ServeLock>>,
}

impl Server {
    /// Opens the data dir and database, binds, and starts serving in background tasks.
    pub async fn bind(config: ServeConfig) -> Result<Server, ServeError> {
        // Bad certificate files fail first, before anything else is opened.
        let https_identity = match &config.tls {
            Some(files) => Some(Identity::load(&files.cert, &files.key).map_err(ServeError::Tls)?),
            None => None,
        };
        let https_tls = match &https_identity {
            Some(identity) => Some(http_serve::https_config(identity).map_err(ServeError::Tls)?),
            None => None,
        };
        let store = crate::store::open_configured(config.store.as_deref(), config.s3.as_ref())?;
        let data = DataDir::create(&config.data)?;
        let lock = ServeLock::take(data.root()).map_err(|e| ServeError::Locked(e.to_string()))?;
        let db = db::open_configured(config.database.as_deref(), data.root()).await?;
        // One tracker of those sharing the database leads (placement, expiry, roll-up); one
        // that leads alone forgets the nodes a previous run left (leader.rs).
        let lease = leader::Lease::take(&db).await?;
        let leadership = lease.leadership();
        let signer =
            tickets::load_or_create(data.root()).map_err(|source| ServeError::TicketKey {
                path: data.root().join(tickets::KEY_FILE),
                source,
            })?;
        let origin_identity = match (config.origin_tls, https_identity) {
            (TlsMode::Off, _) => None,
            (_, Some(identity)) => Some(identity),
            (_, None) => Some(
                Identity::load_or_create(
                    data.root(),
                    ORIGIN_CERT_FILE,
                    ORIGIN_KEY_FILE,
                    "rivulet-origin",
                )
                .map_err(|e| ServeError::Tls(e.to_string()))?,
            ),
        };
        let origin_tls = match &origin_identity {
            Some(identity) => Some(ServerTls {
                config: identity
                    .server_config()
                    .map_err(|e| ServeError::Tls(e.to_string()))?,
                forced: config.origin_tls == TlsMode::Forced,
            }),
            None => None,
        };
        let catalogue = Arc::new(CatalogueCache::with_store(data, store));
        let http_error = |source| ServeError::Http {
            addr: config.http,
            source,
        };
        let listener = TcpListener::bind(config.http).await.map_err(http_error)?;
        let http_addr = listener.local_addr().map_err(http_error)?;
        let ftp = origin_ftp::start(
            config.ftp,
            catalogue.clone(),
            signer.public_key(),
            config.segment_cache_bytes,
        )
        .await
        .map_err(|source| ServeError::Ftp {
            addr: config.ftp,
            source,
        })?;
        ftp.set_tls(origin_tls);
        ftp.upload_cap().set(config.origin_upload_bps);
        ftp.set_connection_cap(config.origin_connection_bps);
        let tasks = Tasks::new();
        let sessions = Arc::new(crate::sessions::SessionCache::new(config.session_recheck));
        let network = Arc::new(Network::default());
        let reachable = Arc::new(Reachability::new(config.require_reach));
        let proofs = Arc::new(Proofs::default());
        // The origin logs what it sends: what caches fetched is what they can be trusted
        // to hold.
        ftp.served().log_chunks();
        // What `rivulet-tracker settings set` stored wins over the flags.
        let settings = Arc::new(Settings::new(config.initial_points, config.bytes_per_point));
        settings.apply(&settings::stored(&db.read).await?);
        let state = AppState {
            db: db.clone(),
            catalogue,
            signer: Arc::new(signer),
            origin_ftp: config
                .origin_address
                .clone()
                .unwrap_or_else(|| advertised_ftp(config.advertise.as_deref(), ftp.addr())),
            origin_fingerprint: origin_identity.map(|i| i.fingerprint),
            origin_counters: ftp.served().clone(),
            metrics: Arc::default(),
            heartbeats: nodes::HeartbeatWriter::start(
                &tasks,
                db.write.clone(),
                settings.clone(),
                network.clone(),
            ),
            network: network.clone(),
            proofs: proofs.clone(),
            login_limiter: Arc::new(LoginLimiter::new(config.login_limits)),
            sessions: sessions.clone(),
            signup_limiter: Arc::new(LoginLimiter::new(config.signup_limits)),
            settings,
            node_timeout: config.node_timeout,
            reach: reachable.clone(),
            public: config.public,
            leadership: leadership.clone(),
        };
        let quiet_after =
            // Two heartbeats (a third of the timeout each) and a second of slack.
            Duration::from_secs(2 * (config.node_timeout.as_secs() / 3).max(1) + 1);
        let (db_read, catalogue) = (db.read.clone(), state.catalogue.clone());
        let (placed, proved, reached) = (network.clone(), proofs.clone(), reachable.clone());
        spawn_leading(&tasks, &leadership, "placement", move |stop| {
            place_periodically(
                db_read.clone(),
                catalogue.clone(),
                placed.clone(),
                proved.clone(),
                reached.clone(),
                (config.placement_interval, quiet_after),
                stop,
            )
        });
        let addresses = {
            let network = network.clone();
            Arc::new(move |id: &str| {
                network
                    .address_of(id)
                    .map(|addr| (addr, network.fingerprint_of(id)))
            })
        };
        tasks.spawn(
            "proofs",
            proof::run(
                proofs,
                ftp.served().clone(),
                state.signer.clone(),
                state.catalogue.clone(),
                addresses,
                tasks.token(),
            ),
        );
        tasks.spawn(
            "reachability",
            reach::run(
                reachable,
                db.read.clone(),
                state.signer.clone(),
                ReachConfig {
                    require: config.require_reach,
                    every: config.reach_every,
                    ..ReachConfig::default()
                },
                tasks.token(),
            ),
        );
        let db_write = db.write.clone();
        spawn_leading(&tasks, &leadership, "node-expiry", move |stop| {
            expire_silent_nodes(db_write.clone(), config.node_timeout, stop)
        });
        tasks.spawn(
            "settings-reload",
            settings::reload_periodically(
                db.read.clone(),
                state.settings.clone(),
                settings::RELOAD_EVERY,
                tasks.token(),
            ),
        );
        let db_write = db.write.clone();
        spawn_leading(&tasks, &leadership, "transfer-rollup", move |stop| {
            ops::roll_up_periodically(db_write.clone(), ops::ROLL_UP_EVERY, stop)
        });
        tasks.spawn("leader-lease", lease.run(tasks.token()));
        let (ftp_addr, origin_served) = (ftp.addr(), ftp.served().clone());
        let stop = tasks.token();
        tasks.spawn("origin-ftp", async move {
            stop.cancelled().await;
            ftp.shutdown().await;
            Ok::<(), std::convert::Infallible>(())
        });
        tasks.spawn(
            "origin-counters",
            drain_origin_counters(origin_served.clone(), tasks.token()),
        );
        let settings = state.settings.clone();
        let app = crate::web::router(state.clone(), api::router(state));
        let stop = tasks.token();
        let https = HttpsMode {
            tls: https_tls,
            behind_https_proxy: config.behind_https_proxy,
        };
        let scheme = if https.tls.is_some() { "https" } else { "http" };
        tasks.spawn("http", async move {
            http_serve::serve(
                listener,
                app,
                config.http_limits,
                config.trusted_proxy,
                https,
                stop.cancelled_owned(),
            )
            .await
        });
        tracing::info!(http = %http_addr, ftp = %ftp_addr, "tracker serving");
        Ok(Server {
            scheme,
            http_addr,
            ftp_addr,
            origin_served,
            tasks,
            db,
            settings,
            sessions,
            leadership,
            lock: std::sync::Mutex::new(Some(lock)),
        })
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The API's base URL, e.g. `http://127.0.0.1:7878` (`https://` when it serves HTTPS).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.http_addr)
    }

    /// Where the origin's FTP server listens.
    pub fn ftp_addr(&self) -> SocketAddr {
        self.ftp_addr
    }

    /// What the origin has sent, to caches and to viewers.
    pub fn origin_served(&self) -> &Arc<ServedBytes> {
        &self.origin_served
    }

    /// The server's background tasks (for tests: empty once [`Server::shutdown`] returned).
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// Whether this tracker leads (runs placement, node expiry and the roll-up) among those
    /// sharing its database; always on SQLite.
    pub fn is_leader(&self) -> bool {
        self.leadership.is_leader()
    }

    /// The live settings (sign-up points, points rate).
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// Forgets every session it remembers, so each token's next request reads the database:
    /// for sessions or accounts changed in the database underneath it (tests, `localnet`).
    pub fn forget_sessions(&self) {
        self.sessions.forget_all();
    }

    /// The database (for tests: closed once [`Server::shutdown`] returned).
    pub fn database(&self) -> &db::Database {
        &self.db
    }

    /// Stops accepting, lets requests and transfers in flight finish, waits for every
    /// background task, then closes the database.
    pub async fn shutdown(&self) -> std::io::Result<()> {
        self.tasks.shutdown().await;
        self.db.close().await;
        drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()).take());
        tracing::info!("tracker stopped");
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_every_task_and_closes_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServeConfig::new(dir.path().to_owned());
        config.http = SocketAddr::from(([127, 0, 0, 1], 0));
        config.ftp = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = tokio::time::timeout(Duration::from_secs(30), Server::bind(config))
            .await
            .unwrap()
            .unwrap();
        // http, origin-ftp, origin-counters, placement, proofs, node-expiry,
        // heartbeat-writer, settings-reload, transfer-rollup, reachability, leader-lease.
        assert_eq!(server.tasks().len(), 11);
        assert!(server.is_leader(), "on SQLite the one process leads");
        tokio::time::timeout(Duration::from_secs(30), server.shutdown())
            .await
            .unwrap()
            .unwrap();
        assert!(server.tasks().is_empty());
        assert!(server.database().read.is_closed());
        assert!(server.database().write.is_closed());
        assert!(
            TcpListener::bind(server.http_addr()).await.is_ok(),
            "the HTTP port is free again"
        );
    }

    #[tokio::test]
    async fn a_port_in_use_is_a_typed_error() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServeConfig::new(dir.path().to_owned());
        config.http = taken.local_addr().unwrap();
        config.ftp = SocketAddr::from(([127, 0, 0, 1], 0));
        let err = Server::bind(config).await.unwrap_err();
        assert!(matches!(err, ServeError::Http { .. }), "{err}");
    }
}
