//! Administrators' views: accounts, nodes, movies with their audience, the load timeline and
//! the flows of one node. Everyone else gets 403.

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use rivulet_tracker_client::{
    AccountSummary, ErrorBody, LoadPoint, NodeFlows, NodeId, NodeInfo, VideoStats,
};
use serde::Deserialize;

use super::{ApiError, AppState, Authed};
use crate::accounts::Caller;
use crate::service::TrackerError;

/// A request from an administrator: the caller, checked to be one.
#[derive(Debug)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let authed = Authed::from_request_parts(parts, state).await?;
        if !authed.caller.admin {
            return Err(TrackerError::AdminOnly.into());
        }
        Ok(Admin(authed.caller))
    }
}

/// `GET /admin/accounts`.
#[utoipa::path(get, path = "/admin/accounts", tag = "admin",
    responses((status = 200, body = Vec<AccountSummary>), (status = 403, body = ErrorBody)))]
pub async fn accounts(
    State(state): State<AppState>,
    Admin(caller): Admin,
) -> Result<Json<Vec<AccountSummary>>, ApiError> {
    Ok(Json(state.tracker().admin_accounts(&caller).await?))
}

/// `GET /admin/nodes`.
#[utoipa::path(get, path = "/admin/nodes", tag = "admin",
    responses((status = 200, body = Vec<NodeInfo>), (status = 403, body = ErrorBody)))]
pub async fn all_nodes(
    State(state): State<AppState>,
    Admin(caller): Admin,
) -> Result<Json<Vec<NodeInfo>>, ApiError> {
    Ok(Json(state.tracker().admin_nodes(&caller).await?))
}

/// `GET /admin/videos`.
#[utoipa::path(get, path = "/admin/videos", tag = "admin",
    responses((status = 200, body = Vec<VideoStats>), (status = 403, body = ErrorBody)))]
pub async fn videos(
    State(state): State<AppState>,
    Admin(caller): Admin,
) -> Result<Json<Vec<VideoStats>>, ApiError> {
    Ok(Json(state.tracker().admin_videos(&caller).await?))
}

/// How far back the load timeline reaches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadQuery {
    /// Minutes of history, 1 to 1440 (default 60).
    pub minutes: Option<u32>,
}

/// `GET /admin/load?minutes=N`.
#[utoipa::path(get, path = "/admin/load", tag = "admin", params(("minutes" = Option<u32>, Query)),
    responses((status = 200, body = Vec<LoadPoint>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn load(
    State(state): State<AppState>,
    Admin(caller): Admin,
    query: Result<Query<LoadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<LoadPoint>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(
        state.tracker().admin_load(&caller, query.minutes).await?,
    ))
}

/// `GET /admin/flows/{node}`.
#[utoipa::path(get, path = "/admin/flows/{node}", tag = "admin", params(("node" = String, Path)),
    responses((status = 200, body = NodeFlows), (status = 403, body = ErrorBody)))]
pub async fn flows(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(node): Path<NodeId>,
) -> Result<Json<NodeFlows>, ApiError> {
    Ok(Json(state.tracker().admin_flows(&caller, &node).await?))
}
