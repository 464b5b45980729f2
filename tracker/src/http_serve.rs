//! Serving the tracker's HTTP app so that a stranger cannot choke it: each connection must
//! send its request headers within a deadline (slowloris), each request must be answered
//! within a deadline, connections are capped in all and per address (IPv6 by /64), and when
//! the cap is reached a newcomer evicts the oldest connection that has not sent a request
//! yet. Behind a reverse proxy the operator names (`serve --trusted-proxy ADDR`), the
//! client's address is the one that proxy appended to `X-Forwarded-For`; from anyone else
//! that header is ignored.
//!
//! With a certificate (`serve --tls-cert FILE --tls-key FILE`) it serves HTTPS itself: the
//! TLS handshake runs inside the connection's slot and must end within the header-read
//! deadline. When the tracker serves HTTPS or is started `--behind-https-proxy`, every
//! answer carries HSTS and the web app's cookies are `Secure`; that is the tracker's
//! configuration alone: an `X-Forwarded-Proto` a client sends is dropped, and set by the
//! server from its configuration (the web app reads it).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use rivulet_node_core::peer::limits::address_prefix;
use rivulet_tracker_client::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use crate::api::ApiError;

/// What connections to the HTTP API may hold.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one address (IPv6: one /64); the trusted proxy is not
    /// held to it.
    pub per_address: usize,
    /// Loopback connections are not held to `per_address` (the machine's own nodes: the demo
    /// network, local swarms). Tests that play the attacker turn it off.
    pub exempt_loopback: bool,
    /// Time a connection has to send a request's headers (also between requests on a kept
    /// connection).
    pub header_read_timeout: Duration,
    /// Time a request has to be read and answered; past it the answer is 408.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_connections: 4096,
            per_address: 256,
            exempt_loopback: true,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// How the tracker's HTTP is reached: over TLS it terminates itself (`tls`), or over
/// HTTPS a reverse proxy terminates (`behind_https_proxy`), or plain HTTP.
#[derive(Clone, Default)]
pub struct HttpsMode {
    /// The TLS config to serve HTTPS with.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Clients reach the tracker over HTTPS through a proxy.
    pub behind_https_proxy: bool,
}

impl std::fmt::Debug for HttpsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsMode")
            .field("tls", &self.tls.is_some())
            .field("behind_https_proxy", &self.behind_https_proxy)
            .finish()
    }
}

impl HttpsMode {
    /// Whether clients reach the tracker over HTTPS (HSTS, `Secure` cookies).
    pub fn https(&self) -> bool {
        self.tls.is_some() || self.behind_https_proxy
    }
}

/// The HSTS header value the tracker sends when it is reached over HTTPS.
pub const HSTS: &str = "max-age=31536000";

/// Reads a PEM certificate chain and key into a TLS config for HTTPS (HTTP/1.1 over ALPN);
/// the error is one line naming the file.
pub fn https_config(
    identity: &rivulet_node_core::peer::tls::Identity,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let config = identity
        .server_config()
        .map_err(|e| format!("{}: {e}", identity.cert_path.display()))?;
    let mut config = Arc::unwrap_or_clone(config);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client's address for a request that came over a connection from `peer`: the
/// right-most `X-Forwarded-For` entry when `peer` is the trusted proxy (the address that
/// proxy saw), else `peer` itself.
pub fn client_address(
    peer: SocketAddr,
    trusted_proxy: Option<IpAddr>,
    headers: &HeaderMap,
) -> SocketAddr {
    if trusted_proxy.is_none_or(|t| t.to_canonical() != peer.ip().to_canonical()) {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse::<IpAddr>().ok())
        .map_or(peer, |ip| SocketAddr::new(ip, 0))
}

/// A connection that has not sent a request yet: what evicts it.
#[derive(Debug)]
struct Fresh {
    id: u64,
    evict: Notify,
    served: AtomicBool,
}

#[derive(Debug, Default)]
struct Census {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
    fresh: VecDeque<Arc<Fresh>>,
    next_id: u64,
}

/// Connections past `max_connections` that may be open while the ones they evicted close.
const EVICTION_SLACK: usize = 64;

#[derive(Debug)]
struct Admission {
    limits: HttpLimits,
    trusted_proxy: Option<IpAddr>,
    census: Mutex<Census>,
}

impl Admission {
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let key = address_prefix(peer);
        let capped = !(self.limits.exempt_loopback && peer.is_loopback())
            && self
                .trusted_proxy
                .is_none_or(|t| t.to_canonical() != peer.to_canonical());
        let mut c = self.census.lock().unwrap_or_else(|e| e.into_inner());
        if capped && c.by_address.get(&key).copied().unwrap_or(0) >= self.limits.per_address {
            return None;
        }
        if c.total >= self.limits.max_connections {
            if c.total >= self.limits.max_connections + EVICTION_SLACK {
                return None;
            }
            c.fresh.pop_front()?.evict.notify_one();
        }
        c.total += 1;
        *c.by_address.entry(key).or_default() += 1;
        c.next_id += 1;
        let fresh = Arc::new(Fresh {
            id: c.next_id,
            evict: Notify::new(),
            served: AtomicBool::new(false),
        });
        c.fresh.push_back(fresh.clone());
        Some(Slot {
            admission: self.clone(),
            key,
            fresh,
        })
    }

    fn forget_fresh(&self, c: &mut Census, id: u64) {
        if let Some(at) = c.fresh.iter().position(|f| f.id == id) {
            c.fresh.remove(at);
        }
    }
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
struct Slot {
    admission: Arc<Admission>,
    key: IpAddr,
    fresh: Arc<Fresh>,
}

impl Slot {
    /// The connection sent a request: it is no longer one to evict.
    fn served(&self) {
        if !self.fresh.served.swap(true, Ordering::Relaxed) {
            let mut c = self
                .admission
                .census
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.admission.forget_fresh(&mut c, self.fresh.id);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self
            .admission
            .census
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_address.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                c.by_address.remove(&self.key);
            }
        }
        self.admission.forget_fresh(&mut c, self.fresh.id);
    }
}

