//! The tracker's web app: server-rendered pages for people (landing, sign-up, log-in,
//! about, their dashboard) and for administrators (live load chart, nodes, videos,
//! accounts, flow views), served by the same binary as the API with every asset embedded.
//! Sessions live in cookies tied to the API's sessions table; every form carries a CSRF
//! token. See `docs/web.md`.

mod admin_pages;
mod assets;
mod chart;
mod layout;
mod pages;
mod session;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceExt;

pub use layout::PageError;
pub use session::{CSRF_FIELD, FORM_COOKIE, SESSION_COOKIE};

use crate::api::AppState;

/// Largest form the pages read.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// Whether a path belongs to the API (and its error bodies) rather than to the pages.
fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/metrics"
}

/// The pages, with the API behind them: requests under `/api/` and `/metrics` go to `api`
/// untouched; everything else is a page, and an unknown page is the 404 page.
pub fn router(state: AppState, api: Router) -> Router {
    let pages = pages(state);
    Router::new().fallback(move |req: Request| {
        let target = if is_api_path(req.uri().path()) {
            api.clone()
        } else {
            pages.clone()
        };
        async move { target.oneshot(req).await.into_response() }
    })
}

/// The pages alone.
fn pages(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::landing))
        .route("/about", get(pages::about))
        .route("/signup", get(pages::signup_form).post(pages::signup))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/dashboard", get(pages::dashboard))
        .route("/admin", get(admin_pages::overview))
        .route("/admin/load.json", get(admin_pages::load_json))
        .route("/admin/nodes", get(admin_pages::nodes_page))
        .route("/admin/videos", get(admin_pages::videos_page))
        .route("/admin/accounts", get(admin_pages::accounts_page))
        .route("/admin/flows/{node}", get(admin_pages::flows_page))
        .route("/assets/{name}", get(assets::serve))
        .route("/favicon.ico", get(assets::favicon))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        // A handler that panics answers with the 500 page; the server lives on.
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(middleware::from_fn(error_pages))
        .layer(middleware::from_fn(page_headers))
        .with_state(state)
}

/// An unknown address: the 404 page for browsers (they ask for `text/html`), the API's
/// JSON error body for programs.
async fn not_found(headers: HeaderMap) -> Response {
    let wants_html = headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("text/html")));
    if wants_html {
        PageError::not_found().into_response()
    } else {
        crate::api::ApiError::not_found("no such endpoint").into_response()
    }
}

/// Gives every error response that is neither a page nor JSON of ours (wrong methods,
/// oversized bodies caught before a handler, panics) the error page.
async fn error_pages(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let typed = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"text/html") || v.as_bytes().starts_with(b"application/json")
        });
    if !(status.is_client_error() || status.is_server_error()) || typed {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => PageError::not_found(),
        StatusCode::METHOD_NOT_ALLOWED => PageError::new(
            status,
            "Method not allowed",
            "This page cannot be reached that way. Follow a link or send its form instead.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => PageError::new(
            status,
            "Form too large",
            format!("The form sent more than {MAX_FORM_BYTES} bytes; nothing was saved."),
        ),
        s if s.is_server_error() => PageError::new(
            status,
            "The tracker failed",
            "Something went wrong on our side; nothing you did. Try again in a moment.",
        ),
        s => PageError::new(
            s,
            "Bad request",
            s.canonical_reason()
                .unwrap_or("The request could not be understood."),
        ),
    };
    let mut page = error.into_response();
    *page.status_mut() = status;
    page
}

/// Headers every page carries: nothing runs or loads from elsewhere, no framing, no
/// sniffing, and pages are not cached (they show a session's data).
async fn page_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/assets/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
