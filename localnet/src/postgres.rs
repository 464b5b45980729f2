//! A private PostgreSQL server for one test or benchmark: `initdb` into a temporary folder,
//! `postgres` on a free loopback port with its socket in that folder, stopped (fast
//! shutdown) and removed when dropped. Debian's `postgresql` package provides the binaries
//! (`installer/deps.sh` installs it). PostgreSQL refuses to run as root, so as root the
//! server runs as the `postgres` system user the package creates.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The database role `initdb` creates (a superuser) and the URL names.
const ROLE: &str = "rivulet";

/// Why a PostgreSQL server could not be started.
#[derive(Debug, Error)]
pub enum PostgresError {
    #[error(
        "PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH): run installer/deps.sh"
    )]
    NotInstalled,
    #[error("running as root needs the `postgres` system user, which is missing: {0}")]
    NoPostgresUser(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} failed: {output}")]
    Failed { what: String, output: String },
}

/// A running private PostgreSQL server.
#[derive(Debug)]
pub struct TestPostgres {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TestPostgres {
    /// Initialises a cluster in a new temporary folder and starts it on a free port of
    /// 127.0.0.1 (no durability: `fsync` off, as fits a throwaway server).
    pub fn start() -> Result<TestPostgres, PostgresError> {
        let bin = bin_dir().ok_or(PostgresError::NotInstalled)?;
        let user = run_as()?;
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| PostgresError::Io { what, source }
        };
        let dir = tempfile::Builder::new()
            .prefix("rivulet-pg-")
            .tempdir()
            .map_err(io("a folder for PostgreSQL"))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(io("handing the folder to the postgres user"))?;
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            ROLE,
            "-N",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        let out = as_user(&mut initdb, user)
            .output()
            .map_err(io("running initdb"))?;
        if !out.status.success() {
            return Err(PostgresError::Failed {
                what: "initdb".into(),
                output: last_line(&out.stderr),
            });
        }
        let port = free_port().map_err(io("finding a free port"))?;
        let mut postgres = Command::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.path().join("server.log"))
                    .map_err(io("creating the server log"))?,
            );
        let child = as_user(&mut postgres, user)
            .spawn()
            .map_err(io("starting postgres"))?;
        let mut server = TestPostgres { child, port, dir };
        server.wait_ready()?;
        Ok(server)
    }

    /// The URL of the server's `postgres` database, as `--database` takes it.
    pub fn url(&self) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL of a further database on the server, created empty if missing: several
    /// trackers of one test share a database; separate databases keep tests apart.
    pub fn database(&self, name: &str) -> Result<String, PostgresError> {
        let bin = bin_dir().ok_or(PostgresError::NotInstalled)?;
        let out = Command::new(bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", ROLE])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc"])
            .arg(format!("CREATE DATABASE \"{name}\""))
            .output()
            .map_err(|source| PostgresError::Io {
                what: "running psql".into(),
                source,
            })?;
        if !out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("exists") {
            return Err(PostgresError::Failed {
                what: format!("CREATE DATABASE {name}"),
                output: last_line(&out.stderr),
            });
        }
        Ok(format!("postgres://{ROLE}@127.0.0.1:{}/{name}", self.port))
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The server's folder (cluster, socket and `server.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn wait_ready(&mut self) -> Result<(), PostgresError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(PostgresError::Failed {
                    what: format!("postgres ({status})"),
                    output: self.log_tail(),
                });
            }
            // Accepting TCP is not enough: the server writes "ready" into its pid file once
            // start-up (crash recovery included) is done.
            let ready = TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200))
                .is_ok()
                && std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
                    .is_ok_and(|pid| pid.lines().any(|l| l.trim() == "ready"));
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(PostgresError::Failed {
                    what: format!("postgres did not start within {START_TIMEOUT:?}"),
                    output: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        std::fs::read(self.dir.path().join("server.log"))
            .map(|log| last_line(&log))
            .unwrap_or_default()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown: it ends sessions and stops cleanly.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the pid of a child this value owns and has not reaped.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The folder of PostgreSQL's binaries: where `initdb` on PATH really lives (a symlink is
/// followed, so `psql` is found beside it), else the newest `/usr/lib/postgresql/<version>/bin`
/// (Debian keeps them off PATH).
fn bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        let initdb = std::env::split_paths(&path)
            .map(|dir| dir.join("initdb"))
            .find(|initdb| initdb.is_file())?;
        Some(std::fs::canonicalize(initdb).ok()?.parent()?.to_owned())
    });
    on_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").is_file().then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}

/// The `postgres` user's ids when running as root (PostgreSQL will not run as root).
fn run_as() -> Result<Option<(u32, u32)>, PostgresError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| PostgresError::NoPostgresUser(e.to_string()))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .map(Some)
        .ok_or_else(|| PostgresError::NoPostgresUser("no postgres in /etc/passwd".into()))
}

fn as_user(command: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}
