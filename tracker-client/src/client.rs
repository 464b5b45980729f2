//! A typed async client for the tracker's API. Every method maps a non-2xx answer to
//! [`ClientError::Api`] with the server's error code and message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{
    API_PREFIX, Account, AccountSummary, Credentials, Earnings, ErrorBody, ErrorCode, Heartbeat,
    HeartbeatReply, LoadPoint, NodeFlows, NodeInfo, NodeRegistered, NodeRegistration, OriginInfo,
    PeerBytes, Purchase, Session, Ticket, TicketRequest, Video, VideoStats,
};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The tracker answered with an error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// What kind of failure; [`ErrorCode::Unknown`] for a code this build does not know.
        code: ErrorCode,
        /// The tracker's sentence for people.
        message: String,
    },
    /// The tracker could not be reached or the connection broke.
    #[error("tracker unreachable: {0}")]
    Transport(String),
    /// The tracker answered something that is not the expected body.
    #[error("unexpected answer from the tracker: {0}")]
    Decode(String),
}

impl ClientError {
    /// The API error code, if the tracker answered with one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl ClientError {
    /// Whether the call may have failed on the way (the tracker unreachable or failing, the
    /// answer lost), so that sending it again is the thing to do; false for a refusal of
    /// the request itself.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport(_) | ClientError::Decode(_) => true,
            ClientError::Api { status, code, .. } => {
                *status >= 500
                    || matches!(status, 401 | 408 | 429)
                    || *code == ErrorCode::Unauthorized
            }
        }
    }
}

/// Longest wait to connect to the tracker.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest wait for a whole call (connect, send, answer, body).
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Idle time after which a pooled connection is dropped (the tracker closes connections
/// that send nothing for 10 s).
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// A client for one tracker, optionally logged in. Clones share the session: a kept
/// session ([`TrackerClient::login_kept`]) renewed by one clone is renewed for all.
#[derive(Clone, Debug)]
pub struct TrackerClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    link: crate::link::LinkState,
}

/// How a client proves who it is.
#[derive(Clone, Debug)]
enum Auth {
    /// Anonymous.
    None,
    /// A token given by the caller, used as it is.
    Token(String),
    /// A session the client logs in again for (see [`TrackerClient::login_kept`]).
    Kept(Arc<KeptSession>),
}

/// A session kept alive: the credentials (in memory only) and the current token.
struct KeptSession {
    credentials: Credentials,
    /// The token now, for [`TrackerClient::token`] (a copy of `state.token`).
    current: std::sync::RwLock<Option<String>>,
    /// Held while logging in again, so that concurrent calls log in once.
    state: tokio::sync::Mutex<KeptState>,
}

