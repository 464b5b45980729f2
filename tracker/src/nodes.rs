//! The node registry: caches and viewers register, report by heartbeat what they watch,
//! hold and moved, and leave; a node silent past the timeout is dropped with its holdings.
//! Transfers are kept per pair of nodes and movie in 10-second buckets.

use rand::RngCore;
use rivulet_tracker_client::{Heartbeat, Holding, NodeInfo, NodeKind, NodeRegistration, PeerBytes};
use sqlx::{AnyPool, Row};
use thiserror::Error;

use tokio::sync::{mpsc, oneshot};

use std::sync::Arc;

use crate::accounting::Judge;
use crate::catalogue::StoredVideo;
use crate::catalogue_cache::CatalogueCache;
use crate::credit::{Ledger, MAX_RECEIPTS, MAX_STORAGE_BYTES, MAX_UPLOAD_BPS};
use crate::placement::Network;
use crate::settings::Settings;
use rivulet_node_core::clock::unix_ms;
use rivulet_node_core::task::Tasks;

/// The origin's node id in transfers.
pub const ORIGIN: &str = "origin";
/// Seconds per transfer bucket.
pub const BUCKET_SECS: i64 = 10;
/// Most holdings and peer entries one heartbeat may carry.
const MAX_ENTRIES: usize = 1024;
/// Most bytes one peer entry of one heartbeat may claim: 10 Gbit/s for 15 minutes.
const MAX_ENTRY_BYTES: u64 = 1 << 40;
/// Where byte totals stop growing instead of overflowing.
pub(crate) const BYTES_CEILING: i64 = 1 << 62;

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("{0}")]
    Invalid(String),
    /// A public tracker does not accept the advertised address (see `ErrorCode::AddressRefused`).
    #[error("{0}")]
    AddressRefused(String),
    #[error("unknown node {0:?}: register again")]
    Unknown(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

fn kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Origin => "origin",
        NodeKind::Cache => "cache",
        NodeKind::Viewer => "viewer",
    }
}

fn parse_kind(s: &str) -> NodeKind {
    match s {
        "cache" => NodeKind::Cache,
        "origin" => NodeKind::Origin,
        _ => NodeKind::Viewer,
    }
}

/// `host:port` with a non-empty host (name, IPv4 or [IPv6]) and a non-zero port.
fn check_host_port(what: &str, s: &str) -> Result<(), NodeError> {
    let bad = || NodeError::Invalid(format!("{what} {s:?} is not host:port"));
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host_ok = !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if port == 0 || !host_ok {
        return Err(bad());
    }
    Ok(())
}

/// The most further addresses a node may list beside its advertised one.
pub const MAX_EXTRA_ADDRS: usize = 4;

/// Checks a node's further addresses and certificate fingerprint.
fn check_addrs_and_fingerprint(reg: &NodeRegistration) -> Result<(), NodeError> {
    if reg.addrs.len() > MAX_EXTRA_ADDRS {
        return Err(NodeError::Invalid(format!(
            "{} further addresses; at most {MAX_EXTRA_ADDRS}",
            reg.addrs.len()
        )));
    }
    for a in &reg.addrs {
        check_host_port("further address", a)?;
    }
    if let Some(fp) = &reg.fingerprint {
        let hex_ok = fp.len() == 64 && fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex_ok {
            return Err(NodeError::Invalid(format!(
                "certificate fingerprint {fp:?} is not 64 lowercase hex digits (SHA-256)"
            )));
        }
    }
    Ok(())
}

fn to_i64(what: &str, v: u64) -> Result<i64, NodeError> {
    // JSON numbers above 2^53 lose precision in most clients; refuse them plainly.
    if v > (1 << 53) {
        return Err(NodeError::Invalid(format!("{what} {v} is out of range")));
    }
    Ok(v as i64)
}

/// Registers a node for `account_id`; returns its new id.
pub async fn register(
    db: &AnyPool,
    account_id: i64,
    reg: &NodeRegistration,
) -> Result<String, NodeError> {
    match reg.kind {
        NodeKind::Origin => {
            return Err(NodeError::Invalid(
                "the origin is the tracker's own; register as cache or viewer".into(),
            ));
        }
        NodeKind::Cache => {
            check_host_port("bind address", &reg.bind)?;
            reg.bind.parse::<std::net::SocketAddr>().map_err(|_| {
                NodeError::Invalid(format!("bind address {:?} is not ip:port", reg.bind))
            })?;
            check_host_port("advertised address", &reg.advertise)?;
        }
        NodeKind::Viewer => {
            for (what, s) in [
                ("bind address", &reg.bind),
                ("advertised address", &reg.advertise),
            ] {
                if !s.is_empty() {
                    check_host_port(what, s)?;
                }
            }
        }
    }
    check_addrs_and_fingerprint(reg)?;
    // Declared limits are capped: nobody uploads above 10 Gbit/s from home.
    let upload = to_i64("upload_bps", reg.upload_bps)?.min(MAX_UPLOAD_BPS as i64);
    let storage = to_i64("storage_bytes", reg.storage_bytes)?.min(MAX_STORAGE_BYTES as i64);
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    let id = format!("{}-{}", kind_name(reg.kind), hex::encode(id));
    let now = unix_ms();
    let mut tx = crate::db::begin_write(db).await?;
    sqlx::query("INSERT INTO node_owners (node_id, account_id, kind) VALUES ($1, $2, $3)")
        .bind(&id)
        .bind(account_id)
        .bind(kind_name(reg.kind))
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO nodes (id, account_id, kind, bind_addr, advertise_addr, upload_bps, storage_bytes,
                            registered_ms, last_seen_ms, addrs, fingerprint)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10)",
    )
    .bind(&id)
    .bind(account_id)
    .bind(kind_name(reg.kind))
    .bind(&reg.bind)
    .bind(&reg.advertise)
    .bind(upload)
    .bind(storage)
    .bind(now)
    .bind(serde_json::to_string(&reg.addrs).unwrap_or_else(|_| "[]".into()))
    .bind(&reg.fingerprint)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Checks a heartbeat against the catalogue before anything is written. Holdings and byte
