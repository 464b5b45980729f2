//! The catalogue: list, one movie, its poster, its manifest (for owners), and buying it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rivulet_tracker_client::{ErrorBody, ErrorCode, Purchase, Video};

use super::{ApiError, AppState, Authed, MaybeAuthed};
use crate::accounts::{self, BuyOutcome};
use std::sync::Arc;

use crate::catalogue::{self, StoredVideo};

pub(super) fn to_video(v: &StoredVideo, bought: bool) -> Video {
    let e = v.entry();
    Video {
        id: e.id,
        title: e.title,
        duration_ms: e.duration_ms,
        bytes: e.bytes,
        segments: e.segments,
        k: e.k,
        n: e.n,
        price: e.price,
        bought,
    }
}

async fn find(state: &AppState, id: &str) -> Result<Arc<StoredVideo>, ApiError> {
    if catalogue::check_id(id).is_err() {
        return Err(ApiError::not_found(format!("no video with id {id:?}")));
    }
    state
        .catalogue
        .get(id)
        .await
        .ok_or_else(|| ApiError::not_found(format!("no video with id {id:?}")))
}

async fn owned(
    state: &AppState,
    caller: Option<accounts::Caller>,
    id: &str,
) -> Result<bool, ApiError> {
    match caller {
        Some(c) => Ok(accounts::owns(&state.db.read, c.account_id, id).await?),
        None => Ok(false),
    }
}

/// `GET /videos`: every movie, with `bought` for the caller.
#[utoipa::path(get, path = "/videos", tag = "catalogue", responses((status = 200, body = Vec<Video>)))]
pub async fn list(
    State(state): State<AppState>,
    MaybeAuthed(caller): MaybeAuthed,
) -> Result<Json<Vec<Video>>, ApiError> {
    let bought = match caller {
        Some(c) => {
            accounts::account(&state.db.read, c.account_id)
                .await?
                .bought
        }
        None => Vec::new(),
    };
    let videos = state.catalogue.all().await;
    Ok(Json(
        videos
            .iter()
            .map(|v| to_video(v, bought.contains(&v.record.id)))
            .collect(),
    ))
}

/// `GET /videos/{id}`.
#[utoipa::path(get, path = "/videos/{id}", tag = "catalogue", params(("id" = String, Path)),
    responses((status = 200, body = Video), (status = 404, body = ErrorBody)))]
pub async fn one(
    State(state): State<AppState>,
    MaybeAuthed(caller): MaybeAuthed,
    Path(id): Path<String>,
) -> Result<Json<Video>, ApiError> {
    let video = find(&state, &id).await?;
    let bought = owned(&state, caller, &id).await?;
    Ok(Json(to_video(&video, bought)))
}

/// `GET /videos/{id}/poster`: the JPEG poster.
#[utoipa::path(get, path = "/videos/{id}/poster", tag = "catalogue", params(("id" = String, Path)),
    responses((status = 200, content_type = "image/jpeg", body = Vec<u8>), (status = 404, body = ErrorBody)))]
pub async fn poster(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let video = find(&state, &id).await?;
    let bytes = tokio::fs::read(video.poster_path())
        .await
        .map_err(|_| ApiError::not_found(format!("{id:?} has no poster")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        bytes,
    )
        .into_response())
}

/// Whether one of the account's live caches is placed with some of `video`.
async fn placed_with_callers_cache(
    state: &AppState,
    account_id: i64,
    video: &str,
) -> Result<bool, ApiError> {
    let mine = crate::nodes::list(&state.db.read, Some(account_id)).await?;
    Ok(mine
        .iter()
        .any(|n| state.network.is_placed(&n.node_id, video)))
}

/// `GET /videos/{id}/manifest`: only for accounts that bought the movie, or whose cache is
/// placed with it.
#[utoipa::path(get, path = "/videos/{id}/manifest", tag = "catalogue", params(("id" = String, Path)),
    responses((status = 200, content_type = "application/json", description = "node-core's Manifest"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn manifest(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let video = find(&state, &id).await?;
    if !accounts::owns(&state.db.read, authed.caller.account_id, &id).await?
        && !placed_with_callers_cache(&state, authed.caller.account_id, &id).await?
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::NotBought,
            format!("buy {id:?} first: its manifest is for accounts that own it"),
        ));
    }
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        video.manifest.to_json(),
    )
        .into_response())
}

/// `POST /videos/{id}/purchase`: takes the price once; buying again is free.
#[utoipa::path(post, path = "/videos/{id}/purchase", tag = "catalogue", params(("id" = String, Path)),
    responses((status = 200, body = Purchase), (status = 401, body = ErrorBody), (status = 402, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn buy(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<Json<Purchase>, ApiError> {
    let video = find(&state, &id).await?;
    let price = video.record.price;
    match accounts::buy(&state.db.write, authed.caller.account_id, &id, price).await? {
        BuyOutcome::Bought { charged, balance } => Ok(Json(Purchase {
            video: id,
            charged,
            balance,
        })),
        BuyOutcome::AlreadyOwned { balance } => Ok(Json(Purchase {
            video: id,
            charged: 0,
            balance,
        })),
        BuyOutcome::TooExpensive { balance } => Err(ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            ErrorCode::InsufficientPoints,
            format!(
                "{:?} costs {price} points; the balance is {balance}",
                video.record.title
            ),
        )),
    }
}