impl std::fmt::Debug for KeptSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password or the token.
        f.debug_struct("KeptSession")
            .field("username", &self.credentials.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct KeptState {
    /// The current token; `None` once the tracker refused the password.
    token: Option<String>,
    /// When to log in again before the session ends (9/10 of its life).
    renew_at: Instant,
    /// Why the last log-in failed, and when it may be tried again.
    failed: Option<(LoginFailure, Instant)>,
}

/// A failed log-in of a kept session, kept to answer calls without asking again.
#[derive(Clone, Debug)]
enum LoginFailure {
    /// The tracker refused the password: never tried again.
    Refused {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    /// Anything else (tracker unreachable, locked out for a while): tried again later.
    Other(String),
}

impl LoginFailure {
    fn of(e: &ClientError) -> LoginFailure {
        match e {
            ClientError::Api {
                status,
                code: code @ ErrorCode::BadCredentials,
                message,
            } => LoginFailure::Refused {
                status: *status,
                code: code.clone(),
                message: message.clone(),
            },
            other => LoginFailure::Other(other.to_string()),
        }
    }

    fn error(&self) -> ClientError {
        match self {
            LoginFailure::Refused {
                status,
                code,
                message,
            } => ClientError::Api {
                status: *status,
                code: code.clone(),
                message: message.clone(),
            },
            LoginFailure::Other(why) => {
                ClientError::Transport(format!("logged out, logging in again failed: {why}"))
            }
        }
    }
}

/// Share of a session's life after which a kept session logs in again.
const RENEW_SHARE: (u32, u32) = (9, 10);

/// Least wait before a kept session that failed to log in (not for a wrong password) tries
/// again: calls in between fail at once with the reason.
pub const RELOGIN_BACKOFF: Duration = Duration::from_secs(10);

/// A transport error with its causes (reqwest's own text hides why, e.g. an untrusted
/// certificate).
fn transport(e: reqwest::Error) -> ClientError {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    ClientError::Transport(text)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// When to renew a session that ends at `expires_at` (tracker time, seconds since the
/// epoch): after 9/10 of the life it has left now, measured on this machine's monotonic
/// clock so that a skewed wall clock only shifts it.
fn renew_at(expires_at: u64) -> Instant {
    let life = Duration::from_secs(expires_at.saturating_sub(unix_now()));
    Instant::now() + life * RENEW_SHARE.0 / RENEW_SHARE.1
}

impl TrackerClient {
    /// A client for the tracker at `base_url` (e.g. `http://127.0.0.1:7878`). Every call
    /// is bounded: [`CONNECT_TIMEOUT`] to connect, [`CALL_TIMEOUT`] in all; idle pooled
    /// connections are dropped before the tracker's own idle limit closes them.
    pub fn new(base_url: &str) -> TrackerClient {
        let http = Self::http_builder().build().unwrap_or_default();
        TrackerClient {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            auth: Auth::None,
            link: crate::link::LinkState::default(),
        }
    }

    /// The HTTP client's settings every client shares: the timeouts and the pool's idle
    /// limit. HTTPS trusts the bundled web PKI roots and the system's roots.
    fn http_builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE)
            .use_rustls_tls()
    }

    /// The same client, also trusting the certificate authority in `pem` (one or more PEM
    /// certificates) for a tracker served over HTTPS with a private CA. Keeps the
    /// timeouts; fails on a `pem` that holds no certificate.
    pub fn with_root_certificate(mut self, pem: &[u8]) -> Result<TrackerClient, ClientError> {
        let roots = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ClientError::Transport(format!("bad CA certificate: {e}")))?;
        if roots.is_empty() {
            return Err(ClientError::Transport(
                "bad CA certificate: no PEM certificate in it".into(),
            ));
        }
        let builder = roots
            .into_iter()
            .fold(Self::http_builder(), |b, root| b.add_root_certificate(root));
        self.http = builder
            .build()
            .map_err(|e| ClientError::Transport(format!("bad CA certificate: {e}")))?;
        Ok(self)
    }

    /// The same client, sending `token` with every request.
    pub fn with_token(mut self, token: impl Into<String>) -> TrackerClient {
        self.auth = Auth::Token(token.into());
        self
    }

    /// Logs in and returns a client that keeps the session alive: it remembers
    /// `credentials` in memory, logs in again once 9/10 of the session's life has passed
    /// and when the tracker answers 401 (the call is then sent once more). A password the
    /// tracker refuses is never tried again: every later call fails with that refusal
    /// ([`ErrorCode::BadCredentials`]). Other log-in failures are retried after
    /// [`RELOGIN_BACKOFF`]. Fails now if this first log-in fails.
    pub async fn login_kept(&self, credentials: Credentials) -> Result<TrackerClient, ClientError> {
        Ok(self.login_kept_as(credentials).await?.0)
    }

    /// [`TrackerClient::login_kept`], also returning the account the first log-in answered
    /// with (no second request for it).
    pub async fn login_kept_as(
        &self,
        credentials: Credentials,
    ) -> Result<(TrackerClient, Account), ClientError> {
        let session = self.login(&credentials).await?;
        let kept = KeptSession {
            credentials,
            current: std::sync::RwLock::new(Some(session.token.clone())),
            state: tokio::sync::Mutex::new(KeptState {
                token: Some(session.token),
                renew_at: renew_at(session.expires_at),
                failed: None,
            }),
        };
        // A new session watches its own link: an ended one of before is not its news.
        let client = TrackerClient {
            http: self.http.clone(),
            base: self.base.clone(),
            auth: Auth::Kept(Arc::new(kept)),
            link: crate::link::LinkState::default(),
        };
        Ok((client, session.account))
    }

    /// How this client's calls to the tracker are going (shared by its clones): for a
    /// banner while the tracker is unreachable, and to send the user back to the log-in
    /// screen when a kept session ended and logging in again was refused.
    pub fn link(&self) -> tokio::sync::watch::Receiver<crate::Link> {
        self.link.watch()
    }

    /// The session token sent now, if any (a kept session's changes when it logs in again).
    pub fn token(&self) -> Option<String> {
        match &self.auth {
            Auth::None => None,
            Auth::Token(token) => Some(token.clone()),
            Auth::Kept(kept) => kept
                .current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{API_PREFIX}{path}", self.base))
    }

    /// The token to send now: a kept session's, logging in again first when it is due.
    async fn current_token(&self) -> Result<Option<String>, ClientError> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Token(token) => Ok(Some(token.clone())),
            Auth::Kept(kept) => {
                let mut state = kept.state.lock().await;
                if state.token.is_some() && Instant::now() < state.renew_at {
                    return Ok(state.token.clone());
                }
                self.relogin(kept, &mut state).await.map(Some)
            }
        }
    }

    /// Logs a kept session in again (unless its password was refused, or it failed a
    /// moment ago); the new token.
    async fn relogin(
        &self,
        kept: &KeptSession,
        state: &mut KeptState,
    ) -> Result<String, ClientError> {
        if let Some((failure, retry_at)) = &state.failed
            && (matches!(failure, LoginFailure::Refused { .. }) || Instant::now() < *retry_at)
        {
            return Err(failure.error());
        }
        let req = self
            .request(Method::POST, "/sessions")
            .json(&kept.credentials);
        match Self::json::<Session>(self.send_once(req, None).await).await {
            Ok(session) => {
                tracing::info!(user = %kept.credentials.username, "logged in again");
                self.link.renewed();
                state.token = Some(session.token.clone());
                *kept.current.write().unwrap_or_else(|e| e.into_inner()) = state.token.clone();
                state.renew_at = renew_at(session.expires_at);
                state.failed = None;
                Ok(session.token)
            }
            Err(e) => {
                let failure = LoginFailure::of(&e);
                if let LoginFailure::Refused { .. } = failure {
                    tracing::warn!(
                        user = %kept.credentials.username,
                        "the tracker refused the kept password; staying logged out"
                    );
                    state.token = None;
                    *kept.current.write().unwrap_or_else(|e| e.into_inner()) = None;
                }
                if let ClientError::Api {
                    code: code @ (ErrorCode::BadCredentials | ErrorCode::AccountDisabled),
                    message,
                    ..
                } = &e
                {
                    self.link.ended(code, message);
                }
                state.failed = Some((failure, Instant::now() + RELOGIN_BACKOFF));
                Err(e)
            }
        }
    }

    /// Sends `req` with the session's token; a kept session answered 401 logs in again
    /// and sends it once more.
    async fn send(&self, req: RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let token = self.current_token().await?;
        let Auth::Kept(kept) = &self.auth else {
            return self.send_once(req, token.as_deref()).await;
        };
        let again = req.try_clone();
        let first = self.send_once(req, token.as_deref()).await;
        let refused = matches!(&first, Err(e) if e.code() == Some(&ErrorCode::Unauthorized));
        let Some(again) = again.filter(|_| refused) else {
            return first;
        };
        let fresh = {
            let mut state = kept.state.lock().await;
            // Another call may have logged in again meanwhile.
            match &state.token {
                Some(now) if Some(now) != token.as_ref() => now.clone(),
                _ => self.relogin(kept, &mut state).await?,
            }
        };
        self.send_once(again, Some(&fresh)).await
    }

    /// Sends `req` once with `token`, noting in the link whether the tracker answered.
    async fn send_once(
        &self,
        req: RequestBuilder,
        token: Option<&str>,
    ) -> Result<reqwest::Response, ClientError> {
        let req = match token {
            Some(token) => req.bearer_auth(token),
            None => req,
        };
        let resp = match req.send().await.map_err(transport) {
            Ok(resp) => resp,
            Err(e) => {
                self.link.unreachable(&e.to_string());
                return Err(e);
            }
        };
        self.link.answered();
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(transport)?;
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ClientError::Api {
                status: status.as_u16(),
                code: body.error.code,
                message: body.error.message,
            },
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                code: ErrorCode::from(status_code_name(status)),
                message: String::from_utf8_lossy(&bytes).into_owned(),
            },
        })
    }

    async fn json<T: DeserializeOwned>(
        resp: Result<reqwest::Response, ClientError>,
    ) -> Result<T, ClientError> {
        resp?
            .json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn get_json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ClientError> {
        Self::json(self.send(req).await).await
    }

    async fn bytes(&self, req: RequestBuilder) -> Result<Vec<u8>, ClientError> {
        Ok(self
            .send(req)
            .await?
            .bytes()
            .await
            .map_err(transport)?
            .to_vec())
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.get_json(self.request(Method::POST, path).json(body))
            .await
    }

    /// Creates an account.
    pub async fn register(&self, credentials: &Credentials) -> Result<Account, ClientError> {
        self.post("/accounts", credentials).await
    }

    /// Logs in; use `with_token(session.token)` for the calls that need it.
    pub async fn login(&self, credentials: &Credentials) -> Result<Session, ClientError> {
        self.post("/sessions", credentials).await
    }

    /// Ends this client's session.
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, "/sessions/current"))
            .await
            .map(|_| ())
    }

    /// The logged-in account.
    pub async fn me(&self) -> Result<Account, ClientError> {
        self.get_json(self.request(Method::GET, "/me")).await
    }

    /// The logged-in account's earnings over the last `minutes`, in `buckets` equal buckets.
    pub async fn earnings(&self, minutes: u32, buckets: u32) -> Result<Earnings, ClientError> {
        self.get_json(self.request(
            Method::GET,
            &format!("/me/earnings?minutes={minutes}&buckets={buckets}"),
        ))
        .await
    }

    /// The catalogue.
    pub async fn videos(&self) -> Result<Vec<Video>, ClientError> {
        self.get_json(self.request(Method::GET, "/videos")).await
    }

    /// One catalogue entry.
    pub async fn video(&self, id: &str) -> Result<Video, ClientError> {
        self.get_json(self.request(Method::GET, &format!("/videos/{}", seg(id))))
            .await
    }

    /// The poster, as JPEG bytes.
    pub async fn poster(&self, id: &str) -> Result<Vec<u8>, ClientError> {
        self.bytes(self.request(Method::GET, &format!("/videos/{}/poster", seg(id))))
            .await
    }

    /// The manifest's JSON bytes (only for a movie the account bought); parse and validate
    /// them with node-core's `Manifest::from_json`.
    pub async fn manifest(&self, id: &str) -> Result<Vec<u8>, ClientError> {
        self.bytes(self.request(Method::GET, &format!("/videos/{}/manifest", seg(id))))
            .await
    }

    /// Buys a movie: the price is taken once; buying again is free.
    pub async fn buy(&self, id: &str) -> Result<Purchase, ClientError> {
        self.get_json(self.request(Method::POST, &format!("/videos/{}/purchase", seg(id))))
            .await
    }
}