/// entries of movies the catalogue no longer has are taken out (the movie was removed: the
/// node learns it from the reply and goes on); the holdings taken out are returned.
fn check_heartbeat(
    videos: &[Arc<StoredVideo>],
    hb: &mut Heartbeat,
) -> Result<Vec<Holding>, NodeError> {
    if hb.holdings.len() > MAX_ENTRIES
        || hb.sent.len() > MAX_ENTRIES
        || hb.received.len() > MAX_ENTRIES
    {
        return Err(NodeError::Invalid(format!(
            "at most {MAX_ENTRIES} entries per list"
        )));
    }
    let n_of = |id: &str| {
        videos
            .iter()
            .find(|v| v.record.id == id)
            .map(|v| v.manifest.n)
    };
    if let Some(w) = &hb.watching {
        n_of(w).ok_or_else(|| NodeError::Invalid(format!("watching unknown video {w:?}")))?;
    }
    let (holdings, refused): (Vec<Holding>, Vec<Holding>) = std::mem::take(&mut hb.holdings)
        .into_iter()
        .partition(|h| n_of(&h.video).is_some());
    hb.holdings = holdings;
    for Holding { video, indices } in &hb.holdings {
        let n = n_of(video).unwrap_or(0);
        let mut seen = vec![false; usize::from(n)];
        for &i in indices {
            let slot = seen.get_mut(usize::from(i)).ok_or_else(|| {
                NodeError::Invalid(format!("chunk index {i} of {video:?} is not below n={n}"))
            })?;
            if std::mem::replace(slot, true) {
                return Err(NodeError::Invalid(format!(
                    "chunk index {i} of {video:?} is listed twice"
                )));
            }
        }
    }
    for list in [&mut hb.sent, &mut hb.received] {
        list.retain(|p| n_of(&p.video).is_some());
    }
    for list in [&hb.sent, &hb.received] {
        let mut keys = std::collections::HashSet::new();
        for PeerBytes {
            peer,
            video,
            bytes,
            chunks,
        } in list
        {
            if peer.is_empty() || peer.len() > 64 {
                return Err(NodeError::Invalid(format!("peer id {peer:?} is malformed")));
            }
            if *bytes > MAX_ENTRY_BYTES {
                return Err(NodeError::Invalid(format!(
                    "{bytes} bytes in one heartbeat is out of range"
                )));
            }
            if chunks.len() > MAX_RECEIPTS {
                return Err(NodeError::Invalid(format!(
                    "at most {MAX_RECEIPTS} receipts per peer entry"
                )));
            }
            if !keys.insert((peer, video)) {
                return Err(NodeError::Invalid(format!(
                    "peer {peer:?} and video {video:?} are listed twice"
                )));
            }
        }
    }
    if let Some(v) = hb.upload_bps {
        to_i64("upload_bps", v)?;
    }
    if let Some(v) = hb.storage_bytes {
        to_i64("storage_bytes", v)?;
    }
    Ok(refused)
}

/// A checked heartbeat waiting to be written, and where to say how it went.
#[derive(Debug)]
pub(crate) struct HeartbeatJob {
    /// The catalogue when the heartbeat was checked (manifests size the receipts).
    pub(crate) videos: Arc<Vec<Arc<StoredVideo>>>,
    pub(crate) account_id: i64,
    pub(crate) node_id: String,
    pub(crate) heartbeat: Heartbeat,
    /// Answered with the movie the node watches as the tracker counts it (owned only).
    pub(crate) done: oneshot::Sender<Result<Option<String>, NodeError>>,
}

/// Writes heartbeats in batches: each batch is one transaction (a node's update, then one
/// multi-row upsert of every transfer in the batch), so many heartbeats share one commit.
/// A heartbeat's caller waits until its batch has committed.
#[derive(Clone, Debug)]
pub struct HeartbeatWriter {
    jobs: mpsc::Sender<HeartbeatJob>,
}

