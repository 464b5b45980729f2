//! The web app's files, built into the binary so the pages work offline and need no CDN:
//! the stylesheet, the live-refresh script and the logo.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::layout::PageError;

/// An embedded file: its name under `/assets/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/style.css"),
    },
    Asset {
        name: "live.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/live.js"),
    },
    Asset {
        name: "logo.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../assets/logo.svg"),
    },
];

/// `GET /assets/{name}`.
pub async fn serve(name: Option<Path<String>>) -> Result<Response, PageError> {
    let name = name.map(|Path(n)| n).unwrap_or_default();
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(PageError::not_found)?;
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(response)
}

/// `GET /favicon.ico`: browsers ask for it whatever the page says; the logo answers.
pub async fn favicon() -> Result<Response, PageError> {
    serve(Some(Path("logo.svg".to_owned()))).await
}