impl TrackerClient {
    /// Registers a node of the logged-in account.
    pub async fn register_node(
        &self,
        registration: &NodeRegistration,
    ) -> Result<NodeRegistered, ClientError> {
        self.post("/nodes", registration).await
    }

    /// Sends node `node_id`'s heartbeat; the answer says what to hold (a cache) or whom to
    /// fetch from (a viewer).
    pub async fn heartbeat(
        &self,
        node_id: &str,
        heartbeat: &Heartbeat,
    ) -> Result<HeartbeatReply, ClientError> {
        self.get_json(
            self.request(Method::PUT, &format!("/nodes/{}/heartbeat", seg(node_id)))
                .json(heartbeat),
        )
        .await
    }

    /// Takes node `node_id` out of the network.
    pub async fn leave(&self, node_id: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, &format!("/nodes/{}", seg(node_id))))
            .await
            .map(|_| ())
    }

    /// The origin's FTP address and the ticket-signing public key.
    pub async fn origin(&self) -> Result<OriginInfo, ClientError> {
        self.get_json(self.request(Method::GET, "/origin")).await
    }

    /// A ticket for node `holder` (the caller's) to fetch `video` from `server`.
    pub async fn ticket(&self, request: &TicketRequest) -> Result<Ticket, ClientError> {
        self.post("/tickets", request).await
    }

    /// Admin: every account.
    pub async fn admin_accounts(&self) -> Result<Vec<AccountSummary>, ClientError> {
        self.get_json(self.request(Method::GET, "/admin/accounts"))
            .await
    }

    /// Admin: every live node.
    pub async fn admin_nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        self.get_json(self.request(Method::GET, "/admin/nodes"))
            .await
    }

    /// Admin: every movie with its audience.
    pub async fn admin_videos(&self) -> Result<Vec<VideoStats>, ClientError> {
        self.get_json(self.request(Method::GET, "/admin/videos"))
            .await
    }

    /// Admin: the load timeline of the last `minutes`.
    pub async fn admin_load(&self, minutes: u32) -> Result<Vec<LoadPoint>, ClientError> {
        self.get_json(self.request(Method::GET, &format!("/admin/load?minutes={minutes}")))
            .await
    }

    /// Admin: one node's flows.
    pub async fn admin_flows(&self, node: &str) -> Result<NodeFlows, ClientError> {
        self.get_json(self.request(Method::GET, &format!("/admin/flows/{}", seg(node))))
            .await
    }

    /// The logged-in account's live nodes.
    pub async fn my_nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        self.get_json(self.request(Method::GET, "/me/nodes")).await
    }
}

