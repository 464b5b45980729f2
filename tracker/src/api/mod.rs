//! The HTTP API under `/api/v1`: shared state, the error type every handler returns (always
//! the `{"error": {"code", "message"}}` body), the extractors for JSON bodies and sessions,
//! and the router.

mod account_routes;
mod admin_routes;
mod error;
mod node_routes;
mod video_routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rivulet_tracker_client::{API_PREFIX, ErrorCode};

pub use error::ApiError;
use error::json_rejection;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts::Caller;
use crate::catalogue_cache::CatalogueCache;
use crate::login_limit::LoginLimiter;

/// Largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: crate::db::Database,
    pub catalogue: Arc<CatalogueCache>,
    pub login_limiter: Arc<LoginLimiter>,
    /// Recently checked sessions.
    pub sessions: Arc<crate::sessions::SessionCache>,
    /// Sign-ups per address.
    pub signup_limiter: Arc<LoginLimiter>,
    /// Sign-up points and the points rate, changeable while running.
    pub settings: Arc<crate::settings::Settings>,
    /// Silence after which a node is dropped.
    pub node_timeout: std::time::Duration,
    /// Signs FTP tickets.
    pub signer: Arc<rivulet_node_core::ticket::TicketSigner>,
    /// The origin's FTP address as nodes should dial it.
    pub origin_ftp: String,
    /// SHA-256 of the origin's FTPS certificate, when it serves FTPS.
    pub origin_fingerprint: Option<String>,
    /// Bytes the origin has served.
    pub origin_counters: Arc<rivulet_node_core::peer::chunk_server::ServedBytes>,
    /// Writes heartbeats in batches.
    pub heartbeats: crate::nodes::HeartbeatWriter,
    /// Placement and peer sets.
    pub network: Arc<crate::placement::Network>,
    /// What the tracker knows caches hold.
    pub proofs: Arc<crate::proof::Proofs>,
    /// Request counts and latencies.
    pub metrics: Arc<crate::metrics::RequestMetrics>,
    /// Whether each cache answered the reachability probe.
    pub reach: Arc<crate::reach::Reachability>,
    /// A public tracker refuses caches' loopback, private and foreign addresses.
    pub public: bool,
    /// Whether this tracker leads the ones sharing its database (`/metrics` says it).
    pub leadership: crate::leader::Leadership,
}

/// A JSON body whose every rejection (syntax, types, missing fields, size, content type)
/// becomes the API's error body.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// The bearer token of a request, if any.
fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// A request from a logged-in account.
#[derive(Clone, Debug)]
pub struct Authed {
    pub caller: Caller,
    pub token: String,
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?.to_owned();
        let caller = state
            .sessions
            .caller(&state.db.read, &token)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        Ok(Authed { caller, token })
    }
}

/// A request that may come from a logged-in account. A token that is present but invalid
/// is still refused, so a client learns its session ended.
#[derive(Clone, Debug)]
pub struct MaybeAuthed(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeAuthed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if bearer(parts).is_none() {
            return Ok(MaybeAuthed(None));
        }
        Authed::from_request_parts(parts, state)
            .await
            .map(|a| MaybeAuthed(Some(a.caller)))
    }
}

/// The client's address (for log-in rate limits).
pub fn client_ip(info: &ConnectInfo<SocketAddr>) -> std::net::IpAddr {
    info.0.ip()
}

/// Gives every error response without a body of ours (unknown routes, wrong methods,
/// oversized bodies caught before a handler) the API's error body.
async fn error_bodies(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such endpoint".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::BadRequest,
            "method not allowed on this endpoint".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            ErrorCode::TooLarge,
            format!("request body is larger than {MAX_BODY_BYTES} bytes"),
        ),
        s if s.is_server_error() => (ErrorCode::Internal, "the tracker failed".to_owned()),
        s => (
            ErrorCode::BadRequest,
            s.canonical_reason().unwrap_or("bad request").to_owned(),
        ),
    };
    ApiError::new(status, code, message).into_response()
}

/// The API's routes under `/api/v1`, and its OpenAPI document built from the same handler
/// declarations, so the two cannot drift apart.
pub fn router(state: AppState) -> Router {
    let (api, mut doc) = OpenApiRouter::new()
        .routes(routes!(account_routes::register))
        .routes(routes!(account_routes::login))
        .routes(routes!(account_routes::logout))
        .routes(routes!(account_routes::me))
        .routes(routes!(account_routes::my_earnings))
        .routes(routes!(node_routes::mine))
        .routes(routes!(admin_routes::accounts))
        .routes(routes!(admin_routes::all_nodes))
        .routes(routes!(admin_routes::videos))
        .routes(routes!(admin_routes::load))
        .routes(routes!(admin_routes::flows))
        .routes(routes!(node_routes::register))
        .routes(routes!(node_routes::leave))
        .routes(routes!(node_routes::heartbeat))
        .routes(routes!(node_routes::origin))
        .routes(routes!(node_routes::ticket))
        .routes(routes!(video_routes::list))
        .routes(routes!(video_routes::one))
        .routes(routes!(video_routes::poster))
        .routes(routes!(video_routes::manifest))
        .routes(routes!(video_routes::buy))
        .split_for_parts();
    doc.info.title = "Rivulet tracker API".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "Accounts, catalogue, purchases, nodes and FTP tickets. Send the session token as \
         `Authorization: Bearer <token>`. Every error carries {\"error\": {\"code\", \"message\"}}."
            .into(),
    );
    doc.paths.paths = std::mem::take(&mut doc.paths.paths)
        .into_iter()
        .map(|(path, item)| (format!("{API_PREFIX}{path}"), item))
        .collect();
    let doc = Arc::new(doc);
    let api = api.route(
        "/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move { Json(doc.as_ref().clone()) }
        }),
    );
    Router::new()
        .nest(API_PREFIX, api)
        .route("/metrics", get(crate::metrics::render))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A handler that panics answers 500 with the error body; the server lives on.
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(middleware::from_fn(error_bodies))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}
