//! Register, log in and out, and the caller's own account.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use rivulet_tracker_client::{Account, Credentials, Earnings, ErrorBody, ErrorCode, Session};
use serde::Deserialize;

use super::{ApiError, ApiJson, AppState, Authed, client_ip};
use crate::{accounts, earnings};

/// `POST /accounts`: creates an account with the configured starting balance.
#[utoipa::path(post, path = "/accounts", tag = "accounts", request_body = Credentials,
    responses((status = 201, body = Account), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    info: ConnectInfo<SocketAddr>,
    ApiJson(creds): ApiJson<Credentials>,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    accounts::check_username(&creds.username)?;
    accounts::check_password(&creds.username, &creds.password)?;
    if let Err(wait) = state.signup_limiter.attempt("", client_ip(&info)) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::LockedOut,
            format!(
                "too many new accounts from this address; try again in {} s",
                wait.as_secs().max(1)
            ),
        ));
    }
    let hash = accounts::hash_password_async(creds.password.clone()).await?;
    let id = accounts::create(
        &state.db.write,
        &creds.username,
        &hash,
        false,
        state.initial_points,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(accounts::account(&state.db.read, id).await?),
    ))
}

/// `POST /sessions`: logs in, within the per-account and per-address failure limits.
#[utoipa::path(post, path = "/sessions", tag = "accounts", request_body = Credentials,
    responses((status = 200, body = Session), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    info: ConnectInfo<SocketAddr>,
    ApiJson(creds): ApiJson<Credentials>,
) -> Result<Json<Session>, ApiError> {
    let ip = client_ip(&info);
    if accounts::check_username(&creds.username).is_err() {
        return Err(accounts::AccountError::BadCredentials.into());
    }
    if let Err(wait) = state.login_limiter.attempt(&creds.username, ip) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::LockedOut,
            format!(
                "too many failed log-ins; try again in {} s",
                wait.as_secs().max(1)
            ),
        ));
    }
    let id = accounts::verify_login(&state.db.read, &creds.username, &creds.password).await?;
    state.login_limiter.succeeded(&creds.username, ip);
    let (token, expires_at) = accounts::start_session(&state.db.write, id).await?;
    Ok(Json(Session {
        token,
        expires_at: u64::try_from(expires_at).unwrap_or(0),
        account: accounts::account(&state.db.read, id).await?,
    }))
}

/// `DELETE /sessions/current`: ends the caller's session.
#[utoipa::path(delete, path = "/sessions/current", tag = "accounts",
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(State(state): State<AppState>, authed: Authed) -> Result<StatusCode, ApiError> {
    accounts::end_session(&state.db.write, &authed.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /me`: the caller's account.
#[utoipa::path(get, path = "/me", tag = "accounts",
    responses((status = 200, body = Account), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, authed: Authed) -> Result<Json<Account>, ApiError> {
    Ok(Json(
        accounts::account(&state.db.read, authed.caller.account_id).await?,
    ))
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
    let minutes = query.minutes.unwrap_or(60);
    if !(1..=earnings::MAX_MINUTES).contains(&minutes) {
        return Err(ApiError::bad_request(format!(
            "minutes must be from 1 to {}",
            earnings::MAX_MINUTES
        )));
    }
    let buckets = query.buckets.unwrap_or(60);
    let most = earnings::MAX_BUCKETS.min(minutes);
    if !(1..=most).contains(&buckets) {
        return Err(ApiError::bad_request(format!(
            "buckets must be from 1 to {most} (a bucket is at least a minute)"
        )));
    }
    Ok(Json(
        earnings::history(
            &state.db.read,
            authed.caller.account_id,
            rivulet_node_core::clock::unix_ms(),
            minutes,
            buckets,
        )
        .await
        .map_err(ApiError::internal)?,
    ))
}
