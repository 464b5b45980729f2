//! Nodes: register, heartbeat, leave, and the caller's own live nodes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rivulet_tracker_client::{Heartbeat, NodeInfo, NodeRegistered, NodeRegistration, codes};

use super::{ApiError, ApiJson, AppState, Authed};
use crate::nodes::{self, NodeError};

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> ApiError {
        let message = e.to_string();
        match e {
            NodeError::Invalid(_) => ApiError::bad_request(message),
            NodeError::Unknown(_) => {
                ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, message)
            }
            NodeError::Db(_) => ApiError::internal(message),
        }
    }
}

/// `POST /nodes`.
pub async fn register(
    State(state): State<AppState>,
    authed: Authed,
    ApiJson(reg): ApiJson<NodeRegistration>,
) -> Result<(StatusCode, Json<NodeRegistered>), ApiError> {
    let node_id = nodes::register(&state.db, authed.caller.account_id, &reg).await?;
    let timeout_secs = state.node_timeout.as_secs().max(1);
    Ok((
        StatusCode::CREATED,
        Json(NodeRegistered {
            node_id,
            heartbeat_secs: (timeout_secs / 3).max(1),
            timeout_secs,
        }),
    ))
}

/// `PUT /nodes/{id}/heartbeat`.
pub async fn heartbeat(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    ApiJson(hb): ApiJson<Heartbeat>,
) -> Result<StatusCode, ApiError> {
    nodes::heartbeat(
        &state.db,
        &state.catalogue,
        authed.caller.account_id,
        &id,
        &hb,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /nodes/{id}`.
pub async fn leave(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    nodes::leave(&state.db, authed.caller.account_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /me/nodes`: the caller's live nodes.
pub async fn mine(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<Json<Vec<NodeInfo>>, ApiError> {
    Ok(Json(
        nodes::list(&state.db, Some(authed.caller.account_id)).await?,
    ))
}