/// The answer to a request that took longer than `limit`.
fn timed_out(limit: Duration) -> Response {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        ErrorCode::BadRequest,
        format!("the request took longer than {} s", limit.as_secs()),
    )
    .into_response()
}

/// Serves `app` on `listener` until `shutdown` completes, then lets connections finish
/// what they are answering and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    trusted_proxy: Option<IpAddr>,
    https: HttpsMode,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = https.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let https = https.https();
    let admission = Arc::new(Admission {
        limits,
        trusted_proxy,
        census: Mutex::default(),
    });
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else {
                    // Out of file descriptors, most likely: give connections time to end.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Some(slot) = admission.admit(peer.ip()) else {
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (app, stopped) = (app.clone(), stopped.clone());
                match acceptor.clone() {
                    None => {
                        connections.spawn(connection(stream, peer, slot, app, limits, trusted_proxy, https, stopped));
                    }
                    Some(acceptor) => {
                        connections.spawn(async move {
                            // The handshake counts against the header deadline, and an
                            // evicted or stopping connection stops shaking hands.
                            let handshake = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
                            let mut stop = stopped.clone();
                            let tls = tokio::select! {
                                done = handshake => match done {
                                    Ok(Ok(tls)) => tls,
                                    Ok(Err(e)) => {
                                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                                        return;
                                    }
                                    Err(_) => return,
                                },
                                _ = slot.fresh.evict.notified() => return,
                                _ = stop.wait_for(|s| *s) => return,
                            };
                            connection(tls, peer, slot, app, limits, trusted_proxy, https, stopped).await;
                        });
                    }
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One connection, until it closes, is evicted, or (on shutdown) has answered what it was
/// answering.
#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    peer: SocketAddr,
    slot: Slot,
    app: Router,
    limits: HttpLimits,
    trusted_proxy: Option<IpAddr>,
    https: bool,
    mut stopped: watch::Receiver<bool>,
) {
    let slot = Arc::new(slot);
    let on_request = slot.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            on_request.served();
            let client = client_address(peer, trusted_proxy, req.headers());
            req.extensions_mut().insert(ConnectInfo(client));
            mark_scheme(req.headers_mut(), https);
            let app = app.clone();
            async move {
                let answer = app.oneshot(req.map(axum::body::Body::new));
                let mut response = match tokio::time::timeout(limits.request_timeout, answer).await
                {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => timed_out(limits.request_timeout),
                };
                if https {
                    response.headers_mut().insert(
                        header::STRICT_TRANSPORT_SECURITY,
                        HeaderValue::from_static(HSTS),
                    );
                }
                Ok::<_, Infallible>(response)
            }
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = slot.fresh.evict.notified() => return,
        _ = stopped.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// Sets `X-Forwarded-Proto` from the tracker's configuration alone (what the web app reads
/// to mark cookies `Secure`): whatever a client or a proxy sent is dropped.
pub fn mark_scheme(headers: &mut HeaderMap, https: bool) {
    headers.remove("x-forwarded-proto");
    if https {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_comes_from_the_configuration_not_the_client() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        mark_scheme(&mut headers, false);
        assert!(
            headers.get("x-forwarded-proto").is_none(),
            "a client's claim is dropped"
        );
        headers.insert("x-forwarded-proto", "http".parse().unwrap());
        mark_scheme(&mut headers, true);
        assert_eq!(headers.get_all("x-forwarded-proto").iter().count(), 1);
        assert_eq!(headers["x-forwarded-proto"], "https");
    }

    #[test]
    fn forwarded_for_counts_only_from_the_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "10.9.9.9, 203.0.113.7".parse().unwrap());
        let proxy: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.2:4000".parse().unwrap();
        let trusted = Some(proxy.ip());
        assert_eq!(
            client_address(proxy, trusted, &headers).ip(),
            "203.0.113.7".parse::<IpAddr>().unwrap(),
            "the right-most entry: what the proxy itself saw"
        );
        assert_eq!(client_address(stranger, trusted, &headers), stranger);
        assert_eq!(client_address(proxy, None, &headers), proxy);
        let mut junk = HeaderMap::new();
        junk.insert("x-forwarded-for", "not-an-address".parse().unwrap());
        assert_eq!(client_address(proxy, trusted, &junk), proxy);
    }
}
