//! The origin's FTP server: read-only, every chunk of every movie made on demand from the
//! stream file (`/<video>/<segment>/<index>` in the chunk wire format), access only with a
//! valid ticket for that movie. One libunftp server per connection, with TCP_NODELAY and
//! passive ports bound to port 0 (see `../shared/recipes/ftp-chunks`: libunftp's own
//! listener costs 44 ms per file and its random passive ports can collide).

use std::collections::HashMap;
use std::fmt::{self, Debug, Display};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rivulet_node_core::format::StreamChunker;
use rivulet_node_core::ticket::{TicketClaims, TicketKey};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetail, UserDetailError,
    UserDetailProvider,
};
use unftp_core::storage::{Error, ErrorKind, Fileinfo, Metadata, Result, StorageBackend};

use crate::catalogue::check_id;
use crate::catalogue_cache::CatalogueCache;
use crate::nodes::ORIGIN;

/// Bytes the origin has served, by the kind of node that fetched.
#[derive(Debug, Default)]
pub struct OriginCounters {
    pub to_caches: AtomicU64,
    pub to_viewers: AtomicU64,
}

/// A session's user: the claims of the ticket it logged in with.
#[derive(Clone, Debug)]
pub struct TicketUser(TicketClaims);

impl Display for TicketUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} for {}", self.0.holder, self.0.video)
    }
}

impl UserDetail for TicketUser {}

/// Checks the ticket sent as the password, with the node id as the user name.
#[derive(Debug)]
struct TicketAuth {
    key: TicketKey,
    server: String,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[async_trait]
impl Authenticator for TicketAuth {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> std::result::Result<Principal, AuthenticationError> {
        let ticket = creds
            .password
            .as_deref()
            .ok_or(AuthenticationError::BadPassword)?;
        let claims = self
            .key
            .verify(ticket, username, &self.server, unix_now())
            .map_err(|_| AuthenticationError::BadPassword)?;
        // The principal carries the verified claims on to the user detail provider.
        let username =
            serde_json::to_string(&claims).map_err(|_| AuthenticationError::BadPassword)?;
        Ok(Principal { username })
    }
}

#[derive(Debug)]
struct TicketUsers;

#[async_trait]
impl UserDetailProvider for TicketUsers {
    type User = TicketUser;

    async fn provide_user_detail(
        &self,
        principal: &Principal,
    ) -> std::result::Result<TicketUser, UserDetailError> {
        serde_json::from_str(&principal.username)
            .map(TicketUser)
            .map_err(|e| UserDetailError::Generic(e.to_string()))
    }
}

/// `/<video>/<segment>/<index>`, or `None` for anything else (including `..`).
fn chunk_path(path: &Path) -> Option<(String, u32, u16)> {
    let parts: Vec<&str> = path
        .components()
        .filter_map(|c| match c {
            Component::RootDir | Component::CurDir => None,
            Component::Normal(s) => Some(s.to_str()),
            _ => Some(None),
        })
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [video, segment, index] if check_id(video).is_ok() => Some((
            (*video).to_owned(),
            segment.parse().ok()?,
            index.parse().ok()?,
        )),
        _ => None,
    }
}

#[derive(Debug)]
pub struct ChunkMeta {
    len: u64,
    dir: bool,
}

impl Metadata for ChunkMeta {
    fn len(&self) -> u64 {
        self.len
    }
    fn is_dir(&self) -> bool {
        self.dir
    }
    fn is_file(&self) -> bool {
        !self.dir
    }
    fn is_symlink(&self) -> bool {
        false
    }
    fn modified(&self) -> Result<SystemTime> {
        Ok(SystemTime::UNIX_EPOCH)
    }
    fn gid(&self) -> u32 {
        0
    }
    fn uid(&self) -> u32 {
        0
    }
}

/// The movies' chunks, made on demand; one chunk producer per movie, shared by sessions.
#[derive(Clone, Debug)]
struct OriginStore {
    catalogue: Arc<CatalogueCache>,
    chunkers: Arc<Mutex<HashMap<String, Arc<StreamChunker>>>>,
    counters: Arc<OriginCounters>,
}

fn not_found() -> Error {
    Error::from(ErrorKind::PermanentFileNotAvailable)
}

impl OriginStore {
    async fn chunker(&self, video: &str) -> Result<Arc<StreamChunker>> {
        if let Some(c) = self
            .chunkers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(video)
        {
            return Ok(c.clone());
        }
        let stored = self.catalogue.get(video).await.ok_or_else(not_found)?;
        let chunker = tokio::task::spawn_blocking(move || stored.chunker())
            .await
            .map_err(|e| Error::new(ErrorKind::LocalError, e.to_string()))?
            .map_err(|e| Error::new(ErrorKind::LocalError, e.to_string()))?;
        let chunker = Arc::new(chunker);
        self.chunkers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(video.to_owned(), chunker.clone());
        Ok(chunker)
    }

    /// The chunk at `path` for `user`, in wire form.
    async fn chunk(&self, user: &TicketUser, path: &Path) -> Result<Vec<u8>> {
        let (video, segment, index) = chunk_path(path).ok_or_else(not_found)?;
        if video != user.0.video {
            return Err(ErrorKind::PermissionDenied.into());
        }
        let chunker = self.chunker(&video).await?;
        if segment >= chunker.manifest().segment_count() || index >= chunker.manifest().n {
            return Err(not_found());
        }
        tokio::task::spawn_blocking(move || chunker.chunk(segment, index))
            .await
            .map_err(|e| Error::new(ErrorKind::LocalError, e.to_string()))?
            .map_err(|e| Error::new(ErrorKind::LocalError, e.to_string()))
    }
}

fn read_only<T>() -> Result<T> {
    Err(ErrorKind::PermissionDenied.into())
}

