//! `/metrics` in Prometheus text format: live nodes by kind, whether this tracker leads,
//! bytes the origin sent to caches and to viewers, and request counts and latencies per route.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::AppState;

/// Upper bounds of the latency histogram buckets, seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Debug, Default, Clone)]
struct RouteStats {
    count: u64,
    sum_secs: f64,
    /// Cumulative counts per bucket of `BUCKETS`.
    buckets: [u64; BUCKETS.len()],
}

/// Request counts and latencies by (method, route, status).
#[derive(Debug, Default)]
pub struct RequestMetrics {
    routes: Mutex<BTreeMap<(String, String, u16), RouteStats>>,
}

impl RequestMetrics {
    fn record(&self, method: &str, route: &str, status: u16, secs: f64) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let stats = routes
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        stats.count += 1;
        stats.sum_secs += secs;
        for (bound, n) in BUCKETS.iter().zip(stats.buckets.iter_mut()) {
            if secs <= *bound {
                *n += 1;
            }
        }
    }
}

/// The method as a label: the standard ones by name, any other as `other`, so made-up
/// methods cannot grow the label set.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(m, _)| m == method)
        .map_or("other", |(_, name)| name)
}

/// Middleware: times every request under its route pattern (not its raw path, so ids do not
/// explode the label set; unknown paths share `unmatched`) and its method label.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    state.metrics.record(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> Response {
    let mut out = String::new();
    let kinds: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, COUNT(*) FROM nodes GROUP BY kind")
            .fetch_all(&state.db.read)
            .await
            .unwrap_or_default();
    let _ = writeln!(
        out,
        "# HELP rivulet_nodes Live nodes by kind.\n# TYPE rivulet_nodes gauge"
    );
    for kind in ["cache", "viewer"] {
        let n = kinds.iter().find(|(k, _)| k == kind).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "rivulet_nodes{{kind=\"{kind}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP rivulet_tracker_leader 1 while this tracker leads (placement, node expiry).\n\
         # TYPE rivulet_tracker_leader gauge\n\
         rivulet_tracker_leader {}",
        u8::from(state.leadership.is_leader())
    );
    let c = &state.origin_counters;
    let _ = writeln!(
        out,
        "# HELP rivulet_origin_sent_bytes_total Chunk bytes the origin sent, by receiver kind.\n\
         # TYPE rivulet_origin_sent_bytes_total counter\n\
         rivulet_origin_sent_bytes_total{{to=\"cache\"}} {}\n\
         rivulet_origin_sent_bytes_total{{to=\"viewer\"}} {}",
        c.to_caches.load(Ordering::Relaxed),
        c.to_viewers.load(Ordering::Relaxed)
    );
    let routes = state
        .metrics
        .routes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let _ = writeln!(
        out,
        "# HELP rivulet_http_requests_total HTTP requests by route and status.\n\
         # TYPE rivulet_http_requests_total counter"
    );
    for ((method, route, status), s) in &routes {
        let _ = writeln!(
            out,
            "rivulet_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
            s.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP rivulet_http_request_seconds HTTP request latency by route.\n\
         # TYPE rivulet_http_request_seconds histogram"
    );
    for ((method, route, status), s) in &routes {
        let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
        for (bound, n) in BUCKETS.iter().zip(s.buckets) {
            let _ = writeln!(
                out,
                "rivulet_http_request_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "rivulet_http_request_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            s.count
        );
        let _ = writeln!(
            out,
            "rivulet_http_request_seconds_sum{{{labels}}} {}",
            s.sum_secs
        );
        let _ = writeln!(
            out,
            "rivulet_http_request_seconds_count{{{labels}}} {}",
            s.count
        );
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        let made_up = axum::http::Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&made_up), "other");
        assert_eq!(method_label(&axum::http::Method::GET), "GET");
    }
}
