//! A whole Rivulet network on loopback — the tracker with its origin, accounts, movies and
//! caches — started in one call. Tests, benchmarks and the app's `--demo` all use it; nothing
//! else starts a tracker by hand.
//!
//! # Layers
//!
//! Take the layer a test needs, as iroh's `test_utils` does:
//!
//! | layer | what it gives | call |
//! |---|---|---|
//! | a tracker alone | the HTTP API and the origin FTP on `127.0.0.1:0`, an empty catalogue | [`fixture::tracker`] or [`LocalNetwork::temp`]`().start()` |
//! | + accounts | named accounts with points and admin rights, created before the tracker serves | [`fixture::with_accounts`], [`LocalNetworkBuilder::account`] |
//! | + movies | sample movies made by ffmpeg (or files) ingested as the tracker's own ingest does | [`fixture::with_movies`], [`LocalNetworkBuilder::movie`] |
//! | + caches | running in-process caches (one account each) that placement fills | [`fixture::with_caches`], [`LocalNetworkBuilder::caches`] |
//!
//! The tracker's settings that tests tune (node timeout, placement interval, points per
//! byte, starting points) have their own builder methods; anything else goes through
//! [`LocalNetworkBuilder::configure`].
//!
//! # Example
//!
//! ```no_run
//! use rivulet_localnet::{LocalNetwork, MovieSpec};
//! # async fn run() -> Result<(), rivulet_localnet::LocalNetError> {
//! let net = LocalNetwork::temp()
//!     .movie(MovieSpec::sample("m", 6).price(5))
//!     .account("alice", "correct-horse-42")
//!     .caches(2)
//!     .start()
//!     .await?;
//! let alice = net.login("alice", "correct-horse-42").await?;
//! alice.buy("m").await?;
//! println!("tracker at {}, {} caches", net.url(), net.caches().len());
//! net.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod fixture;
pub mod garage;
mod movie;
pub mod postgres;
pub mod process;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rivulet_node_core::cache::{Cache, CacheOptions, DEFAULT_UPLOAD_BPS};
use rivulet_tracker::accounts::{self, AccountError};
use rivulet_tracker::data_dir::{DataDir, DataDirError};
use rivulet_tracker::server::{ServeConfig, Server};
use rivulet_tracker_client::{Account, ClientError, Credentials, TrackerClient};
use thiserror::Error;

pub use garage::{GarageError, TestGarage};
pub use movie::{MovieSource, MovieSpec, ingest_movies};
pub use postgres::{PostgresError, TestPostgres};
/// Failed log-in and sign-up limits, for [`LocalNetworkBuilder::configure`].
pub use rivulet_tracker::login_limit::LoginLimits;
/// The tracker's configuration, for [`LocalNetworkBuilder::configure`].
pub use rivulet_tracker::server::ServeConfig as TrackerConfig;

/// The password of the caches' accounts the builder creates.
pub const CACHE_PASSWORD: &str = "cache-pass-42";

