//! The catalogue: list, one movie, its poster, its manifest (for owners), and buying it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use rivulet_tracker_client::{ErrorBody, Purchase, Video};

use super::{ApiError, AppState, Authed, MaybeAuthed};

/// `GET /videos`: every movie, with `bought` for the caller.
#[utoipa::path(get, path = "/videos", tag = "catalogue", responses((status = 200, body = Vec<Video>)))]
pub async fn list(
    State(state): State<AppState>,
    MaybeAuthed(caller): MaybeAuthed,
) -> Result<Json<Vec<Video>>, ApiError> {
    Ok(Json(state.tracker().videos(caller.as_ref()).await?))
}

/// `GET /videos/{id}`.
#[utoipa::path(get, path = "/videos/{id}", tag = "catalogue", params(("id" = String, Path)),
    responses((status = 200, body = Video), (status = 404, body = ErrorBody)))]
pub async fn one(
    State(state): State<AppState>,
    MaybeAuthed(caller): MaybeAuthed,
    Path(id): Path<String>,
) -> Result<Json<Video>, ApiError> {
    Ok(Json(state.tracker().video(caller.as_ref(), &id).await?))
}

/// `GET /videos/{id}/poster`: the JPEG poster.
#[utoipa::path(get, path = "/videos/{id}/poster", tag = "catalogue", params(("id" = String, Path)),
    responses((status = 200, content_type = "image/jpeg", body = Vec<u8>), (status = 404, body = ErrorBody)))]
pub async fn poster(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let bytes = state.tracker().poster(&id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        bytes,
    )
        .into_response())
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
    let manifest = state.tracker().manifest(&authed.caller, &id).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], manifest).into_response())
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
    Ok(Json(state.tracker().buy(&authed.caller, &id).await?))
}
