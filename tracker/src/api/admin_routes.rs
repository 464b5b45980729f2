//! Administrators' views: accounts, nodes, movies with their audience, the load timeline and
//! the flows of one node. Everyone else gets 403.

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use rivulet_tracker_client::{
    AccountSummary, ErrorBody, ErrorCode, LoadPoint, NodeFlows, NodeInfo, NodeKind, VideoStats,
};
use serde::Deserialize;

use super::video_routes::to_video;
use super::{ApiError, AppState, Authed};
use crate::{admin, nodes};

/// A request from an administrator.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let authed = Authed::from_request_parts(parts, state).await?;
        if !authed.caller.admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "administrators only",
            ));
        }
        Ok(Admin)
    }
}

fn db_error(e: sqlx::Error) -> ApiError {
    ApiError::internal(e)
}

/// `GET /admin/accounts`.
#[utoipa::path(get, path = "/admin/accounts", tag = "admin",
    responses((status = 200, body = Vec<AccountSummary>), (status = 403, body = ErrorBody)))]
pub async fn accounts(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<Vec<AccountSummary>>, ApiError> {
    Ok(Json(
        admin::accounts(&state.db.read).await.map_err(db_error)?,
    ))
}

/// `GET /admin/nodes`.
#[utoipa::path(get, path = "/admin/nodes", tag = "admin",
    responses((status = 200, body = Vec<NodeInfo>), (status = 403, body = ErrorBody)))]
pub async fn all_nodes(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<Vec<NodeInfo>>, ApiError> {
    Ok(Json(nodes::list(&state.db.read, None).await?))
}

/// `GET /admin/videos`.
#[utoipa::path(get, path = "/admin/videos", tag = "admin",
    responses((status = 200, body = Vec<VideoStats>), (status = 403, body = ErrorBody)))]
pub async fn videos(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<Vec<VideoStats>>, ApiError> {
    let live = nodes::list(&state.db.read, None).await?;
    let purchases = admin::purchases_by_video(&state.db.read)
        .await
        .map_err(db_error)?;
    let videos = state.catalogue.all().await;
    Ok(Json(
        videos
            .iter()
            .map(|v| {
                let id = &v.record.id;
                VideoStats {
                    video: to_video(v, false),
                    viewers_now: live
                        .iter()
                        .filter(|n| n.kind == NodeKind::Viewer && n.watching.as_ref() == Some(id))
                        .count() as u64,
                    caches_holding: live
                        .iter()
                        .filter(|n| {
                            n.kind == NodeKind::Cache
                                && n.holdings
                                    .iter()
                                    .any(|h| &h.video == id && !h.indices.is_empty())
                        })
                        .count() as u64,
                    purchases: purchases.get(id).copied().unwrap_or(0),
                }
            })
            .collect(),
    ))
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
    _: Admin,
    query: Result<Query<LoadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<LoadPoint>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let minutes = query.minutes.unwrap_or(60);
    if !(1..=1440).contains(&minutes) {
        return Err(ApiError::bad_request("minutes must be from 1 to 1440"));
    }
    Ok(Json(
        admin::load(&state.db.read, i64::from(minutes) * 60)
            .await
            .map_err(db_error)?,
    ))
}

/// `GET /admin/flows/{node}`.
#[utoipa::path(get, path = "/admin/flows/{node}", tag = "admin", params(("node" = String, Path)),
    responses((status = 200, body = NodeFlows), (status = 403, body = ErrorBody)))]
pub async fn flows(
    State(state): State<AppState>,
    _: Admin,
    Path(node): Path<String>,
) -> Result<Json<NodeFlows>, ApiError> {
    if node.is_empty() || node.len() > 64 {
        return Err(ApiError::bad_request("node id is malformed"));
    }
    Ok(Json(
        admin::flows(&state.db.read, &node)
            .await
            .map_err(db_error)?,
    ))
}
