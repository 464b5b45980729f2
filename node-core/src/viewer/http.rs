//! The rebuilt stream over loopback HTTP with Range support, so any player (mpv, a browser)
//! can open it: `GET http://127.0.0.1:PORT/<token>` where the token is random per stream,
//! so other local users cannot read the movie. Reads of bytes not yet rebuilt wait; a Range
//! request is a seek and moves the fetch window.

use std::io::SeekFrom;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

use super::stream::{StreamReader, StreamShared};

/// A running stream endpoint.
#[derive(Debug)]
pub struct StreamServer {
    url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Debug)]
struct Served {
    shared: Arc<StreamShared>,
    token: blake3::Hash,
}

impl StreamServer {
    /// Serves `shared` on 127.0.0.1 at a random port and token.
    pub async fn start(shared: Arc<StreamShared>) -> std::io::Result<StreamServer> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let mut token = [0u8; 24];
        rand::fill(&mut token);
        let token = hex::encode(token);
        let served = Served {
            shared,
            token: blake3::hash(token.as_bytes()),
        };
        let app = Router::new()
            .route("/{token}", get(serve))
            .with_state(served);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = crate::task::spawn("stream-http", async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await
        });
        Ok(StreamServer {
            url: format!("http://{addr}/{token}"),
            stop,
            task,
        })
    }

    /// The stream's URL, token included.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops serving (a player still reading is cut off) and waits until it has.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A `Range: bytes=…` header of one range, resolved against `size`: `Ok(None)` when there
/// is none (or it is not one we read: then the whole body is sent, as RFC 9110 allows),
/// `Err(())` when it cannot be satisfied.
fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(a), Ok(b)) if a <= b => (a, b.min(size.saturating_sub(1))),
        (Ok(a), Err(_)) if last.is_empty() => (a, size.saturating_sub(1)),
        (Err(_), Ok(n)) if first.is_empty() && n > 0 => {
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        _ => return Ok(None),
    };
    if range.0 >= size {
        return Err(());
    }
    Ok(Some(range))
}

async fn serve(
    State(served): State<Served>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    // blake3::Hash compares in constant time.
    if blake3::hash(token.as_bytes()) != served.token {
        return (StatusCode::NOT_FOUND, "no such stream").into_response();
    }
    let size = served.shared.manifest().file_size;
    let (status, first, last) = match parse_range(&headers, size) {
        Ok(Some((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
        Ok(None) => (StatusCode::OK, 0, size.saturating_sub(1)),
        Err(()) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let len = if size == 0 { 0 } else { last - first + 1 };
    let mut reader = StreamReader::new(served.shared.clone());
    if let Err(e) = reader.seek(SeekFrom::Start(first)).await {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    let body = Body::from_stream(ReaderStream::with_capacity(reader.take(len), 256 * 1024));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("video/x-matroska"),
    );
    if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{size}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        parse_range(&h, size)
    }

    #[test]
    fn ranges_resolve_against_the_size() {
        assert_eq!(range("bytes=0-99", 1000), Ok(Some((0, 99))));
        assert_eq!(range("bytes=900-", 1000), Ok(Some((900, 999))));
        assert_eq!(range("bytes=-100", 1000), Ok(Some((900, 999))));
        assert_eq!(range("bytes=990-5000", 1000), Ok(Some((990, 999))));
        assert_eq!(range("bytes=1000-", 1000), Err(()));
        // Not one range we read: the whole body.
        assert_eq!(range("bytes=5-1", 1000), Ok(None));
        assert_eq!(range("bytes=0-1,5-9", 1000), Ok(None));
        assert_eq!(range("items=0-1", 1000), Ok(None));
        assert_eq!(range("bytes=x-y", 1000), Ok(None));
        assert_eq!(range("bytes=-0", 1000), Ok(None));
    }
}