/// An error from a source crate whose error type is not ours to name.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a local network could not start.
#[derive(Debug, Error)]
pub enum LocalNetError {
    /// A folder or file of the network could not be made.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The tracker's data folder could not be made.
    #[error("the tracker data in {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: DataDirError,
    },
    /// ffmpeg could not make a sample movie.
    #[error("making movie {id:?} with ffmpeg (is ffmpeg installed?): {source}")]
    Sample {
        id: String,
        #[source]
        source: BoxError,
    },
    /// The tracker's ingest refused a movie.
    #[error("ingesting movie {id:?}: {source}")]
    Ingest {
        id: String,
        #[source]
        source: BoxError,
    },
    /// An account could not be made.
    #[error("creating account {name:?}: {source}")]
    Account {
        name: String,
        #[source]
        source: AccountError,
    },
    /// The tracker's database could not be opened to add accounts.
    #[error("the tracker database: {0}")]
    Database(#[source] BoxError),
    /// The private PostgreSQL server did not start.
    #[error("starting PostgreSQL: {0}")]
    Postgres(#[from] PostgresError),
    /// The tracker did not start.
    #[error("starting the tracker: {0}")]
    Tracker(#[source] BoxError),
    /// A cache did not start.
    #[error("starting the cache of {user:?}: {source}")]
    Cache {
        user: String,
        #[source]
        source: BoxError,
    },
    /// The tracker's API refused a request.
    #[error("the tracker API: {0}")]
    Api(#[from] ClientError),
    /// Work moved off the async threads panicked.
    #[error("a background step failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// An account to create before the tracker serves.
#[derive(Clone, Debug)]
pub struct AccountSpec {
    /// Its username.
    pub name: String,
    /// Its password.
    pub password: String,
    /// Starting points; the tracker's starting points when `None`.
    pub points: Option<u64>,
    /// Whether it is an administrator.
    pub admin: bool,
}

impl AccountSpec {
    /// An ordinary account with the tracker's starting points.
    pub fn new(name: impl Into<String>, password: impl Into<String>) -> AccountSpec {
        AccountSpec {
            name: name.into(),
            password: password.into(),
            points: None,
            admin: false,
        }
    }

    /// Starts with `points` points.
    pub fn points(mut self, points: u64) -> AccountSpec {
        self.points = Some(points);
        self
    }

    /// Makes it an administrator.
    pub fn admin(mut self) -> AccountSpec {
        self.admin = true;
        self
    }
}

/// A cache to start: its account and its capacities (a subset of `CacheOptions`; folders,
/// key and listening address come from the network).
#[derive(Clone, Debug)]
pub struct CacheSpec {
    /// The account the cache runs as (it must exist).
    pub user: String,
    /// Its password.
    pub password: String,
    /// Bytes it may store.
    pub storage_bytes: u64,
    /// Its upload cap, bytes per second.
    pub upload_bps: u64,
    /// Its download budget, bytes per second (0: none).
    pub download_bps: u64,
}

impl CacheSpec {
    /// A cache of 500 MB with the default upload cap.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> CacheSpec {
        CacheSpec {
            user: user.into(),
            password: password.into(),
            storage_bytes: 500_000_000,
            upload_bps: DEFAULT_UPLOAD_BPS,
            download_bps: 0,
        }
    }

    /// Stores at most `bytes`.
    pub fn storage(mut self, bytes: u64) -> CacheSpec {
        self.storage_bytes = bytes;
        self
    }

    /// Uploads at most `bps` bytes per second.
    pub fn upload(mut self, bps: u64) -> CacheSpec {
        self.upload_bps = bps;
        self
    }
}

type Tune = Box<dyn FnOnce(&mut ServeConfig) + Send>;

/// Where a network keeps its files: a folder the caller chose, or a temporary one it owns.
#[derive(Debug)]
enum Home {
    Kept(PathBuf),
    Temp(tempfile::TempDir),
}

impl Home {
    fn path(&self) -> &Path {
        match self {
            Home::Kept(path) => path,
            Home::Temp(dir) => dir.path(),
        }
    }
}

/// Chained options of a [`LocalNetwork`]; [`LocalNetworkBuilder::start`] starts it.
pub struct LocalNetworkBuilder {
    home: Result<Home, std::io::Error>,
    data: Option<PathBuf>,
    movies: Vec<MovieSpec>,
    accounts: Vec<AccountSpec>,
    caches: Vec<CacheSpec>,
    node_timeout: Option<Duration>,
    placement_interval: Option<Duration>,
    initial_points: Option<u64>,
    bytes_per_point: Option<u64>,
    engine: Engine,
    tunes: Vec<Tune>,
}

/// The engine a test binary runs its trackers on: [`Engine::Postgres`] in a test binary
/// whose name ends in `_postgres` (e.g. `tracker/tests/api_postgres.rs`, which runs the
/// tests of `api.rs` again), [`Engine::Sqlite`] otherwise. A macro, so the name is the
/// calling crate's.
#[macro_export]
macro_rules! test_engine {
    () => {
        $crate::engine_for_test_binary(env!("CARGO_CRATE_NAME"))
    };
}

/// Where a local network's tracker keeps its state: the tracker's own engine names.
pub use rivulet_tracker::db::Engine;

/// See [`test_engine!`].
pub fn engine_for_test_binary(crate_name: &str) -> Engine {
    if crate_name.ends_with("_postgres") {
        Engine::Postgres
    } else {
        Engine::Sqlite
    }
}

impl std::fmt::Debug for LocalNetworkBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNetworkBuilder")
            .field("home", &self.home)
            .field("movies", &self.movies)
            .field("accounts", &self.accounts)
            .field("caches", &self.caches)
            .finish_non_exhaustive()
    }
}

impl LocalNetworkBuilder {
    fn new(home: Result<Home, std::io::Error>) -> LocalNetworkBuilder {
        LocalNetworkBuilder {
            home,
            data: None,
            movies: Vec::new(),
            accounts: Vec::new(),
            caches: Vec::new(),
            node_timeout: None,
            placement_interval: None,
            initial_points: None,
            bytes_per_point: None,
            engine: Engine::Sqlite,
            tunes: Vec::new(),
        }
    }

    /// Keeps the tracker's state in `engine` (SQLite by default).
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// Keeps the tracker's data in `path` instead of `<dir>/data` (an existing catalogue
    /// there is served as it is).
    pub fn data_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.data = Some(path.into());
        self
    }

    /// Ingests `movie` unless the catalogue already holds its id.
    pub fn movie(mut self, movie: MovieSpec) -> Self {
        self.movies.push(movie);
        self
    }

    /// Ingests each of `movies`.
    pub fn movies(mut self, movies: impl IntoIterator<Item = MovieSpec>) -> Self {
        self.movies.extend(movies);
        self
    }

    /// Creates an ordinary account `name` (kept if it exists).
    pub fn account(self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.account_spec(AccountSpec::new(name, password))
    }

    /// Creates the account `spec` describes (kept as it is if it exists).
    pub fn account_spec(mut self, spec: AccountSpec) -> Self {
        self.accounts.push(spec);
        self
    }

    /// Starts `count` more caches of 500 MB, each with its own account `cache-<n>`
    /// (password [`CACHE_PASSWORD`]).
    pub fn caches(mut self, count: usize) -> Self {
        for _ in 0..count {
            let name = format!("cache-{}", self.caches.len() + 1);
            self.accounts
                .push(AccountSpec::new(name.clone(), CACHE_PASSWORD));
            self.caches.push(CacheSpec::new(name, CACHE_PASSWORD));
        }
        self
    }

    /// Starts the cache `spec` describes (its account must be one of the accounts).
    pub fn cache(mut self, spec: CacheSpec) -> Self {
        self.caches.push(spec);
        self
    }

    /// Drops a node silent for this long (nodes heartbeat three times per timeout).
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = Some(timeout);
        self
    }

    /// Runs placement and topology this often.
    pub fn placement_interval(mut self, every: Duration) -> Self {
        self.placement_interval = Some(every);
        self
    }

    /// Points a new account starts with.
    pub fn initial_points(mut self, points: u64) -> Self {
        self.initial_points = Some(points);
        self
    }

    /// A cache's account earns one point per this many credited bytes.
    pub fn bytes_per_point(mut self, bytes: u64) -> Self {
        self.bytes_per_point = Some(bytes);
        self
    }

    /// Adjusts anything else of the tracker's configuration (applied last).
    pub fn configure(mut self, tune: impl FnOnce(&mut ServeConfig) + Send + 'static) -> Self {
        self.tunes.push(Box::new(tune));
        self
    }

    /// Makes the movies, creates the accounts, starts the tracker and then the caches.
    pub async fn start(self) -> Result<LocalNetwork, LocalNetError> {
        let began = std::time::Instant::now();
        let home = self.home.map_err(|source| LocalNetError::Io {
            what: "making a temporary folder",
            path: std::env::temp_dir(),
            source,
        })?;
        let data_path = self
            .data
            .clone()
            .unwrap_or_else(|| home.path().join("data"));
        let data = DataDir::create(&data_path).map_err(|source| LocalNetError::DataDir {
            path: data_path.clone(),
            source,
        })?;
        let work = home.path().join("making");
        let movies = self.movies;
        tokio::task::spawn_blocking(move || movie::make_all(&data, &work, &movies)).await??;

        let mut config = ServeConfig::loopback(data_path.clone());
        if let Some(timeout) = self.node_timeout {
            config.node_timeout = timeout;
        }
        if let Some(every) = self.placement_interval {
            config.placement_interval = every;
        }
        if let Some(points) = self.initial_points {
            config.initial_points = points;
        }
        if let Some(bytes) = self.bytes_per_point {
            config.bytes_per_point = bytes;
        }
        let postgres = match self.engine {
            Engine::Sqlite => None,
            Engine::Postgres => {
                let server = tokio::task::spawn_blocking(TestPostgres::start).await??;
                config.database = Some(server.url());
                Some(server)
            }
        };
        for tune in self.tunes {
            tune(&mut config);
        }
        create_accounts(&config, &self.accounts).await?;
        let tracker = bind(config.clone()).await?;
        let mut net = LocalNetwork {
            home,
            data: data_path,
            config,
            tracker: Some(tracker),
            caches: Vec::new(),
            postgres,
        };
        for spec in &self.caches {
            let cache = net.start_cache(spec).await?;
            net.caches.push(cache);
        }
        tracing::info!(
            url = %net.url(),
            caches = net.caches.len(),
            ms = began.elapsed().as_millis() as u64,
            "local network up"
        );
        Ok(net)
    }
}

