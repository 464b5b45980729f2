//! The reachability probe: connect to a cache's advertised address, read its FTP greeting,
//! log in with a ticket, quit. The tracker runs it (tracker/src/reach.rs) to learn whether a
//! cache can really be reached before it places movies there or sends viewers to it.

use std::time::Duration;

use rivulet_tracker_client::ReachFailure;
use suppaftp::FtpError;
use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream};

use crate::peer::tls;

/// A failed probe: the class and the error in words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ProbeFailed {
    /// How it failed.
    pub reason: ReachFailure,
    /// What the probe got, for the person reading the admin page.
    pub detail: String,
}

fn failed(reason: ReachFailure, detail: impl Into<String>) -> ProbeFailed {
    ProbeFailed {
        reason,
        detail: detail.into(),
    }
}

/// The class of a failed TCP connect.
fn connect_failure(e: &std::io::Error) -> ReachFailure {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => ReachFailure::Refused,
        ErrorKind::TimedOut => ReachFailure::TimedOut,
        _ => ReachFailure::NoRoute,
    }
}

/// Probes `addr` (`host:port`): within `timeout` in all, a TCP connection, an FTP greeting
/// (`220`), over FTPS trusting only the certificate with SHA-256 `pin` when there is one,
/// and a log-in as `user` with `ticket` as the password; then quits.
pub async fn probe(
    addr: &str,
    user: &str,
    ticket: &str,
    pin: Option<&str>,
    timeout: Duration,
) -> Result<(), ProbeFailed> {
    match tokio::time::timeout(timeout, probe_unbounded(addr, user, ticket, pin)).await {
        Ok(result) => result,
        Err(_) => Err(failed(
            ReachFailure::TimedOut,
            format!("no answer from {addr} within {} s", timeout.as_secs_f32()),
        )),
    }
}

async fn probe_unbounded(
    addr: &str,
    user: &str,
    ticket: &str,
    pin: Option<&str>,
) -> Result<(), ProbeFailed> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| failed(connect_failure(&e), format!("connecting to {addr}: {e}")))?;
    let mut ftp = AsyncRustlsFtpStream::connect_with_stream(stream)
        .await
        .map_err(|e| match e {
            FtpError::ConnectionError(e) => failed(
                connect_failure(&e),
                format!("{addr} closed before greeting: {e}"),
            ),
            other => failed(
                ReachFailure::WrongGreeting,
                format!("{addr} is not a Rivulet cache (no FTP greeting: {other})"),
            ),
        })?;
    if let Some(pin) = pin {
        let connector = tokio_rustls::TlsConnector::from(tls::pinned_client_config(pin));
        ftp = ftp
            .into_secure(AsyncRustlsConnector::from(connector), "rivulet-peer")
            .await
            .map_err(|e| {
                failed(
                    ReachFailure::Tls,
                    format!("{addr} did not prove the certificate it registered: {e}"),
                )
            })?;
    }
    let login = ftp.login(user, ticket).await;
    let _ = ftp.quit().await;
    match login {
        Ok(()) => Ok(()),
        Err(FtpError::UnexpectedResponse(r)) if r.status.code() == 530 => Err(failed(
            ReachFailure::LoginRefused,
            format!("{addr} refused the tracker's ticket (another node's address?)"),
        )),
        Err(e) => Err(failed(
            ReachFailure::WrongGreeting,
            format!("{addr} answered the log-in oddly: {e}"),
        )),
    }
}
