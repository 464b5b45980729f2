//! Nodes: register, heartbeat, leave, and the caller's own live nodes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rivulet_tracker_client::{
    ErrorBody, Heartbeat, HeartbeatReply, NodeInfo, NodeRegistered, NodeRegistration, OriginInfo,
    Peer, Ticket, TicketRequest, VideoTicket,
};

use super::{ApiError, ApiJson, AppState, Authed};
use crate::accounts;
use crate::nodes;
use crate::tickets;

/// `POST /nodes`.
#[utoipa::path(post, path = "/nodes", tag = "nodes", request_body = NodeRegistration,
    responses((status = 201, body = NodeRegistered), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    authed: Authed,
    ApiJson(reg): ApiJson<NodeRegistration>,
) -> Result<(StatusCode, Json<NodeRegistered>), ApiError> {
    let node_id = nodes::register(&state.db.write, authed.caller.account_id, &reg).await?;
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

/// `PUT /nodes/{id}/heartbeat`: records the report; answers a cache with what to hold and
/// a viewer with whom to fetch from, tickets included.
#[utoipa::path(put, path = "/nodes/{id}/heartbeat", tag = "nodes", params(("id" = String, Path)),
    request_body = Heartbeat,
    responses((status = 200, body = HeartbeatReply), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn heartbeat(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    ApiJson(hb): ApiJson<Heartbeat>,
) -> Result<Json<HeartbeatReply>, ApiError> {
    let watching = hb.watching.clone();
    state
        .heartbeats
        .record(&state.catalogue, authed.caller.account_id, &id, hb)
        .await?;
    let now = rivulet_node_core::clock::unix_secs();
    let sign = |server: &str, video: &str| {
        let claims = tickets::claims(&id, server, video, now);
        (state.signer.issue(&claims), claims.expires_at)
    };
    let origin_ticket = |video: &str| {
        let (ticket, expires_at) = sign(nodes::ORIGIN, video);
        VideoTicket {
            video: video.to_owned(),
            ticket,
            expires_at,
        }
    };
    let mut reply = HeartbeatReply::default();
    // Node ids carry their kind, and `record` checked that this one is the caller's.
    if id.starts_with("cache-") {
        if let Some(hold) = state.network.hold(&id) {
            reply.hold = hold;
            reply.placed = true;
        }
        reply.origin = reply.hold.iter().map(|h| origin_ticket(&h.video)).collect();
    } else if let Some(video) = watching
        && accounts::owns(&state.db.read, authed.caller.account_id, &video).await?
    {
        reply.peers = state
            .network
            .peers(&id, &video)
            .into_iter()
            .map(|(cache, indices, rate)| {
                let (ticket, expires_at) = sign(&cache.node_id, &video);
                Peer {
                    node_id: cache.node_id,
                    addr: cache.advertise,
                    video: video.clone(),
                    indices,
                    rate: rate as u64,
                    ticket,
                    expires_at,
                }
            })
            .collect();
        reply.origin = vec![origin_ticket(&video)];
    }
    Ok(Json(reply))
}

/// `DELETE /nodes/{id}`.
#[utoipa::path(delete, path = "/nodes/{id}", tag = "nodes", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn leave(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    nodes::leave(&state.db.write, authed.caller.account_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /me/nodes`: the caller's live nodes.
#[utoipa::path(get, path = "/me/nodes", tag = "nodes",
    responses((status = 200, body = Vec<NodeInfo>), (status = 401, body = ErrorBody)))]
pub async fn mine(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<Json<Vec<NodeInfo>>, ApiError> {
    Ok(Json(
        nodes::list(&state.db.read, Some(authed.caller.account_id)).await?,
    ))
}

/// `GET /origin`: the origin's FTP address and the ticket key.
#[utoipa::path(get, path = "/origin", tag = "nodes", responses((status = 200, body = OriginInfo)))]
pub async fn origin(State(state): State<AppState>) -> Json<OriginInfo> {
    Json(OriginInfo {
        ftp: state.origin_ftp.clone(),
        ticket_key: state.signer.public_key().to_hex(),
    })
}

/// `POST /tickets`: a signed, short-lived FTP ticket for one of the caller's nodes.
#[utoipa::path(post, path = "/tickets", tag = "nodes", request_body = TicketRequest,
    responses((status = 200, body = Ticket), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn ticket(
    State(state): State<AppState>,
    authed: Authed,
    ApiJson(req): ApiJson<TicketRequest>,
) -> Result<Json<Ticket>, ApiError> {
    if state.catalogue.get(&req.video).await.is_none() {
        return Err(ApiError::not_found(format!(
            "no video with id {:?}",
            req.video
        )));
    }
    let now = rivulet_node_core::clock::unix_secs();
    let claims = tickets::claims_for(
        &state.db.read,
        &state.network,
        authed.caller.account_id,
        &req.holder,
        &req.server,
        &req.video,
        now,
    )
    .await?;
    Ok(Json(Ticket {
        ticket: state.signer.issue(&claims),
        expires_at: claims.expires_at,
    }))
}
