//! Nodes: register, heartbeat, leave, and the caller's own live nodes.

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use rivulet_tracker_client::{
    ErrorBody, Heartbeat, HeartbeatReply, NodeId, NodeInfo, NodeRegistered, NodeRegistration,
    OriginInfo, Ticket, TicketRequest,
};

use super::{ApiError, ApiJson, AppState, Authed};

/// `POST /nodes`.
#[utoipa::path(post, path = "/nodes", tag = "nodes", request_body = NodeRegistration,
    responses((status = 201, body = NodeRegistered), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    info: ConnectInfo<SocketAddr>,
    authed: Authed,
    ApiJson(reg): ApiJson<NodeRegistration>,
) -> Result<(StatusCode, Json<NodeRegistered>), ApiError> {
    let registered = state
        .tracker()
        .register_node(&authed.caller, &reg, super::client_ip(&info))
        .await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

/// `PUT /nodes/{id}/heartbeat`: records the report; answers a cache with what to hold and
/// a viewer with whom to fetch from, tickets included.
#[utoipa::path(put, path = "/nodes/{id}/heartbeat", tag = "nodes", params(("id" = String, Path)),
    request_body = Heartbeat,
    responses((status = 200, body = HeartbeatReply), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn heartbeat(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<NodeId>,
    ApiJson(hb): ApiJson<Heartbeat>,
) -> Result<Json<HeartbeatReply>, ApiError> {
    Ok(Json(
        state.tracker().heartbeat(&authed.caller, &id, hb).await?,
    ))
}

/// `DELETE /nodes/{id}`.
#[utoipa::path(delete, path = "/nodes/{id}", tag = "nodes", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn leave(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<NodeId>,
) -> Result<StatusCode, ApiError> {
    state.tracker().leave(&authed.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /me/nodes`: the caller's live nodes.
#[utoipa::path(get, path = "/me/nodes", tag = "nodes",
    responses((status = 200, body = Vec<NodeInfo>), (status = 401, body = ErrorBody)))]
pub async fn mine(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<Json<Vec<NodeInfo>>, ApiError> {
    Ok(Json(state.tracker().my_nodes(&authed.caller).await?))
}

/// `GET /origin`: the origin's FTP address and the ticket key.
#[utoipa::path(get, path = "/origin", tag = "nodes", responses((status = 200, body = OriginInfo)))]
pub async fn origin(
    State(state): State<AppState>,
    info: ConnectInfo<SocketAddr>,
) -> Json<OriginInfo> {
    Json(state.tracker().origin(super::client_ip(&info)))
}

/// `POST /tickets`: a signed, short-lived FTP ticket for one of the caller's nodes.
#[utoipa::path(post, path = "/tickets", tag = "nodes", request_body = TicketRequest,
    responses((status = 200, body = Ticket), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn ticket(
    State(state): State<AppState>,
    authed: Authed,
    ApiJson(req): ApiJson<TicketRequest>,
) -> Result<Json<Ticket>, ApiError> {
    Ok(Json(state.tracker().ticket(&authed.caller, &req).await?))
}
