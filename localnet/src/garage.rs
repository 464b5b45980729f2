//! A private 3-node Garage cluster (an S3-compatible object store, replication factor 3) on
//! loopback for one test or benchmark: each node's config, data and log in a temporary
//! folder, free ports, every pair of nodes connected, the layout applied, bucket `movies`
//! and a key made; stopped and removed when dropped. `garage` comes from `$GARAGE` or PATH
//! (`installer/deps.sh` installs it with `cargo install garage --locked`). The steps are
//! those of `../shared/recipes/garage/cluster.sh`, which measured them.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rivulet_tracker::store::{ObjectMovies, S3Settings};
use thiserror::Error;

/// How long one `garage` command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the cluster may take to answer S3 requests once laid out.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The bucket the cluster is made with.
pub const BUCKET: &str = "movies";
/// The region Garage answers to (its `s3_region`).
pub const REGION: &str = "garage";

/// Why a Garage cluster could not be started.
#[derive(Debug, Error)]
pub enum GarageError {
    #[error(
        "garage is not installed (not at $GARAGE or on PATH): run installer/deps.sh (cargo install garage --locked)"
    )]
    NotInstalled,
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} failed: {output}")]
    Failed { what: String, output: String },
}

/// One Garage server process.
#[derive(Debug)]
struct GarageNode {
    child: Option<Child>,
    config: PathBuf,
    s3: SocketAddr,
}

/// A running private 3-node Garage cluster.
#[derive(Debug)]
pub struct TestGarage {
    bin: PathBuf,
    nodes: Vec<GarageNode>,
    key_id: String,
    secret: String,
    dir: tempfile::TempDir,
}

impl TestGarage {
    /// Starts three nodes, lays them out, makes the bucket and a key, and waits until a
    /// PUT and GET through node 1 succeed.
    pub async fn start() -> Result<TestGarage, GarageError> {
        let garage = tokio::task::spawn_blocking(TestGarage::start_blocking)
            .await
            .map_err(|e| GarageError::Failed {
                what: "starting garage".into(),
                output: e.to_string(),
            })??;
        garage.wait_ready().await?;
        Ok(garage)
    }