async fn bind(config: ServeConfig) -> Result<Server, LocalNetError> {
    Server::bind(config)
        .await
        .map_err(|e| LocalNetError::Tracker(e.into()))
}

/// Longest wait for the old tracker's ports to be free again.
const REBIND_WITHIN: Duration = Duration::from_secs(10);

/// [`bind`] on the ports a tracker just left, tried again while they are still taken (a
/// connection of the old one may linger for a moment).
async fn bind_again(config: ServeConfig) -> Result<Server, LocalNetError> {
    let deadline = tokio::time::Instant::now() + REBIND_WITHIN;
    loop {
        match Server::bind(config.clone()).await {
            Ok(server) => return Ok(server),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!("binding the restarted tracker: {e}; trying again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(LocalNetError::Tracker(e.into())),
        }
    }
}

/// Adds the accounts straight to the database (as `rivulet-tracker account` does), so they
/// can carry points and admin rights; an existing account is kept as it is.
async fn create_accounts(config: &ServeConfig, specs: &[AccountSpec]) -> Result<(), LocalNetError> {
    if specs.is_empty() {
        return Ok(());
    }
    let initial_points = config.initial_points;
    let db = rivulet_tracker::db::open_configured(config.database.as_deref(), &config.data)
        .await
        .map_err(|e| LocalNetError::Database(e.into()))?;
    let mut result = Ok(());
    for spec in specs {
        let made = create_account(&db, spec, initial_points).await;
        if let Err(source) = made {
            result = Err(LocalNetError::Account {
                name: spec.name.clone(),
                source,
            });
            break;
        }
    }
    db.close().await;
    result
}

async fn create_account(
    db: &rivulet_tracker::db::Database,
    spec: &AccountSpec,
    initial_points: u64,
) -> Result<(), AccountError> {
    accounts::check_username(&spec.name)?;
    accounts::check_password(&spec.name, &spec.password)?;
    let hash = accounts::hash_password_async(spec.password.clone()).await?;
    let points = spec.points.unwrap_or(initial_points);
    match accounts::create(&db.write, &spec.name, &hash, spec.admin, points).await {
        Ok(_) | Err(AccountError::UsernameTaken(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A running local network: the tracker with its origin and the caches the builder started.
#[derive(Debug)]
pub struct LocalNetwork {
    home: Home,
    data: PathBuf,
    config: ServeConfig,
    /// `None` only while [`LocalNetwork::restart_tracker`] swaps it.
    tracker: Option<Server>,
    caches: Vec<Cache>,
    /// Last, so it stops after the tracker.
    postgres: Option<TestPostgres>,
}

impl LocalNetwork {
    /// A network with its files under `dir` (kept after it stops).
    pub fn builder(dir: impl Into<PathBuf>) -> LocalNetworkBuilder {
        LocalNetworkBuilder::new(Ok(Home::Kept(dir.into())))
    }

    /// A network in a temporary folder of its own, deleted when the network is dropped.
    pub fn temp() -> LocalNetworkBuilder {
        LocalNetworkBuilder::new(tempfile::tempdir().map(Home::Temp))
    }

    /// The tracker's base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.server().url()
    }

    /// The running tracker.
    pub fn server(&self) -> &Server {
        self.tracker.as_ref().expect("the tracker runs")
    }

    /// The configuration the tracker runs with.
    pub fn config(&self) -> &ServeConfig {
        &self.config
    }

    /// The network's folder.
    pub fn dir(&self) -> &Path {
        self.home.path()
    }

    /// The tracker's data folder.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The tracker's SQLite file (when it runs on [`Engine::Sqlite`]).
    pub fn db_path(&self) -> PathBuf {
        self.data.join("tracker.db")
    }

    /// The engine the tracker keeps its state in.
    pub fn engine(&self) -> Engine {
        match self.postgres {
            Some(_) => Engine::Postgres,
            None => Engine::Sqlite,
        }
    }

    /// The tracker's own database pool, for tests that look at or change its state
    /// underneath it.
    pub fn db(&self) -> sqlx::AnyPool {
        self.server().database().write.clone()
    }

    /// The private PostgreSQL server, when the network runs on one.
    pub fn postgres(&self) -> Option<&TestPostgres> {
        self.postgres.as_ref()
    }

    /// A scratch path in the network's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// The origin's stream file of movie `id`.
    pub fn stream_file(&self, id: &str) -> PathBuf {
        DataDir::open(&self.data).video_dir(id).join("stream.mkv")
    }

    /// The ids of the movies in the catalogue.
    pub fn movie_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(DataDir::open(&self.data).videos_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("stream.mkv").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids
    }

    /// The caches the builder started, in order.
    pub fn caches(&self) -> &[Cache] {
        &self.caches
    }

    /// An anonymous API client.
    pub fn client(&self) -> TrackerClient {
        TrackerClient::new(&self.url())
    }

    /// Registers `name` through the API.
    pub async fn register(&self, name: &str, password: &str) -> Result<(), LocalNetError> {
        self.client().register(&credentials(name, password)).await?;
        Ok(())
    }

    /// Logs `name` in; the client carries the session.
    pub async fn login(&self, name: &str, password: &str) -> Result<TrackerClient, LocalNetError> {
        let anon = self.client();
        let session = anon.login(&credentials(name, password)).await?;
        Ok(anon.with_token(session.token))
    }

    /// `name`'s account as the tracker sees it now (balance, bytes, purchases).
    pub async fn account_of(&self, name: &str, password: &str) -> Result<Account, LocalNetError> {
        Ok(self.login(name, password).await?.me().await?)
    }

    /// Registers `name` through the API and logs it in.
    pub async fn user(&self, name: &str, password: &str) -> Result<TrackerClient, LocalNetError> {
        self.register(name, password).await?;
        self.login(name, password).await
    }

    /// Starts one more cache (the caller owns it) with its folder at
    /// [`LocalNetwork::cache_dir`] and its key beside it.
    pub async fn start_cache(&self, spec: &CacheSpec) -> Result<Cache, LocalNetError> {
        Cache::start(self.cache_options(spec))
            .await
            .map_err(|e| LocalNetError::Cache {
                user: spec.user.clone(),
                source: e.into(),
            })
    }

    /// The options [`LocalNetwork::start_cache`] starts a cache with.
    pub fn cache_options(&self, spec: &CacheSpec) -> CacheOptions {
        CacheOptions {
            tracker: self.url(),
            user: spec.user.clone(),
            password: spec.password.clone(),
            storage_bytes: spec.storage_bytes,
            upload_bps: spec.upload_bps,
            download_bps: spec.download_bps,
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            passive_ports: rivulet_node_core::peer::limits::ServerLimits::default().passive_ports,
            dir: self.cache_dir(&spec.user),
            key_path: self.path("keys").join(format!("{}.key", spec.user)),
            // The caches speak FTPS when the origin does (`configure` the tracker's
            // `origin_tls`), plain on loopback otherwise.
            tls: self.config.origin_tls,
            tracker_ca: None,
            // Loopback: no router to ask.
            port_mapping: false,
        }
    }

    /// The folder of account `user`'s cache.
    pub fn cache_dir(&self, user: &str) -> PathBuf {
        self.path("caches").join(user)
    }

    /// Stops the tracker and starts it again on the same data with the same configuration
    /// and the same HTTP and FTP ports, as a tracker restarted by its operator: clients and
    /// caches made before reach it at the same address, and it has forgotten every node
    /// (they register again).
    pub async fn restart_tracker(&mut self) -> Result<(), LocalNetError> {
        self.stop_tracker().await;
        self.start_tracker().await
    }

    /// Stops the tracker (and its origin), keeping its ports for [`LocalNetwork::start_tracker`]:
    /// until then, clients find nothing listening, as when a tracker is down. Whatever needs
    /// the running tracker ([`LocalNetwork::server`] and what uses it) panics meanwhile.
    pub async fn stop_tracker(&mut self) {
        if let Some(tracker) = self.tracker.take() {
            self.config.http = tracker.http_addr();
            self.config.ftp = tracker.ftp_addr();
            let _ = tracker.shutdown().await;
        }
    }

    /// Starts a stopped tracker again on the same data, configuration and ports (nothing if
    /// it runs).
    pub async fn start_tracker(&mut self) -> Result<(), LocalNetError> {
        if self.tracker.is_none() {
            self.tracker = Some(bind_again(self.config.clone()).await?);
        }
        Ok(())
    }

    /// Makes every session in the tracker's database expire now, as if a week had passed:
    /// each logged-in client's next call is answered 401. Returns how many sessions ended.
    pub async fn expire_sessions(&self) -> Result<u64, LocalNetError> {
        let done = sqlx::query("UPDATE sessions SET expires_at = 0")
            .execute(&self.server().database().write)
            .await
            .map_err(|e| LocalNetError::Database(e.into()))?;
        // As a week would: the tracker's remembered sessions have expired too.
        self.server().forget_sessions();
        Ok(done.rows_affected())
    }

    /// Gives account `name` a new password, as its owner changing it elsewhere would:
    /// sessions stay, the old password no longer logs in.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), LocalNetError> {
        let account = |source| LocalNetError::Account {
            name: name.to_owned(),
            source,
        };
        accounts::check_password(name, password).map_err(account)?;
        let hash = accounts::hash_password_async(password.to_owned())
            .await
            .map_err(account)?;
        sqlx::query("UPDATE accounts SET password_hash = $1 WHERE username_key = $2")
            .bind(hash)
            .bind(name.to_lowercase())
            .execute(&self.server().database().write)
            .await
            .map_err(|e| LocalNetError::Database(e.into()))?;
        Ok(())
    }

    /// Takes movie `id` out of the catalogue (its folder leaves the data dir, as an
    /// operator removing it would do); the tracker sees it gone at its next catalogue read.
    /// Purchases and history stay in the database.
    pub async fn remove_movie(&self, id: &str) -> Result<(), LocalNetError> {
        let data = DataDir::open(&self.data);
        let dir = data.video_dir(id);
        // Out of `videos/` in one rename (what the catalogue lists), then deleted.
        let aside = data.root().join(format!(".removed-{id}"));
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| LocalNetError::Io { what, path, source }
        };
        std::fs::rename(&dir, &aside).map_err(io("removing movie", &dir))?;
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&aside))
            .await?
            .map_err(io("deleting movie", &self.data))?;
        Ok(())
    }

    /// Stops the caches (they tell the tracker they leave), then the tracker.
    pub async fn shutdown(mut self) {
        for cache in std::mem::take(&mut self.caches) {
            cache.stop().await;
        }
        if let Some(tracker) = self.tracker.take()
            && let Err(e) = tracker.shutdown().await
        {
            tracing::warn!("the local tracker did not stop cleanly: {e}");
        }
    }
}

/// Copies a tracker data dir (a catalogue ingested once, served by several trackers or
/// runs): files are hard-linked where the file system allows, since ingested movies are
/// read-only, and copied otherwise.
pub fn copy_data_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_data_dir(&entry.path(), &target)?;
        } else if std::fs::hard_link(entry.path(), &target).is_err() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Credentials of `name` with `password`.
pub fn credentials(name: &str, password: &str) -> Credentials {
    Credentials {
        username: name.into(),
        password: password.into(),
    }
}
