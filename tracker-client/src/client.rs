//! A typed async client for the tracker's API. Every method maps a non-2xx answer to
//! [`ClientError::Api`] with the server's error code and message.

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{
    API_PREFIX, Account, AccountSummary, Credentials, Earnings, ErrorBody, ErrorCode, Heartbeat,
    HeartbeatReply, LoadPoint, NodeFlows, NodeInfo, NodeRegistered, NodeRegistration, OriginInfo,
    Purchase, Session, Ticket, TicketRequest, Video, VideoStats,
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

/// Longest wait to connect to the tracker.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest wait for a whole call (connect, send, answer, body).
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Idle time after which a pooled connection is dropped (the tracker closes connections
/// that send nothing for 10 s).
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// A client for one tracker, optionally logged in.
#[derive(Clone, Debug)]
pub struct TrackerClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl TrackerClient {
    /// A client for the tracker at `base_url` (e.g. `http://127.0.0.1:7878`). Every call
    /// is bounded: [`CONNECT_TIMEOUT`] to connect, [`CALL_TIMEOUT`] in all; idle pooled
    /// connections are dropped before the tracker's own idle limit closes them.
    pub fn new(base_url: &str) -> TrackerClient {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE)
            .build()
            .unwrap_or_default();
        TrackerClient {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    /// The same client, sending `token` with every request.
    pub fn with_token(mut self, token: impl Into<String>) -> TrackerClient {
        self.token = Some(token.into());
        self
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}{API_PREFIX}{path}", self.base));
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    async fn send(req: RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
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

    async fn json<T: DeserializeOwned>(req: RequestBuilder) -> Result<T, ClientError> {
        Self::send(req)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn bytes(req: RequestBuilder) -> Result<Vec<u8>, ClientError> {
        Ok(Self::send(req)
            .await?
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .to_vec())
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        Self::json(self.request(Method::POST, path).json(body)).await
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
        Self::send(self.request(Method::DELETE, "/sessions/current"))
            .await
            .map(|_| ())
    }

    /// The logged-in account.
    pub async fn me(&self) -> Result<Account, ClientError> {
        Self::json(self.request(Method::GET, "/me")).await
    }

    /// The logged-in account's earnings over the last `minutes`, in `buckets` equal buckets.
    pub async fn earnings(&self, minutes: u32, buckets: u32) -> Result<Earnings, ClientError> {
        Self::json(self.request(
            Method::GET,
            &format!("/me/earnings?minutes={minutes}&buckets={buckets}"),
        ))
        .await
    }

    /// The catalogue.
    pub async fn videos(&self) -> Result<Vec<Video>, ClientError> {
        Self::json(self.request(Method::GET, "/videos")).await
    }

    /// One catalogue entry.
    pub async fn video(&self, id: &str) -> Result<Video, ClientError> {
        Self::json(self.request(Method::GET, &format!("/videos/{}", seg(id)))).await
    }

    /// The poster, as JPEG bytes.
    pub async fn poster(&self, id: &str) -> Result<Vec<u8>, ClientError> {
        Self::bytes(self.request(Method::GET, &format!("/videos/{}/poster", seg(id)))).await
    }

    /// The manifest's JSON bytes (only for a movie the account bought); parse and validate
    /// them with node-core's `Manifest::from_json`.
    pub async fn manifest(&self, id: &str) -> Result<Vec<u8>, ClientError> {
        Self::bytes(self.request(Method::GET, &format!("/videos/{}/manifest", seg(id)))).await
    }

    /// Buys a movie: the price is taken once; buying again is free.
    pub async fn buy(&self, id: &str) -> Result<Purchase, ClientError> {
        Self::json(self.request(Method::POST, &format!("/videos/{}/purchase", seg(id)))).await
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
        Self::json(
            self.request(Method::PUT, &format!("/nodes/{}/heartbeat", seg(node_id)))
                .json(heartbeat),
        )
        .await
    }

    /// Takes node `node_id` out of the network.
    pub async fn leave(&self, node_id: &str) -> Result<(), ClientError> {
        Self::send(self.request(Method::DELETE, &format!("/nodes/{}", seg(node_id))))
            .await
            .map(|_| ())
    }

    /// The origin's FTP address and the ticket-signing public key.
    pub async fn origin(&self) -> Result<OriginInfo, ClientError> {
        Self::json(self.request(Method::GET, "/origin")).await
    }

    /// A ticket for node `holder` (the caller's) to fetch `video` from `server`.
    pub async fn ticket(&self, request: &TicketRequest) -> Result<Ticket, ClientError> {
        self.post("/tickets", request).await
    }

    /// Admin: every account.
    pub async fn admin_accounts(&self) -> Result<Vec<AccountSummary>, ClientError> {
        Self::json(self.request(Method::GET, "/admin/accounts")).await
    }

    /// Admin: every live node.
    pub async fn admin_nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        Self::json(self.request(Method::GET, "/admin/nodes")).await
    }

    /// Admin: every movie with its audience.
    pub async fn admin_videos(&self) -> Result<Vec<VideoStats>, ClientError> {
        Self::json(self.request(Method::GET, "/admin/videos")).await
    }

    /// Admin: the load timeline of the last `minutes`.
    pub async fn admin_load(&self, minutes: u32) -> Result<Vec<LoadPoint>, ClientError> {
        Self::json(self.request(Method::GET, &format!("/admin/load?minutes={minutes}"))).await
    }

    /// Admin: one node's flows.
    pub async fn admin_flows(&self, node: &str) -> Result<NodeFlows, ClientError> {
        Self::json(self.request(Method::GET, &format!("/admin/flows/{}", seg(node)))).await
    }

    /// The logged-in account's live nodes.
    pub async fn my_nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        Self::json(self.request(Method::GET, "/me/nodes")).await
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