/// Bytes per point when none is configured: one point per 100 MB credited.
pub const DEFAULT_BYTES_PER_POINT: u64 = 100_000_000;

/// Most heartbeats written in one transaction.
const MAX_BATCH: usize = 256;

impl HeartbeatWriter {
    /// Starts the writer task in `tasks` over `db` (the write pool); a cache's account earns
    /// a point per `settings.bytes_per_point()` credited bytes, read per batch. `network` is
    /// what the tracker handed out (peer sets, placement), against which transfers are
    /// checked. The task ends when every handle to the writer is gone (the HTTP server has
    /// stopped), after writing what was queued.
    pub fn start(
        tasks: &Tasks,
        db: AnyPool,
        settings: Arc<Settings>,
        network: Arc<Network>,
    ) -> HeartbeatWriter {
        let (jobs, mut rx) = mpsc::channel::<HeartbeatJob>(4 * MAX_BATCH);
        tasks.spawn("heartbeat-writer", async move {
            let mut ledger = Ledger::default();
            let mut swept = std::time::Instant::now();
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let bytes_per_point = settings.bytes_per_point().clamp(1, i64::MAX as u64) as i64;
                let judge = Judge {
                    ledger: &mut ledger,
                    network: &network,
                };
                crate::accounting::write_batch(&db, batch, bytes_per_point, judge).await;
                if swept.elapsed() > std::time::Duration::from_secs(60) {
                    ledger.sweep(std::time::Instant::now());
                    swept = std::time::Instant::now();
                }
            }
            Ok::<(), std::convert::Infallible>(())
        });
        HeartbeatWriter { jobs }
    }

    /// Checks and records a heartbeat of node `id` (which must belong to `account_id`);
    /// returns the holdings it refused (see [`check_heartbeat`]) and the movie it watches
    /// if its account owns it.
    pub async fn record(
        &self,
        catalogue: &CatalogueCache,
        account_id: i64,
        id: &str,
        mut heartbeat: Heartbeat,
    ) -> Result<(Vec<Holding>, Option<String>), NodeError> {
        let videos = catalogue.all().await;
        let refused = check_heartbeat(&videos, &mut heartbeat)?;
        let (done, result) = oneshot::channel();
        let job = HeartbeatJob {
            videos,
            account_id,
            node_id: id.to_owned(),
            heartbeat,
            done,
        };
        let closed = || NodeError::Db(sqlx::Error::PoolClosed);
        self.jobs.send(job).await.map_err(|_| closed())?;
        let watching = result.await.map_err(|_| closed())??;
        Ok((refused, watching))
    }
}

/// Removes node `id` of `account_id`.
pub async fn leave(db: &AnyPool, account_id: i64, id: &str) -> Result<(), NodeError> {
    let gone = sqlx::query("DELETE FROM nodes WHERE id = $1 AND account_id = $2")
        .bind(id)
        .bind(account_id)
        .execute(db)
        .await?
        .rows_affected();
    if gone == 0 {
        return Err(NodeError::Unknown(id.to_owned()));
    }
    Ok(())
}

/// Drops nodes silent for longer than `timeout_ms`; returns how many.
pub async fn expire(db: &AnyPool, timeout_ms: i64) -> Result<u64, NodeError> {
    Ok(sqlx::query("DELETE FROM nodes WHERE last_seen_ms < $1")
        .bind(unix_ms() - timeout_ms)
        .execute(db)
        .await?
        .rows_affected())
}

/// Drops every node: after a tracker restart nothing is known to be alive; nodes find out
/// from their next heartbeat and register again.
pub async fn forget_all(db: &AnyPool) -> Result<(), NodeError> {
    sqlx::query("DELETE FROM nodes").execute(db).await?;
    Ok(())
}

/// Live nodes, of one account or of all.
pub async fn list(db: &AnyPool, account_id: Option<i64>) -> Result<Vec<NodeInfo>, NodeError> {
    let rows = sqlx::query(
        "SELECT n.*, a.username FROM nodes n JOIN accounts a ON a.id = n.account_id
         WHERE $1 IS NULL OR n.account_id = $1 ORDER BY n.registered_ms",
    )
    .bind(account_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .iter()
        .map(|r| NodeInfo {
            node_id: r.get("id"),
            account: r.get("username"),
            kind: parse_kind(r.get("kind")),
            bind: r.get("bind_addr"),
            advertise: r.get("advertise_addr"),
            upload_bps: u64::try_from(r.get::<i64, _>("upload_bps")).unwrap_or(0),
            storage_bytes: u64::try_from(r.get::<i64, _>("storage_bytes")).unwrap_or(0),
            watching: r.get("watching"),
            holdings: serde_json::from_str(r.get("holdings")).unwrap_or_default(),
            last_seen: u64::try_from(r.get::<i64, _>("last_seen_ms") / 1000).unwrap_or(0),
            addrs: serde_json::from_str(r.get("addrs")).unwrap_or_default(),
            fingerprint: r.get("fingerprint"),
            reach: None,
        })
        .collect())
}
