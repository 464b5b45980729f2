//! The administrators' pages: the load overview (live chart), nodes, videos and accounts
//! tables, and the two flow views of the report — for a viewer, which caches send it chunks
//! and how much; for a cache, which viewers it sends to. Everyone else gets the 403 page.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use maud::{Markup, html};
use rivulet_tracker_client::{ErrorCode, Flow, NodeInfo, NodeKind, ReachFailure, ReachState};
use serde::{Deserialize, Serialize};

use super::chart;
use super::layout::{self, Nav, PageError, bytes_data, page};
use super::pages::{capacity, holdings, kind};
use super::session::{AdminSignedIn, Session, Visitor};
use crate::api::{ApiError, AppState};
use crate::{admin, nodes};

/// Which admin tab a page is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tab {
    Overview,
    Nodes,
    Videos,
    Accounts,
    Flows,
}

fn admin_page(title: &str, session: &Session, tab: Tab, body: Markup) -> Markup {
    let on = |t: Tab| (tab == t).then_some("active");
    page(
        title,
        Some(session),
        Nav::Admin,
        html! {
            nav.tabs {
                a class=[on(Tab::Overview)] href="/admin" { "Load" }
                a class=[on(Tab::Nodes)] href="/admin/nodes" { "Nodes" }
                a class=[on(Tab::Videos)] href="/admin/videos" { "Videos" }
                a class=[on(Tab::Accounts)] href="/admin/accounts" { "Accounts" }
                @if tab == Tab::Flows { a.active href="#" { "Flows" } }
            }
            (body)
        },
    )
}

/// How far back the load overview reaches.
#[derive(Debug, Deserialize)]
pub struct LoadQuery {
    /// Minutes of history, 1 to 1440 (default 30).
    minutes: Option<String>,
}

fn minutes(query: Result<Query<LoadQuery>, QueryRejection>) -> Result<u32, String> {
    let Query(q) = query.map_err(|e| e.body_text())?;
    match q.minutes.as_deref() {
        None | Some("") => Ok(30),
        Some(m) => m
            .parse::<u32>()
            .ok()
            .filter(|m| (1..=1440).contains(m))
            .ok_or_else(|| format!("minutes must be a whole number from 1 to 1440, not {m:?}")),
    }
}

fn internal(e: impl std::fmt::Display) -> PageError {
    PageError::internal(e)
}

/// `GET /admin`: the load overview with its live chart and a summary of the network.
pub async fn overview(
    State(state): State<AppState>,
    AdminSignedIn(session): AdminSignedIn,
    query: Result<Query<LoadQuery>, QueryRejection>,
) -> Result<Markup, PageError> {
    let minutes = minutes(query).map_err(PageError::bad_request)?;
    let points = state
        .tracker()
        .admin_load(&session.caller, Some(minutes))
        .await
        .map_err(internal)?;
    let live = state
        .tracker()
        .admin_nodes(&session.caller)
        .await
        .map_err(internal)?;
    let caches = live.iter().filter(|n| n.kind == NodeKind::Cache).count();
    let viewers = live.len() - caches;
    let videos = state.catalogue.all().await.len();
    let accounts = state
        .tracker()
        .admin_accounts(&session.caller)
        .await
        .map_err(internal)?
        .len();
    let now = rivulet_node_core::clock::unix_secs() as i64;
    Ok(admin_page(
        "Load overview",
        &session,
        Tab::Overview,
        html! {
            h1 { "Load overview" }
            section.stats {
                div.stat { p.label { "Caches online" } p.value #caches-online { (caches) } }
                div.stat { p.label { "Viewers online" } p.value #viewers-online { (viewers) } }
                div.stat { p.label { "Movies" } p.value { (videos) } }
                div.stat { p.label { "Accounts" } p.value { (accounts) } }
            }
            section.chart-box #live data-live={ "/admin/load.json?minutes=" (minutes) }
                data-every="3000" data-refreshed="0" {
                div.chart-head {
                    h2 { "Traffic, last " (minutes) " minutes" }
                    form.inline method="get" action="/admin" {
                        label for="minutes" { "Minutes" }
                        input #minutes type="number" name="minutes" min="1" max="1440" value=(minutes);
                        button type="submit" { "Show" }
                    }
                }
                div #load-chart { (chart::load_chart(&points, minutes, now)) }
                ul.legend {
                    @for s in &chart::SERIES {
                        li { span class={ "swatch s-" (s.key) } {} (s.label) }
                    }
                }
                div #load-summary { (chart::load_totals(&points, minutes)) }
                p.hint { "Rates per 10-second bucket; receivers' confirmations count, a sender's "
                         "report stands in until they arrive. Refreshes every few seconds." }
            }
        },
    ))
}

/// The live chart's JSON: element id → markup to put in it.
#[derive(Debug, Serialize)]
pub struct LivePatch {
    html: BTreeMap<&'static str, String>,
    at: i64,
}

/// `GET /admin/load.json`: the chart and totals, for the page's live refresh. Errors are
/// the API's JSON error body.
pub async fn load_json(
    State(state): State<AppState>,
    visitor: Visitor,
    query: Result<Query<LoadQuery>, QueryRejection>,
) -> Result<Json<LivePatch>, ApiError> {
    let session = visitor.session.ok_or_else(ApiError::unauthorized)?;
    if !session.caller.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "administrators only",
        ));
    }
    let minutes = minutes(query).map_err(ApiError::bad_request)?;
    let points = state
        .tracker()
        .admin_load(&session.caller, Some(minutes))
        .await
        .map_err(ApiError::internal)?;
    let now = rivulet_node_core::clock::unix_secs() as i64;
    let mut html = BTreeMap::new();
    html.insert(
        "load-chart",
        chart::load_chart(&points, minutes, now).into_string(),
    );
    html.insert(
        "load-summary",
        chart::load_totals(&points, minutes).into_string(),
    );
    Ok(Json(LivePatch { html, at: now }))
}

