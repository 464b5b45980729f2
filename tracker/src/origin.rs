//! `rivulet-tracker origin`: an origin on its own, without the tracker's API or database.
//! It reads the catalogue and the movies from the store (or a data dir's `videos/`) and
//! takes the tickets the tracker signs, so any number of origins can serve one catalogue
//! (the tracker tells nodes where they are with `serve --origin-address`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rivulet_node_core::peer::chunk_server::{ChunkServer, ServedBytes, ServerTls};
use rivulet_node_core::peer::tls::Identity;
use rivulet_node_core::ticket::TicketKey;

use crate::catalogue_cache::CatalogueCache;
use crate::data_dir::DataDir;
use crate::origin_ftp;
use crate::store::{self, StoreError};
use crate::tickets;

/// How a standalone origin runs.
#[derive(Clone, Debug)]
pub struct OriginConfig {
    /// `s3://BUCKET/PREFIX`, or `None` for `data`'s `videos/`.
    pub store: Option<String>,
    /// How to reach the store; `None`: from the AWS_* environment.
    pub s3: Option<store::S3Settings>,
    /// The data dir: its `videos/` when there is no store, its `ticket.key` when no
    /// `ticket_key` is given (opened as every command opens it: abandoned staging swept).
    pub data: PathBuf,
    /// The tracker's public ticket key, hex (`rivulet-tracker ticket-key` prints it).
    pub ticket_key: Option<String>,
    /// Where the FTP server listens.
    pub ftp: SocketAddr,
    /// Memory for segments read from the store, in bytes.
    pub segment_cache_bytes: u64,
    /// Upload cap over all connections, bits per second (0: none).
    pub upload_bps: u64,
    /// Upload cap per connection, bits per second (0: none).
    pub connection_bps: u64,
    /// FTPS with this PEM certificate chain and key; plain FTP without. Give every origin
    /// the certificate the tracker publishes the fingerprint of.
    pub tls: Option<crate::server::TlsFiles>,
}

impl OriginConfig {
    /// An origin on `127.0.0.1:0` in plain FTP over the store `store`, for tests.
    pub fn loopback(
        data: PathBuf,
        store: Option<(String, store::S3Settings)>,
        ticket_key: TicketKey,
    ) -> OriginConfig {
        let (store, s3) = store.unzip();
        OriginConfig {
            store,
            s3,
            data,
            ticket_key: Some(ticket_key.to_hex()),
            ftp: SocketAddr::from(([127, 0, 0, 1], 0)),
            segment_cache_bytes: store::DEFAULT_SEGMENT_CACHE_BYTES,
            upload_bps: 0,
            connection_bps: 0,
            tls: None,
        }
    }
}

/// Why an origin could not start.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("--ticket-key {0:?} is not a public ticket key (64 hex digits)")]
    BadTicketKey(String),
    #[error(
        "no ticket key: give --ticket-key (from `rivulet-tracker ticket-key`) or a --data dir with the tracker's ticket.key ({path}: {source})"
    )]
    NoTicketKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the origin's FTP server on {addr}: {source}")]
    Ftp {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running standalone origin.
#[derive(Debug)]
pub struct Origin {
    ftp: ChunkServer,
}

impl Origin {
    /// Opens the store, binds and serves.
    pub async fn bind(config: OriginConfig) -> Result<Origin, OriginError> {
        let movies = store::open_configured(config.store.as_deref(), config.s3.as_ref())?;
        let key = match &config.ticket_key {
            Some(hex) => {
                TicketKey::from_hex(hex).map_err(|_| OriginError::BadTicketKey(hex.clone()))?
            }
            None => read_ticket_key(&config.data)?,
        };
        let tls = match &config.tls {
            Some(files) => {
                let identity = Identity::load(&files.cert, &files.key).map_err(OriginError::Tls)?;
                Some(ServerTls {
                    config: identity
                        .server_config()
                        .map_err(|e| OriginError::Tls(e.to_string()))?,
                    forced: false,
                })
            }
            None => None,
        };
        let catalogue = Arc::new(CatalogueCache::with_store(
            DataDir::open(&config.data),
            movies,
        ));
        let ftp = origin_ftp::start(config.ftp, catalogue, key, config.segment_cache_bytes)
            .await
            .map_err(|source| OriginError::Ftp {
                addr: config.ftp,
                source,
            })?;
        ftp.set_tls(tls);
        ftp.upload_cap().set(config.upload_bps);
        ftp.set_connection_cap(config.connection_bps);
        tracing::info!(ftp = %ftp.addr(), store = config.store.as_deref().unwrap_or("data dir"), "origin serving");
        Ok(Origin { ftp })
    }

    /// Where the FTP server listens.
    pub fn addr(&self) -> SocketAddr {
        self.ftp.addr()
    }

    /// What it has sent.
    pub fn served(&self) -> &Arc<ServedBytes> {
        self.ftp.served()
    }

    /// Stops accepting and lets transfers in flight finish.
    pub async fn shutdown(self) {
        self.ftp.shutdown().await;
        tracing::info!("origin stopped");
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
        self.shutdown().await;
        Ok(())
    }
}

/// The public half of the data dir's existing ticket key (never made here).
pub fn read_ticket_key(data: &std::path::Path) -> Result<TicketKey, OriginError> {
    let path = data.join(tickets::KEY_FILE);
    let no_key = |source| OriginError::NoTicketKey {
        path: path.clone(),
        source,
    };
    let bytes = std::fs::read(&path).map_err(no_key)?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| no_key(std::io::Error::other("not a 32-byte key")))?;
    Ok(rivulet_node_core::ticket::TicketSigner::from_seed(&seed).public_key())
}
