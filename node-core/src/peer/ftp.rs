//! One FTP session to one chunk server (the origin or a cache) for one movie: log in with a
//! ticket, then fetch chunks `/<video>/<segment>/<index>` one after another over the same
//! control connection, each bounded in size and time so a slow or lying peer cannot stall
//! or flood the caller.

use std::time::Duration;

use suppaftp::tokio::AsyncFtpStream;
use suppaftp::types::FileType;
use suppaftp::{FtpError, Mode};
use thiserror::Error;
use tokio::io::AsyncReadExt;

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
}

/// A logged-in session.
pub struct ChunkSession {
    ftp: AsyncFtpStream,
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
    /// Connects to `addr` (`host:port`) and logs in as `node_id` with `ticket`.
    pub async fn connect(
        addr: &str,
        node_id: &str,
        ticket: &str,
        video: &str,
        timeout: Duration,
    ) -> Result<ChunkSession, FetchError> {
        let fail = |reason: String| FetchError::Connect {
            addr: addr.to_owned(),
            reason,
        };
        let login = async {
            let mut ftp = AsyncFtpStream::connect(addr)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let _ = ftp.get_ref().await.set_nodelay(true);
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

    /// Fetches chunk `index` of `segment` in wire form, refusing more than `max_len` bytes.
    /// After an error other than `Missing` the session should be dropped.
    pub async fn fetch(
        &mut self,
        segment: u32,
        index: u16,
        max_len: usize,
    ) -> Result<Vec<u8>, FetchError> {
        let path = format!("/{}/{segment}/{index}", self.video);
        let addr = self.addr.clone();
        let timeout = self.timeout;
        let transfer = |reason: String| FetchError::Transfer {
            addr: addr.clone(),
            reason,
        };
        let work = async {
            let stream = self.ftp.retr_as_stream(&path).await.map_err(|e| match e {
                FtpError::UnexpectedResponse(r) if r.status.code() == 550 => {
                    FetchError::Missing { addr: addr.clone() }
                }
                other => transfer(other.to_string()),
            })?;
            let mut buf = Vec::new();
            let mut limited = stream.take(max_len as u64 + 1);
            limited
                .read_to_end(&mut buf)
                .await
                .map_err(|e| transfer(e.to_string()))?;
            if buf.len() > max_len {
                return Err(FetchError::TooLarge {
                    addr: addr.clone(),
                    limit: max_len,
                });
            }
            // A server may open the transfer (150) and only then say the file is missing (550).
            limited.into_inner().finish().await.map_err(|e| match e {
                FtpError::UnexpectedResponse(r) if r.status.code() == 550 => {
                    FetchError::Missing { addr: addr.clone() }
                }
                other => transfer(other.to_string()),
            })?;
            Ok(buf)
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
