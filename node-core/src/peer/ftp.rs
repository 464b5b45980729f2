//! One FTP session to one chunk server (the origin or a cache) for one movie: log in with a
//! ticket, then fetch chunks `/<video>/<segment>/<index>` one after another over the same
//! control connection, each bounded in size and time so a slow or lying peer cannot stall
//! or flood the caller. With the peer's certificate fingerprint (from the tracker) the
//! session is FTPS, control and data (`AUTH TLS`, `PROT P`), trusting that one certificate
//! alone ([`tls::pinned_client_config`]); it never falls back to plain FTP.

use std::time::Duration;

use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream};
use suppaftp::types::FileType;
use suppaftp::{FtpError, Mode};
use thiserror::Error;
use tokio::io::AsyncReadExt;

use crate::format::{CHUNK_HEADER_LEN, ChunkHeader};
use crate::peer::tls;

/// The name a pinning client asks for (the pin, not the name, decides whom it trusts).
const TLS_NAME: &str = "rivulet-peer";

/// Why a fetch failed; the caller decides whether to retry elsewhere.
#[derive(Debug, Error)]
pub enum FetchError {
    #[error("cannot reach {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{addr} refused the ticket")]
    Refused { addr: String },
    #[error("{addr} has no such chunk")]
    Missing { addr: String },
    #[error("{addr} sent more than {limit} bytes for one chunk")]
    TooLarge { addr: String, limit: usize },
    #[error("{addr} took longer than {0:?}", .timeout)]
    Timeout { addr: String, timeout: Duration },
    #[error("transfer from {addr} failed: {reason}")]
    Transfer { addr: String, reason: String },
    /// The peer did not prove it holds the certificate the tracker named (another
    /// certificate, no TLS, a failed handshake): nothing was sent to it or taken from it.
    #[error("{addr} is not the peer the tracker named: {reason}")]
    Untrusted { addr: String, reason: String },
}

/// A logged-in session.
pub struct ChunkSession {
    ftp: AsyncRustlsFtpStream,
    addr: String,
    video: String,
    timeout: Duration,
}

impl std::fmt::Debug for ChunkSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSession")
            .field("addr", &self.addr)
            .field("video", &self.video)
            .finish_non_exhaustive()
    }
}

impl ChunkSession {
    /// Connects to `addr` (`host:port`) and logs in as `node_id` with `ticket`, in plain
    /// FTP (a peer the tracker names no certificate for).
    pub async fn connect(
        addr: &str,
        node_id: &str,
        ticket: &str,
        video: &str,
        timeout: Duration,
    ) -> Result<ChunkSession, FetchError> {
        Self::connect_pinned(addr, node_id, ticket, video, timeout, None).await
    }