/// Numbers a node's heartbeats (1, 2, 3… per node id) and keeps the report in flight until
/// the tracker answered it: a report whose answer was lost (tracker unreachable, 5xx, a
/// broken reply) goes again with the same number and the same `sent`/`received` entries, so
/// the tracker counts its bytes once; what happened meanwhile waits for the next number.
/// The rest of a heartbeat (what it watches or holds, limits) is state, always sent fresh.
#[derive(Debug)]
pub struct HeartbeatOutbox {
    /// Number of the next fresh report.
    next: u64,
    /// The report sent and not answered.
    in_flight: Option<InFlight>,
}

#[derive(Debug)]
struct InFlight {
    seq: u64,
    sent: Vec<PeerBytes>,
    received: Vec<PeerBytes>,
}

impl Default for HeartbeatOutbox {
    fn default() -> HeartbeatOutbox {
        HeartbeatOutbox::new()
    }
}

impl HeartbeatOutbox {
    /// Numbering from 1, nothing in flight.
    pub fn new() -> HeartbeatOutbox {
        HeartbeatOutbox {
            next: 1,
            in_flight: None,
        }
    }

    /// Fills `heartbeat`'s number and entries: the unanswered report's again, or else a
    /// fresh number with the `(sent, received)` entries `fresh` takes (called only then).
    pub fn prepare(
        &mut self,
        heartbeat: &mut Heartbeat,
        fresh: impl FnOnce() -> (Vec<PeerBytes>, Vec<PeerBytes>),
    ) {
        let in_flight = self.in_flight.get_or_insert_with(|| {
            let (sent, received) = fresh();
            let seq = self.next;
            self.next += 1;
            InFlight {
                seq,
                sent,
                received,
            }
        });
        heartbeat.seq = in_flight.seq;
        heartbeat.sent = in_flight.sent.clone();
        heartbeat.received = in_flight.received.clone();
    }