fn address(n: &NodeInfo) -> Markup {
    html! {
        @if n.advertise.is_empty() && n.bind.is_empty() { "—" }
        @else {
            code { (n.advertise) }
            @if n.bind != n.advertise && !n.bind.is_empty() {
                br; small { "binds " (n.bind) }
            }
        }
    }
}

/// Whether the tracker's probe could reach a cache: yes, no and why, or checking.
fn reachable(n: &NodeInfo) -> Markup {
    let why = |r: ReachFailure| match r {
        ReachFailure::Refused => "refused",
        ReachFailure::TimedOut => "timed out",
        ReachFailure::NoRoute => "no route",
        ReachFailure::WrongGreeting => "not a cache",
        ReachFailure::LoginRefused => "refused the ticket",
        ReachFailure::Tls => "TLS",
    };
    html! {
        @if let Some(r) = &n.reach {
            @match r.state {
                ReachState::Reachable => { span.reach-yes title=(r.addr) { "yes" } }
                ReachState::Unreachable => {
                    span.reach-no title=(r.detail) { "no: " (r.reason.map_or("unknown", why)) }
                }
                ReachState::Unchecked => { span.reach-checking { "checking" } }
            }
        } @else {
            "—"
        }
    }
}

/// `GET /admin/nodes`: every live node.
pub async fn nodes_page(
    State(state): State<AppState>,
    AdminSignedIn(session): AdminSignedIn,
) -> Result<Markup, PageError> {
    let live = state
        .tracker()
        .admin_nodes(&session.caller)
        .await
        .map_err(internal)?;
    let now = layout::now_secs();
    Ok(admin_page(
        "Nodes",
        &session,
        Tab::Nodes,
        html! {
            h1 { "Nodes" }
            p { (live.len()) " live. Follow a node to see whom it exchanges chunks with." }
            @if live.is_empty() { p.empty { "No node is online." } }
            @else {
                table #nodes {
                    thead { tr { th { "Node" } th { "Account" } th { "Kind" } th { "Address" }
                                 th { "Reachable" } th { "Capacity" } th { "Holds" } th { "Watching" } th { "Last seen" } } }
                    tbody {
                        @for n in &live {
                            tr data-node=(n.node_id) {
                                td { a.flows href={ "/admin/flows/" (n.node_id) } { (n.node_id) } }
                                td { (n.account) }
                                td { span class={ "kind k-" (kind(n.kind)) } { (kind(n.kind)) } }
                                td { (address(n)) }
                                td { (reachable(n)) }
                                td { (capacity(n)) }
                                td { (holdings(n)) }
                                td { (n.watching.as_deref().unwrap_or("—")) }
                                td { (layout::ago(n.last_seen, now)) }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// `GET /admin/videos`: the catalogue with its audience.
pub async fn videos_page(
    State(state): State<AppState>,
    AdminSignedIn(session): AdminSignedIn,
) -> Result<Markup, PageError> {
    let live = state
        .tracker()
        .admin_nodes(&session.caller)
        .await
        .map_err(internal)?;
    let purchases = admin::purchases_by_video(&state.db.read)
        .await
        .map_err(internal)?;
    let videos = state.catalogue.all().await;
    let most = purchases.values().copied().max().unwrap_or(0).max(1);
    Ok(admin_page(
        "Videos",
        &session,
        Tab::Videos,
        html! {
            h1 { "Videos" }
            @if videos.is_empty() { p.empty { "The catalogue is empty. Add movies with "
                                              code { "rivulet-tracker ingest" } "." } }
            @else {
                table #videos {
                    thead { tr { th { "Title" } th { "Id" } th { "Length" } th { "Size" }
                                 th { "Segments" } th { "k / n" } th { "Price" }
                                 th { "Viewers now" } th { "Caches holding" } th { "Popularity" } } }
                    tbody {
                        @for v in videos.iter() {
                            @let e = v.entry();
                            @let viewers = live.iter().filter(|n| n.kind == NodeKind::Viewer
                                && n.watching.as_deref() == Some(e.id.as_str())).count();
                            @let caches = live.iter().filter(|n| n.kind == NodeKind::Cache
                                && n.holdings.iter().any(|h| h.video == e.id && !h.indices.is_empty())).count();
                            @let bought = purchases.get(&e.id).copied().unwrap_or(0);
                            tr data-video=(e.id) {
                                td.title { (e.title) }
                                td { code { (e.id) } }
                                td { (layout::duration(e.duration_ms)) }
                                td { (bytes_data(e.bytes)) }
                                td { (e.segments) }
                                td { (e.k) " / " (e.n) }
                                td { (e.price) " points" }
                                td.viewers { (viewers) }
                                td.caches { (caches) }
                                td.popularity {
                                    (bar(bought as f64 / most as f64))
                                    " " (bought) @if bought == 1 { " purchase" } @else { " purchases" }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// A small horizontal bar, `share` of full width.
fn bar(share: f64) -> Markup {
    let w = (share.clamp(0.0, 1.0) * 100.0).round();
    html! {
        svg.bar xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 10" width="100" height="10"
            aria-hidden="true" {
            rect.bar-bg x="0" y="0" width="100" height="10" {}
            rect.bar-fg x="0" y="0" width=(w) height="10" {}
        }
    }
}

/// `GET /admin/accounts`: every account with its totals.
pub async fn accounts_page(
    State(state): State<AppState>,
    AdminSignedIn(session): AdminSignedIn,
) -> Result<Markup, PageError> {
    let accounts = state
        .tracker()
        .admin_accounts(&session.caller)
        .await
        .map_err(internal)?;
    Ok(admin_page(
        "Accounts",
        &session,
        Tab::Accounts,
        html! {
            h1 { "Accounts" }
            table #accounts {
                thead { tr { th { "Username" } th { "Role" } th { "Points" } th { "Uploaded" }
                             th { "Credited" } th title="The account whose viewers confirmed most of this account's credit" { "Mostly from" }
                             th { "Purchases" } th { "Live nodes" } th { "Joined" } } }
                tbody {
                    @for a in &accounts {
                        tr data-account=(a.username) {
                            td { (a.username) }
                            td { @if a.admin { "admin" } @else { "user" } }
                            td.points { (a.balance) }
                            td.uploaded { (bytes_data(a.uploaded_bytes)) }
                            td.credited { (bytes_data(a.credited_bytes)) }
                            @match &a.top_counterpart {
                                Some(c) => td.counterpart.flag[c.percent >= 80] data-percent=(c.percent) {
                                    (c.username) " · " (c.percent) "%"
                                },
                                None => td.counterpart { "—" },
                            }
                            td { (a.purchases) }
                            td { (a.nodes) }
                            td { (layout::date(a.created_at)) }
                        }
                    }
                }
            }
        },
    ))
}

/// Flows summed over movies, per peer, largest first.
fn by_peer(flows: &[Flow]) -> Vec<(String, String, u64)> {
    let mut peers: Vec<(String, String, u64)> = Vec::new();
    for f in flows {
        match peers.iter_mut().find(|(p, _, _)| *p == f.peer) {
            Some(entry) => entry.2 = entry.2.saturating_add(f.bytes),
            None => peers.push((f.peer.clone(), f.peer_kind.clone(), f.bytes)),
        }
    }
    peers.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    peers
}

/// Most peers drawn around a node (the table lists them all).
const DRAWN_PEERS: usize = 12;

/// The node in the middle, its peers around it, a line to each as thick as the bytes, with
/// arrows the way the bytes went.
fn flow_diagram(
    node: &str,
    node_kind: &str,
    peers: &[(String, String, u64)],
    incoming: bool,
) -> Markup {
    let (w, h, r) = (640.0_f64, 360.0_f64, 130.0_f64);
    let (cx, cy) = (w / 2.0, h / 2.0);
    let most = peers.iter().map(|p| p.2).max().unwrap_or(1).max(1);
    let shown = &peers[..peers.len().min(DRAWN_PEERS)];
    let place = |i: usize| {
        let angle = -std::f64::consts::FRAC_PI_2
            + std::f64::consts::TAU * i as f64 / shown.len().max(1) as f64;
        (cx + r * angle.cos(), cy + r * angle.sin())
    };
    html! {
        svg.flows #flow-svg xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (w) " " (h) }
            role="img" aria-label={ "Flows of " (node) } {
            defs {
                marker #arrow viewBox="0 0 10 10" refX="8" refY="5" markerUnits="userSpaceOnUse"
                    markerWidth="16" markerHeight="16" orient="auto" { path.arrow d="M0,0 L10,5 L0,10 z" {} }
            }
            @for (i, (peer, peer_kind, bytes)) in shown.iter().enumerate() {
                @let (px, py) = place(i);
                @let width = 1.5 + 6.5 * *bytes as f64 / most as f64;
                // Lines stop short of the circles so the arrows show.
                @let (dx, dy) = ((px - cx) / r, (py - cy) / r);
                @let (x1, y1, x2, y2) = if incoming {
                    (px - dx * 24.0, py - dy * 24.0, cx + dx * 34.0, cy + dy * 34.0)
                } else {
                    (cx + dx * 34.0, cy + dy * 34.0, px - dx * 24.0, py - dy * 24.0)
                };
                line class={ "edge k-" (peer_kind) } x1=(format!("{x1:.1}")) y1=(format!("{y1:.1}"))
                    x2=(format!("{x2:.1}")) y2=(format!("{y2:.1}"))
                    stroke-width=(format!("{width:.1}")) marker-end="url(#arrow)" {}
                circle class={ "peer k-" (peer_kind) } cx=(format!("{px:.1}")) cy=(format!("{py:.1}")) r="20" {}
                text.peer-label x=(format!("{px:.1}")) y=(format!("{:.1}", if py < cy { py - 26.0 } else { py + 36.0 }))
                    text-anchor="middle" { (short(peer)) " · " (layout::bytes(*bytes)) }
            }
            circle class={ "centre k-" (node_kind) } cx=(cx) cy=(cy) r="30" {}
            text.centre-label x=(cx) y=(cy + 4.0) text-anchor="middle" { (node_kind) }
        }
    }
}

/// A node id short enough for a label.
fn short(id: &str) -> String {
    let mut s: String = id.chars().take(14).collect();
    if id.chars().count() > 14 {
        s.push('…');
    }
    s
}

fn flow_table(
    id: &str,
    peers: &[(String, String, u64)],
    flows: &[Flow],
    peer_word: &str,
) -> Markup {
    let total: u64 = peers.iter().map(|p| p.2).fold(0, u64::saturating_add);
    html! {
        table.flow-table id=(id) {
            thead { tr { th { (peer_word) } th { "Kind" } th { "Movies" } th { "Bytes" } th { "Share" } } }
            tbody {
                @for (peer, peer_kind, bytes) in peers {
                    tr data-peer=(peer) data-bytes=(bytes) {
                        td {
                            @if peer_kind == "cache" || peer_kind == "viewer" {
                                a href={ "/admin/flows/" (peer) } { (peer) }
                            } @else { (peer) }
                        }
                        td { span class={ "kind k-" (peer_kind) } { (peer_kind) } }
                        td {
                            @for f in flows.iter().filter(|f| &f.peer == peer) {
                                span.chip { (f.video) ": " (layout::bytes(f.bytes)) } " "
                            }
                        }
                        td.bytes { (bytes_data(*bytes)) }
                        td { (bar(*bytes as f64 / total.max(1) as f64)) " "
                             (format!("{:.0}", 100.0 * *bytes as f64 / total.max(1) as f64)) "%" }
                    }
                }
            }
        }
    }
}

fn is_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// `GET /admin/flows/{node}`: for a viewer, where its chunks came from; for a cache, whom it
/// sent them to (and what it fetched itself).
pub async fn flows_page(
    State(state): State<AppState>,
    AdminSignedIn(session): AdminSignedIn,
    node: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Markup, PageError> {
    let not_found = |session: &Session| PageError {
        session: Some(Box::new(session.clone())),
        ..PageError::new(
            StatusCode::NOT_FOUND,
            "No such node",
            "No node with this id is online or ever moved a byte.",
        )
    };
    let Ok(Path(node)) = node else {
        return Err(not_found(&session));
    };
    if !is_node_id(&node) {
        return Err(not_found(&session));
    }
    let live = state
        .tracker()
        .admin_nodes(&session.caller)
        .await
        .map_err(internal)?;
    let flows = admin::flows(&state.db.read, &node)
        .await
        .map_err(internal)?;
    let info = live.iter().find(|n| n.node_id == node);
    if info.is_none() && flows.received.is_empty() && flows.sent.is_empty() {
        return Err(not_found(&session));
    }
    let node_kind = match info.map(|n| n.kind) {
        Some(k) => kind(k),
        None if node == nodes::ORIGIN => "origin",
        None => node.split('-').next().unwrap_or("node"),
    };
    let received = by_peer(&flows.received);
    let sent = by_peer(&flows.sent);
    let is_cache = node_kind == "cache" || node_kind == "origin";
    Ok(admin_page(
        &format!("Flows of {node}"),
        &session,
        Tab::Flows,
        html! {
            h1 { "Flows of " span class={ "kind k-" (node_kind) } { (node_kind) } " " code #node-id { (node) } }
            p {
                @if let Some(n) = info {
                    "Online, owned by " strong { (n.account) } ". "
                    @if let Some(w) = &n.watching { "Watching " code { (w) } ". " }
                } @else { "Not online now; its history is kept. " }
                "Bytes over all time; a receiver's confirmation counts, a sender's report stands in "
                "until it arrives."
            }
            @if is_cache {
                section.flow-view #sends-to {
                    h2 { "Which viewers it sends to" }
                    @if sent.is_empty() { p.empty { "It has not sent anything yet." } }
                    @else {
                        (flow_diagram(&node, node_kind, &sent, false))
                        (flow_table("sent-table", &sent, &flows.sent, "Viewer"))
                    }
                }
                section.flow-view #gets-from {
                    h2 { "What it fetched" }
                    @if received.is_empty() { p.empty { "Nothing yet." } }
                    @else { (flow_table("received-table", &received, &flows.received, "Source")) }
                }
            } @else {
                section.flow-view #gets-from {
                    h2 { "Which caches send it chunks" }
                    @if received.is_empty() { p.empty { "It has not received anything yet." } }
                    @else {
                        (flow_diagram(&node, node_kind, &received, true))
                        (flow_table("received-table", &received, &flows.received, "Source"))
                    }
                }
                @if !sent.is_empty() {
                    section.flow-view #sends-to {
                        h2 { "What it sent" }
                        (flow_table("sent-table", &sent, &flows.sent, "Receiver"))
                    }
                }
            }
        },
    ))
}