#[async_trait]
impl StorageBackend<TicketUser> for OriginStore {
    type Metadata = ChunkMeta;

    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &TicketUser,
        path: P,
    ) -> Result<ChunkMeta> {
        let path = path.as_ref();
        if chunk_path(path).is_none() {
            let depth = path
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .count();
            return if depth <= 2 {
                Ok(ChunkMeta { len: 0, dir: true })
            } else {
                Err(not_found())
            };
        }
        let chunk = self.chunk(user, path).await?;
        Ok(ChunkMeta {
            len: chunk.len() as u64,
            dir: false,
        })
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        _user: &TicketUser,
        _path: P,
    ) -> Result<Vec<Fileinfo<PathBuf, ChunkMeta>>> {
        Ok(Vec::new())
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &TicketUser,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        let chunk = self.chunk(user, path.as_ref()).await?;
        let start = usize::try_from(start_pos)
            .unwrap_or(usize::MAX)
            .min(chunk.len());
        Ok(Box::new(std::io::Cursor::new(chunk[start..].to_vec())))
    }

    async fn get_into<'a, P, W: ?Sized>(
        &self,
        user: &TicketUser,
        path: P,
        start_pos: u64,
        output: &'a mut W,
    ) -> Result<u64>
    where
        W: AsyncWrite + Unpin + Sync + Send,
        P: AsRef<Path> + Send + Debug,
    {
        let chunk = self.chunk(user, path.as_ref()).await?;
        let start = usize::try_from(start_pos)
            .unwrap_or(usize::MAX)
            .min(chunk.len());
        output.write_all(&chunk[start..]).await?;
        let sent = (chunk.len() - start) as u64;
        let counter = if user.0.holder.starts_with("cache-") {
            &self.counters.to_caches
        } else {
            &self.counters.to_viewers
        };
        counter.fetch_add(sent, Ordering::Relaxed);
        Ok(sent)
    }

    async fn put<P: AsRef<Path> + Send + Debug, R: AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        _user: &TicketUser,
        _input: R,
        _path: P,
        _start: u64,
    ) -> Result<u64> {
        read_only()
    }
    async fn del<P: AsRef<Path> + Send + Debug>(&self, _user: &TicketUser, _path: P) -> Result<()> {
        read_only()
    }
    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, _user: &TicketUser, _path: P) -> Result<()> {
        read_only()
    }
    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        _user: &TicketUser,
        _from: P,
        _to: P,
    ) -> Result<()> {
        read_only()
    }
    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, _user: &TicketUser, _path: P) -> Result<()> {
        read_only()
    }
    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, _user: &TicketUser, path: P) -> Result<()> {
        let depth = path
            .as_ref()
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count();
        if depth <= 2 { Ok(()) } else { Err(not_found()) }
    }
}

/// Binds every passive data port to port 0: the kernel picks a free one, so two sessions
/// never race for the same port. (It ignores a configured passive range.)
#[derive(Debug, Clone)]
struct KernelPicksPort;

#[async_trait]
impl libunftp::options::Binder for KernelPicksPort {
    async fn bind(
        &mut self,
        ip: std::net::IpAddr,
        _range: std::ops::RangeInclusive<u16>,
    ) -> std::io::Result<tokio::net::TcpSocket> {
        let socket = if ip.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::new(ip, 0))?;
        Ok(socket)
    }
}

/// A running origin FTP server.
#[derive(Debug)]
pub struct OriginFtp {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    pub counters: Arc<OriginCounters>,
}

impl OriginFtp {
    /// Binds `bind` and serves until [`OriginFtp::shutdown`].
    pub async fn start(
        bind: SocketAddr,
        catalogue: Arc<CatalogueCache>,
        key: TicketKey,
    ) -> std::io::Result<OriginFtp> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(OriginCounters::default());
        let store = OriginStore {
            catalogue,
            chunkers: Arc::default(),
            counters: counters.clone(),
        };
        let auth = Arc::new(TicketAuth {
            key,
            server: ORIGIN.to_owned(),
        });
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut sessions = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let _ = stream.set_nodelay(true);
                        let store = store.clone();
                        let server = libunftp::ServerBuilder::with_user_detail_provider(
                            Box::new(move || store.clone()),
                            Arc::new(TicketUsers),
                        )
                        .authenticator(auth.clone())
                        .passive_host(libunftp::options::PassiveHost::FromConnection)
                        .binder(KernelPicksPort)
                        .idle_session_timeout(120)
                        .logger(slog::Logger::root(slog::Discard, slog::o!()))
                        .build();
                        if let Ok(server) = server {
                            sessions.spawn(async move {
                                let _ = server.service(stream).await;
                            });
                        }
                    }
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                    _ = stopped.changed() => break,
                }
            }
            drop(listener);
            // Sessions get a moment to finish what they are sending.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while sessions.join_next().await.is_some() {}
            })
            .await;
            sessions.abort_all();
        });
        Ok(OriginFtp {
            addr,
            stop,
            task,
            counters,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets sessions finish briefly, then ends them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_chunk_paths_inside_the_store_parse() {
        assert_eq!(
            chunk_path(Path::new("/demo/3/17")),
            Some(("demo".into(), 3, 17))
        );
        assert_eq!(
            chunk_path(Path::new("demo/0/0")),
            Some(("demo".into(), 0, 0))
        );
        for bad in [
            "/demo/3",
            "/../demo/3/17",
            "/demo/../../etc/passwd",
            "/etc/passwd",
            "/demo/x/1",
            "/demo/1/70000",
            "/Demo/1/1",
            "/demo/1/2/3",
        ] {
            assert_eq!(chunk_path(Path::new(bad)), None, "{bad}");
        }
    }
}