    /// [`ChunkSession::connect`], over FTPS trusting only the certificate with SHA-256
    /// `pin` when there is one: the ticket is sent only once the handshake proved it.
    pub async fn connect_pinned(
        addr: &str,
        node_id: &str,
        ticket: &str,
        video: &str,
        timeout: Duration,
        pin: Option<&str>,
    ) -> Result<ChunkSession, FetchError> {
        let fail = |reason: String| FetchError::Connect {
            addr: addr.to_owned(),
            reason,
        };
        let login = async {
            let mut ftp = AsyncRustlsFtpStream::connect(addr)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let _ = ftp.get_ref().await.set_nodelay(true);
            if let Some(pin) = pin {
                let connector = tokio_rustls::TlsConnector::from(tls::pinned_client_config(pin));
                ftp = ftp
                    .into_secure(AsyncRustlsConnector::from(connector), TLS_NAME)
                    .await
                    .map_err(|e| FetchError::Untrusted {
                        addr: addr.to_owned(),
                        reason: e.to_string(),
                    })?;
            }
            ftp.login(node_id, ticket).await.map_err(|e| match e {
                FtpError::UnexpectedResponse(r) if r.status.code() == 530 => FetchError::Refused {
                    addr: addr.to_owned(),
                },
                other => fail(other.to_string()),
            })?;
            ftp.transfer_type(FileType::Binary)
                .await
                .map_err(|e| fail(e.to_string()))?;
            // EPSV carries only a port, so it works over IPv6 and through address rewriting.
            ftp.set_mode(Mode::ExtendedPassive);
            Ok(ftp)
        };
        let ftp =
            tokio::time::timeout(timeout, login)
                .await
                .map_err(|_| FetchError::Timeout {
                    addr: addr.to_owned(),
                    timeout,
                })??;
        Ok(ChunkSession {
            ftp,
            addr: addr.to_owned(),
            video: video.to_owned(),
            timeout,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Fetches chunk `index` of `segment` in wire form, reading no more than `max_len` bytes
    /// (see [`ChunkSession::fetch_batch`]). After an error other than `Missing` the session
    /// should be dropped.
    pub async fn fetch(
        &mut self,
        segment: u32,
        index: u16,
        max_len: usize,
    ) -> Result<Vec<u8>, FetchError> {
        match self
            .fetch_batch(segment, &[index], max_len, false)
            .await?
            .pop()
        {
            Some((_, wire)) => Ok(wire),
            None => Err(FetchError::Missing {
                addr: self.addr.clone(),
            }),
        }
    }

    /// Fetches several chunks of `segment` in one transfer (`/<video>/<segment>/<a>,<b>,…`,
    /// at most [`MAX_BATCH`]; `urgent`: a player waits for them, and the server sends them
    /// before other transfers): the server sends those it holds, in the order asked, each
    /// refused past `max_len` bytes. Returns them by index, in arrival order; an index not
    /// among them was missing there. A chunk whose header names an index out of order or
    /// not asked for is returned for the next index still expected, so verification fails
    /// and its sender is blamed. After an error the session should be dropped.
    pub async fn fetch_batch(
        &mut self,
        segment: u32,
        indices: &[u16],
        max_len: usize,
        urgent: bool,
    ) -> Result<Vec<(u16, Vec<u8>)>, FetchError> {
        let list: Vec<String> = indices.iter().map(u16::to_string).collect();
        let mut path = format!("/{}/{segment}/{}", self.video, list.join(","));
        if urgent {
            path = format!("{path}/{URGENT}");
        }
        let addr = self.addr.clone();
        let timeout = self.timeout;
        let transfer = |reason: String| FetchError::Transfer {
            addr: addr.clone(),
            reason,
        };
        let work = async {
            let mut stream = match self.ftp.retr_as_stream(&path).await {
                Ok(s) => s,
                Err(FtpError::UnexpectedResponse(r)) if r.status.code() == 550 => {
                    return Ok(Vec::new());
                }
                Err(e) => return Err(transfer(e.to_string())),
            };
            let mut got: Vec<(u16, Vec<u8>)> = Vec::with_capacity(indices.len());
            let mut next = 0usize;
            while next < indices.len() {
                let mut wire = vec![0u8; CHUNK_HEADER_LEN];
                match read_full(&mut stream, &mut wire).await {
                    Ok(0) => break,
                    Ok(n) if n < CHUNK_HEADER_LEN => {
                        return Err(transfer(format!("a chunk cut short at {n} bytes")));
                    }
                    Ok(_) => {}
                    Err(e) => return Err(transfer(e.to_string())),
                }
                // Framing only; the caller verifies. Unframeable bytes (up to `max_len`) are
                // one chunk, the last: where the next would start is unknown. They fail verification, and
                // the sender is blamed.
                let Some(len) = ChunkHeader::framed_len(&wire) else {
                    let mut rest = (&mut stream).take(max_len.saturating_sub(wire.len()) as u64);
                    rest.read_to_end(&mut wire)
                        .await
                        .map_err(|e| transfer(e.to_string()))?;
                    got.push((indices[next], wire));
                    break;
                };
                if len > max_len {
                    return Err(FetchError::TooLarge {
                        addr: addr.clone(),
                        limit: max_len,
                    });
                }
                wire.resize(len, 0);
                let n = read_full(&mut stream, &mut wire[CHUNK_HEADER_LEN..])
                    .await
                    .map_err(|e| transfer(e.to_string()))?;
                wire.truncate(CHUNK_HEADER_LEN + n);
                let claimed = u16::from_le_bytes([wire[6], wire[7]]);
                next = match indices[next..].iter().position(|i| *i == claimed) {
                    Some(at) => next + at,
                    None => next,
                };
                got.push((indices[next], wire));
                next += 1;
            }
            // Nothing more is read: a server sending past the last index is cut off here.
            // A server may open the transfer (150) and only then find nothing to send (550).
            match stream.finish().await {
                Ok(()) => Ok(got),
                Err(FtpError::UnexpectedResponse(r)) if r.status.code() == 550 => Ok(got),
                Err(e) => Err(transfer(e.to_string())),
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| FetchError::Timeout {
                addr: self.addr.clone(),
                timeout,
            })?
    }

    /// Ends the session politely.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ftp.quit()).await;
    }
}

/// The last path component that marks a transfer urgent.
pub const URGENT: &str = "now";

/// Most chunks asked for in one transfer.
pub const MAX_BATCH: usize = 32;

/// Reads until `buf` is full or the stream ends; returns the bytes read.
async fn read_full(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match stream.read(&mut buf[at..]).await? {
            0 => break,
            n => at += n,
        }
    }
    Ok(at)
}
