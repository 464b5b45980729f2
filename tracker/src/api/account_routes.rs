//! Register, log in and out, and the caller's own account.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use rivulet_tracker_client::{Account, Credentials, Earnings, ErrorBody, Session};
use serde::Deserialize;

use super::{ApiError, ApiJson, AppState, Authed, client_ip};

/// `POST /accounts`: creates an account with the configured starting balance.
#[utoipa::path(post, path = "/accounts", tag = "accounts", request_body = Credentials,
    responses((status = 201, body = Account), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    info: ConnectInfo<SocketAddr>,
    ApiJson(creds): ApiJson<Credentials>,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    let account = state.tracker().register(&creds, client_ip(&info)).await?;
    Ok((StatusCode::CREATED, Json(account)))
}

/// `POST /sessions`: logs in, within the per-account and per-address failure limits.
#[utoipa::path(post, path = "/sessions", tag = "accounts", request_body = Credentials,
    responses((status = 200, body = Session), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    info: ConnectInfo<SocketAddr>,
    ApiJson(creds): ApiJson<Credentials>,
) -> Result<Json<Session>, ApiError> {
    Ok(Json(state.tracker().login(&creds, client_ip(&info)).await?))
}

/// `DELETE /sessions/current`: ends the caller's session.
#[utoipa::path(delete, path = "/sessions/current", tag = "accounts",
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(State(state): State<AppState>, authed: Authed) -> Result<StatusCode, ApiError> {
    state.tracker().logout(&authed.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /me`: the caller's account.
#[utoipa::path(get, path = "/me", tag = "accounts",
    responses((status = 200, body = Account), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, authed: Authed) -> Result<Json<Account>, ApiError> {
    Ok(Json(state.tracker().me(&authed.caller).await?))
}

/// Which earnings to return.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarningsQuery {
    /// Minutes of history, 1 to 43200 (30 days; default 60).
    pub minutes: Option<u32>,
    /// Buckets to sum them into, 1 to 240 (default 60).
    pub buckets: Option<u32>,
}

/// `GET /me/earnings?minutes=M&buckets=B`: the caller's credited bytes and points over time.
#[utoipa::path(get, path = "/me/earnings", tag = "accounts",
    params(("minutes" = Option<u32>, Query), ("buckets" = Option<u32>, Query)),
    responses((status = 200, body = Earnings), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn my_earnings(
    State(state): State<AppState>,
    authed: Authed,
    query: Result<Query<EarningsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Earnings>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let tracker = state.tracker();
    Ok(Json(
        tracker
            .earnings(&authed.caller, query.minutes, query.buckets)
            .await?,
    ))
}