    fn start_blocking() -> Result<TestGarage, GarageError> {
        let bin = garage_bin().ok_or(GarageError::NotInstalled)?;
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| GarageError::Io { what, source }
        };
        let dir = tempfile::Builder::new()
            .prefix("rivulet-garage-")
            .tempdir()
            .map_err(io("a folder for garage"))?;
        let secret: String = (0..32).map(|_| format!("{:02x}", rand_byte())).collect();
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let node_dir = dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&node_dir).map_err(io("a node folder"))?;
            let [s3, rpc, admin] = [0; 3].map(|_| free_port());
            let (s3, rpc, admin) = (
                s3.map_err(io("a port"))?,
                rpc.map_err(io("a port"))?,
                admin.map_err(io("a port"))?,
            );
            let config = node_dir.join("garage.toml");
            let d = node_dir.display();
            std::fs::write(
                &config,
                format!(
                    "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
                     replication_factor = 3\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                     rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
                     [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                     root_domain = \".s3.garage.localhost\"\n\
                     [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n"
                ),
            )
            .map_err(io("a node's config"))?;
            let log = std::fs::File::create(node_dir.join("log")).map_err(io("a node's log"))?;
            let child = Command::new(&bin)
                .arg("-c")
                .arg(&config)
                .arg("server")
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(io("a node's log"))?)
                .stderr(log)
                .spawn()
                .map_err(io("starting garage"))?;
            nodes.push(GarageNode {
                child: Some(child),
                config,
                s3: SocketAddr::from((Ipv4Addr::LOCALHOST, s3)),
            });
        }
        let mut garage = TestGarage {
            bin,
            nodes,
            key_id: String::new(),
            secret: String::new(),
            dir,
        };
        garage.lay_out()?;
        Ok(garage)
    }

    /// Connects every pair of nodes (a mesh learnt through one node forms only after a
    /// while), assigns them one zone, applies the layout, makes the bucket and the key.
    fn lay_out(&mut self) -> Result<(), GarageError> {
        let mut ids = Vec::new();
        for i in 0..3 {
            let deadline = Instant::now() + COMMAND_TIMEOUT;
            let id = loop {
                match self.garage(i, &["node", "id", "-q"]) {
                    Ok(id) => break id.trim().to_owned(),
                    Err(e) if Instant::now() > deadline => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            };
            ids.push(id);
        }
        for i in 0..3 {
            for (j, id) in ids.iter().enumerate() {
                if i != j {
                    self.garage(i, &["node", "connect", id])?;
                }
            }
        }
        for id in &ids {
            let short = id.split('@').next().unwrap_or(id);
            self.garage(0, &["layout", "assign", "-z", "dc1", "-c", "1G", short])?;
        }
        self.garage(0, &["layout", "apply", "--version", "1"])?;
        self.garage(0, &["bucket", "create", BUCKET])?;
        let key = self.garage(0, &["key", "create", "rivulet"])?;
        let field = |name: &str| {
            key.lines()
                .find(|l| l.trim_start().starts_with(name))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        (self.key_id, self.secret) = (field("Key ID"), field("Secret key"));
        if self.key_id.is_empty() || self.secret.is_empty() {
            return Err(GarageError::Failed {
                what: "garage key create".into(),
                output: key.replace('\n', " "),
            });
        }
        self.garage(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "rivulet",
            ],
        )?;
        Ok(())
    }

    /// Runs `garage -c <node i's config> ARGS`, at most [`COMMAND_TIMEOUT`]; its stdout.
    fn garage(&self, i: usize, args: &[&str]) -> Result<String, GarageError> {
        let what = format!("garage {}", args.join(" "));
        let mut child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.nodes[i].config)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| GarageError::Io {
                what: what.clone(),
                source,
            })?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(GarageError::Failed {
                    what,
                    output: format!("no answer within {COMMAND_TIMEOUT:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().map_err(|source| GarageError::Io {
            what: what.clone(),
            source,
        })?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr).replace('\n', " ");
            return Err(GarageError::Failed { what, output: text });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until a PUT and a GET through node 1 succeed (the layout takes a moment to
    /// reach every node; until then requests fail with 503).
    async fn wait_ready(&self) -> Result<(), GarageError> {
        let movies = self.movies("ready-check");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let tried = async {
                movies.put_raw("probe", "probe", b"ok".to_vec()).await?;
                movies.read("probe", "probe").await
            };
            match tried.await {
                Ok(bytes) if bytes == b"ok" => return Ok(()),
                Ok(_) => {}
                Err(e) if Instant::now() > deadline => {
                    return Err(GarageError::Failed {
                        what: format!("garage did not answer S3 within {READY_TIMEOUT:?}"),
                        output: e.to_string(),
                    });
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Endpoint, region and key for S3 requests through node `i` (0, 1 or 2).
    pub fn settings_via(&self, i: usize) -> S3Settings {
        S3Settings {
            endpoint: Some(format!("http://{}", self.nodes[i].s3)),
            region: Some(REGION.into()),
            key_id: Some(self.key_id.clone()),
            secret: Some(self.secret.clone()),
        }
    }

    /// [`TestGarage::settings_via`] node 1.
    pub fn settings(&self) -> S3Settings {
        self.settings_via(0)
    }

    /// The environment the AWS tools (and `--store`) read, for child processes.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let s = self.settings();
        vec![
            ("AWS_ENDPOINT_URL", s.endpoint.unwrap_or_default()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
        ]
    }

    /// `s3://movies/PREFIX`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// The movies under `prefix`, through node 1.
    pub fn movies(&self, prefix: &str) -> ObjectMovies {
        ObjectMovies::open(&self.url(prefix), &self.settings())
            .expect("a well-formed store URL and key")
    }

    /// Kills node `i` (SIGKILL), as a crash would.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The cluster's folder (each node's config, data and `log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestGarage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }
}

/// `$GARAGE`, or `garage` on PATH.
fn garage_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GARAGE") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("garage"))
        .find(|p| p.is_file())
}

/// A port of 127.0.0.1 free right now.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// One random byte (the rpc secret; nothing here needs a strong generator, but the
/// system's is at hand).
fn rand_byte() -> u8 {
    use std::io::Read;
    let mut b = [0u8; 1];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    b[0]
}