    /// Whether a report waits to be sent again.
    pub fn has_unanswered(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The number of the report in flight, if any.
    pub fn unanswered_seq(&self) -> Option<u64> {
        self.in_flight.as_ref().map(|f| f.seq)
    }

    /// Takes in how the last prepared report went: answered, it is done; lost on the way
    /// ([`ClientError::is_transient`]) or sent to a node id the tracker forgot (404, see
    /// [`HeartbeatOutbox::restart`]), it goes again; refused as a request (400…), its
    /// entries are dropped, since sending them again would be refused again.
    pub fn settle<T>(&mut self, result: &Result<T, ClientError>) {
        match result {
            Ok(_) => self.in_flight = None,
            Err(e) if e.is_transient() || e.code() == Some(&ErrorCode::NotFound) => {}
            Err(e) => {
                if let Some(f) = self.in_flight.take() {
                    tracing::warn!(
                        seq = f.seq,
                        entries = f.sent.len() + f.received.len(),
                        "the tracker refused a heartbeat report; its entries are dropped: {e}"
                    );
                }
            }
        }
    }

    /// A new node id (registered again): numbering restarts at 1, and the unanswered
    /// report's entries, which the tracker never took, go as report 1 of the new id.
    pub fn restart(&mut self) {
        self.next = 1;
        if let Some(f) = &mut self.in_flight {
            f.seq = 1;
            self.next = 2;
        }
    }
}

/// `s` as one URL path segment: everything but unreserved characters percent-encoded, so an
/// id can never reach another endpoint.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn status_code_name(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("error")
        .to_lowercase()
        .replace(' ', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(bytes: u64) -> PeerBytes {
        PeerBytes::new("cache-1", "m", bytes)
    }

    fn api(status: u16, code: ErrorCode) -> ClientError {
        ClientError::Api {
            status,
            code,
            message: String::new(),
        }
    }

    #[test]
    fn a_lost_report_goes_again_with_its_number_and_new_bytes_wait() {
        let mut outbox = HeartbeatOutbox::new();
        let mut hb = Heartbeat::default();
        outbox.prepare(&mut hb, || (vec![entry(5)], Vec::new()));
        assert_eq!((hb.seq, hb.sent.clone()), (1, vec![entry(5)]));
        for lost in [
            ClientError::Transport("reset".into()),
            ClientError::Decode("eof".into()),
            api(503, ErrorCode::Internal),
            api(401, ErrorCode::Unauthorized),
        ] {
            outbox.settle::<()>(&Err(lost));
            let mut again = Heartbeat::default();
            outbox.prepare(&mut again, || {
                panic!("nothing fresh while one is unanswered")
            });
            assert_eq!((again.seq, again.sent), (1, vec![entry(5)]));
        }
        outbox.settle(&Ok(()));
        assert!(!outbox.has_unanswered());
        let mut next = Heartbeat::default();
        outbox.prepare(&mut next, || (vec![entry(7)], vec![entry(1)]));
        assert_eq!(
            (next.seq, next.sent.clone(), next.received.clone()),
            (2, vec![entry(7)], vec![entry(1)])
        );
        // Nothing to report still takes a number.
        outbox.settle(&Ok(()));
        outbox.prepare(&mut next, || (Vec::new(), Vec::new()));
        assert_eq!((next.seq, next.sent.len()), (3, 0));
    }

    #[test]
    fn a_refused_report_is_dropped_and_a_new_node_id_counts_from_one() {
        let mut outbox = HeartbeatOutbox::new();
        let mut hb = Heartbeat::default();
        outbox.prepare(&mut hb, || (vec![entry(5)], Vec::new()));
        outbox.settle::<()>(&Err(api(400, ErrorCode::BadRequest)));
        assert!(!outbox.has_unanswered());
        outbox.prepare(&mut hb, || (vec![entry(6)], Vec::new()));
        assert_eq!(hb.seq, 2);
        // The tracker forgot the node: the report waits, then is report 1 of the new id.
        outbox.settle::<()>(&Err(api(404, ErrorCode::NotFound)));
        assert_eq!(outbox.unanswered_seq(), Some(2));
        outbox.restart();
        outbox.prepare(&mut hb, || panic!("the unanswered report goes first"));
        assert_eq!((hb.seq, hb.sent.clone()), (1, vec![entry(6)]));
        outbox.settle(&Ok(()));
        outbox.prepare(&mut hb, || (Vec::new(), Vec::new()));
        assert_eq!(hb.seq, 2);
        // Restarting with nothing in flight: the next report is 1.
        outbox.settle(&Ok(()));
        outbox.restart();
        outbox.prepare(&mut hb, || (Vec::new(), Vec::new()));
        assert_eq!(hb.seq, 1);
    }

    #[test]
    fn a_session_renews_at_nine_tenths_of_its_life() {
        let now = unix_now();
        let at = renew_at(now + 1000);
        let left = at.saturating_duration_since(Instant::now());
        assert!(left <= Duration::from_secs(900) && left >= Duration::from_secs(895));
        assert!(renew_at(now.saturating_sub(5)) <= Instant::now());
    }
}
