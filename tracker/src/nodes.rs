//! The node registry: caches and viewers register, report by heartbeat what they watch,
//! hold and moved, and leave; a node silent past the timeout is dropped with its holdings.
//! Transfers are kept per pair of nodes and movie in 10-second buckets.

use rand::RngCore;
use rivulet_tracker_client::{Heartbeat, Holding, NodeInfo, NodeKind, NodeRegistration, PeerBytes};
use sqlx::{Row, SqlitePool};
use thiserror::Error;

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};

use crate::catalogue_cache::CatalogueCache;
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
const BYTES_CEILING: i64 = 1 << 62;

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("{0}")]
    Invalid(String),
    #[error("unknown node {0:?}: register again")]
    Unknown(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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

fn to_i64(what: &str, v: u64) -> Result<i64, NodeError> {
    // JSON numbers above 2^53 lose precision in most clients; refuse them plainly.
    if v > (1 << 53) {
        return Err(NodeError::Invalid(format!("{what} {v} is out of range")));
    }
    Ok(v as i64)
}

/// Registers a node for `account_id`; returns its new id.
pub async fn register(
    db: &SqlitePool,
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
    let upload = to_i64("upload_bps", reg.upload_bps)?;
    let storage = to_i64("storage_bytes", reg.storage_bytes)?;
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    let id = format!("{}-{}", kind_name(reg.kind), hex::encode(id));
    let now = now_ms();
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query("INSERT INTO node_owners (node_id, account_id, kind) VALUES ($1, $2, $3)")
        .bind(&id)
        .bind(account_id)
        .bind(kind_name(reg.kind))
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO nodes (id, account_id, kind, bind_addr, advertise_addr, upload_bps, storage_bytes,
                            registered_ms, last_seen_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(&id)
    .bind(account_id)
    .bind(kind_name(reg.kind))
    .bind(&reg.bind)
    .bind(&reg.advertise)
    .bind(upload)
    .bind(storage)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Checks a heartbeat against the catalogue before anything is written.
async fn check_heartbeat(catalogue: &CatalogueCache, hb: &Heartbeat) -> Result<(), NodeError> {
    if hb.holdings.len() > MAX_ENTRIES
        || hb.sent.len() > MAX_ENTRIES
        || hb.received.len() > MAX_ENTRIES
    {
        return Err(NodeError::Invalid(format!(
            "at most {MAX_ENTRIES} entries per list"
        )));
    }
    let videos = catalogue.all().await;
    let n_of = |id: &str| {
        videos
            .iter()
            .find(|v| v.record.id == id)
            .map(|v| v.manifest.n)
    };
    if let Some(w) = &hb.watching {
        n_of(w).ok_or_else(|| NodeError::Invalid(format!("watching unknown video {w:?}")))?;
    }
    for Holding { video, indices } in &hb.holdings {
        let n = n_of(video)
            .ok_or_else(|| NodeError::Invalid(format!("holding unknown video {video:?}")))?;
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
    for list in [&hb.sent, &hb.received] {
        let mut keys = std::collections::HashSet::new();
        for PeerBytes { peer, video, bytes } in list {
            if peer.is_empty() || peer.len() > 64 {
                return Err(NodeError::Invalid(format!("peer id {peer:?} is malformed")));
            }
            n_of(video)
                .ok_or_else(|| NodeError::Invalid(format!("bytes for unknown video {video:?}")))?;
            if *bytes > MAX_ENTRY_BYTES {
                return Err(NodeError::Invalid(format!(
                    "{bytes} bytes in one heartbeat is out of range"
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
    Ok(())
}

/// A checked heartbeat waiting to be written, and where to say how it went.
#[derive(Debug)]
struct HeartbeatJob {
    account_id: i64,
    node_id: String,
    heartbeat: Heartbeat,
    done: oneshot::Sender<Result<(), NodeError>>,
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
    /// a point per `bytes_per_point` credited bytes. The task ends when every handle to the
    /// writer is gone (the HTTP server has stopped), after writing what was queued.
    pub fn start(tasks: &Tasks, db: SqlitePool, bytes_per_point: u64) -> HeartbeatWriter {
        let bytes_per_point = bytes_per_point.clamp(1, i64::MAX as u64) as i64;
        let (jobs, mut rx) = mpsc::channel::<HeartbeatJob>(4 * MAX_BATCH);
        tasks.spawn("heartbeat-writer", async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                write_batch(&db, batch, bytes_per_point).await;
            }
            Ok::<(), std::convert::Infallible>(())
        });
        HeartbeatWriter { jobs }
    }

    /// Checks and records a heartbeat of node `id` (which must belong to `account_id`).
    pub async fn record(
        &self,
        catalogue: &CatalogueCache,
        account_id: i64,
        id: &str,
        heartbeat: Heartbeat,
    ) -> Result<(), NodeError> {
        check_heartbeat(catalogue, &heartbeat).await?;
        let (done, result) = oneshot::channel();
        let job = HeartbeatJob {
            account_id,
            node_id: id.to_owned(),
            heartbeat,
            done,
        };
        let closed = || NodeError::Db(sqlx::Error::PoolClosed);
        self.jobs.send(job).await.map_err(|_| closed())?;
        result.await.map_err(|_| closed())?
    }
}

/// One row of transfers to add: (bucket, from, to, video) → (reported, confirmed).
type TransferKey = (i64, String, String, String);

async fn write_batch(db: &SqlitePool, batch: Vec<HeartbeatJob>, bytes_per_point: i64) {
    match write_batch_tx(db, &batch, bytes_per_point).await {
        Ok(outcomes) => {
            for (job, outcome) in batch.into_iter().zip(outcomes) {
                let _ = job.done.send(outcome);
            }
        }
        Err(e) => {
            let message = e.to_string();
            for job in batch {
                let _ = job
                    .done
                    .send(Err(NodeError::Db(sqlx::Error::Protocol(message.clone()))));
            }
        }
    }
}

async fn write_batch_tx(
    db: &SqlitePool,
    batch: &[HeartbeatJob],
    bytes_per_point: i64,
) -> Result<Vec<Result<(), NodeError>>, sqlx::Error> {
    let now = now_ms();
    let bucket = now / 1000 / BUCKET_SECS * BUCKET_SECS;
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut transfers: HashMap<TransferKey, (i64, i64)> = HashMap::new();
    for job in batch {
        let hb = &job.heartbeat;
        let holdings = serde_json::to_string(&hb.holdings).unwrap_or_else(|_| "[]".into());
        let updated = sqlx::query(
            "UPDATE nodes SET last_seen_ms = $1, watching = $2, holdings = $3,
                    upload_bps = COALESCE($4, upload_bps), storage_bytes = COALESCE($5, storage_bytes)
             WHERE id = $6 AND account_id = $7 RETURNING kind",
        )
        .bind(now)
        .bind(&hb.watching)
        .bind(holdings)
        .bind(hb.upload_bps.map(|v| v as i64))
        .bind(hb.storage_bytes.map(|v| v as i64))
        .bind(&job.node_id)
        .bind(job.account_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(updated) = updated else {
            outcomes.push(Err(NodeError::Unknown(job.node_id.clone())));
            continue;
        };
        outcomes.push(Ok(()));
        if let (Some(video), "viewer") = (&hb.watching, updated.get::<&str, _>("kind")) {
            // A bought movie being watched joins the account's watched list.
            sqlx::query(
                "INSERT INTO watched (account_id, video_id, first_at, last_at)
                 SELECT $1, $2, $3, $3 WHERE EXISTS
                     (SELECT 1 FROM purchases WHERE account_id = $1 AND video_id = $2)
                 ON CONFLICT (account_id, video_id) DO UPDATE SET last_at = excluded.last_at",
            )
            .bind(job.account_id)
            .bind(video)
            .bind(now / 1000)
            .execute(&mut *tx)
            .await?;
        }
        for (entries, outgoing) in [(&hb.sent, true), (&hb.received, false)] {
            for p in entries.iter().filter(|p| p.bytes > 0) {
                let (from, to) = if outgoing {
                    (job.node_id.clone(), p.peer.clone())
                } else {
                    (p.peer.clone(), job.node_id.clone())
                };
                let sums = transfers
                    .entry((bucket, from, to, p.video.clone()))
                    .or_default();
                let bytes = p.bytes as i64;
                let sum = if outgoing { &mut sums.0 } else { &mut sums.1 };
                *sum = sum.saturating_add(bytes).min(BYTES_CEILING);
            }
        }
    }
    let rows: Vec<(TransferKey, (i64, i64))> = transfers.into_iter().collect();
    for chunk in rows.chunks(100) {
        // Kinds are looked up as the rows go in: `origin`, a live node's kind, or `gone`.
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO transfers (bucket, from_node, from_kind, to_node, to_kind, video_id,
                                    reported_bytes, confirmed_bytes) ",
        );
        q.push_values(
            chunk,
            |mut row, ((bucket, from, to, video), (reported, confirmed))| {
                let kind_of = |node: &str| -> String {
                    if node == ORIGIN {
                        "'origin'".into()
                    } else {
                        String::new()
                    }
                };
                row.push_bind(*bucket).push_bind(from.clone());
                match kind_of(from).as_str() {
                    "" => row
                        .push("COALESCE((SELECT kind FROM nodes WHERE id = ")
                        .push_bind_unseparated(from.clone())
                        .push_unseparated("), 'gone')"),
                    k => row.push(k.to_owned()),
                };
                row.push_bind(to.clone());
                match kind_of(to).as_str() {
                    "" => row
                        .push("COALESCE((SELECT kind FROM nodes WHERE id = ")
                        .push_bind_unseparated(to.clone())
                        .push_unseparated("), 'gone')"),
                    k => row.push(k.to_owned()),
                };
                row.push_bind(video.clone())
                    .push_bind(*reported)
                    .push_bind(*confirmed);
            },
        );
        // Totals stop at a ceiling instead of overflowing into floating point.
        q.push(format!(
            " ON CONFLICT (bucket, from_node, to_node, video_id) DO UPDATE SET
               reported_bytes = CASE WHEN transfers.reported_bytes > {BYTES_CEILING} - excluded.reported_bytes
                   THEN {BYTES_CEILING} ELSE transfers.reported_bytes + excluded.reported_bytes END,
               confirmed_bytes = CASE WHEN transfers.confirmed_bytes > {BYTES_CEILING} - excluded.confirmed_bytes
                   THEN {BYTES_CEILING} ELSE transfers.confirmed_bytes + excluded.confirmed_bytes END"
        ));
        q.build().execute(&mut *tx).await?;
    }
    settle(&mut tx, &rows, bytes_per_point).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Adds a batch's bytes to the running totals per sender, receiver and movie, and credits
/// each sender that is a cache with what both sides now agree on: the smaller of reported
/// and confirmed bytes, over all time. Points follow credited bytes: floor(credited /
/// bytes_per_point) in all, paid as the total grows. A handful of statements per batch,
/// whatever its size.
async fn settle(
    tx: &mut sqlx::SqliteConnection,
    rows: &[(TransferKey, (i64, i64))],
    bytes_per_point: i64,
) -> Result<(), sqlx::Error> {
    // Pairs can repeat across buckets within a batch only at a bucket edge: merge them.
    let mut pairs: HashMap<(&str, &str, &str), (i64, i64)> = HashMap::new();
    for ((_, from, to, video), (reported, confirmed)) in rows {
        let sums = pairs.entry((from, to, video)).or_default();
        sums.0 = sums.0.saturating_add(*reported).min(BYTES_CEILING);
        sums.1 = sums.1.saturating_add(*confirmed).min(BYTES_CEILING);
    }
    let pairs: Vec<_> = pairs.into_iter().collect();
    let clamp = |column: &str| {
        format!(
            "{column} = CASE WHEN pair_totals.{column} > {BYTES_CEILING} - excluded.{column}
                 THEN {BYTES_CEILING} ELSE pair_totals.{column} + excluded.{column} END"
        )
    };
    let mut totals = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(100) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO pair_totals (from_node, to_node, video_id, reported_bytes, confirmed_bytes) ",
        );
        q.push_values(
            chunk,
            |mut row, ((from, to, video), (reported, confirmed))| {
                row.push_bind(*from)
                    .push_bind(*to)
                    .push_bind(*video)
                    .push_bind(*reported)
                    .push_bind(*confirmed);
            },
        );
        q.push(format!(
            " ON CONFLICT (from_node, to_node, video_id) DO UPDATE SET {}, {}
              RETURNING from_node, to_node, video_id, reported_bytes, confirmed_bytes, credited_bytes",
            clamp("reported_bytes"),
            clamp("confirmed_bytes")
        ));
        totals.extend(q.build().fetch_all(&mut *tx).await?);
    }
    // The accounts of the senders that are caches.
    let senders: std::collections::BTreeSet<&str> = pairs.iter().map(|((f, _, _), _)| *f).collect();
    let mut owners: HashMap<String, i64> = HashMap::new();
    let senders: Vec<&str> = senders.into_iter().collect();
    for chunk in senders.chunks(100) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT node_id, account_id FROM node_owners WHERE kind = 'cache' AND node_id IN (",
        );
        let mut list = q.separated(", ");
        for node in chunk {
            list.push_bind(*node);
        }
        q.push(")");
        for row in q.build().fetch_all(&mut *tx).await? {
            owners.insert(row.get("node_id"), row.get("account_id"));
        }
    }
    let reported_now: HashMap<(&str, &str, &str), i64> =
        pairs.iter().map(|(k, (r, _))| (*k, *r)).collect();
    // Per account: (uploaded, newly credited); per pair: the new credited total.
    let mut accounts: HashMap<i64, (i64, i64)> = HashMap::new();
    let mut credited: Vec<(String, String, String, i64)> = Vec::new();
    for row in &totals {
        let from: String = row.get("from_node");
        let Some(&account) = owners.get(&from) else {
            continue;
        };
        let (to, video): (String, String) = (row.get("to_node"), row.get("video_id"));
        let agreed = row
            .get::<i64, _>("reported_bytes")
            .min(row.get::<i64, _>("confirmed_bytes"));
        let newly = agreed - row.get::<i64, _>("credited_bytes");
        let sums = accounts.entry(account).or_default();
        sums.0 += reported_now
            .get(&(from.as_str(), to.as_str(), video.as_str()))
            .copied()
            .unwrap_or(0);
        if newly > 0 {
            sums.1 += newly;
            credited.push((from, to, video, agreed));
        }
    }
    for chunk in credited.chunks(100) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO pair_totals (from_node, to_node, video_id, credited_bytes) ",
        );
        q.push_values(chunk, |mut row, (from, to, video, agreed)| {
            row.push_bind(from.as_str())
                .push_bind(to.as_str())
                .push_bind(video.as_str())
                .push_bind(*agreed);
        });
        q.push(
            " ON CONFLICT (from_node, to_node, video_id) DO UPDATE
              SET credited_bytes = excluded.credited_bytes",
        );
        q.build().execute(&mut *tx).await?;
    }
    let accounts: Vec<(i64, (i64, i64))> = accounts
        .into_iter()
        .filter(|(_, (uploaded, newly))| *uploaded != 0 || *newly != 0)
        .collect();
    let now = now_ms();
    for chunk in accounts.chunks(100) {
        credit_accounts(tx, chunk, bytes_per_point, now).await?;
    }
    Ok(())
}

/// Runs `q`, whose rows are (account id, earned points).
async fn id_pairs(
    tx: &mut sqlx::SqliteConnection,
    mut q: sqlx::QueryBuilder<'_, sqlx::Sqlite>,
) -> Result<HashMap<i64, i64>, sqlx::Error> {
    Ok(q.build()
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Adds (uploaded, newly credited) bytes to each account, pays the points they complete,
/// and records both in the accounts' earnings over time: three statements for the lot.
async fn credit_accounts(
    tx: &mut sqlx::SqliteConnection,
    accounts: &[(i64, (i64, i64))],
    bytes_per_point: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "SELECT id, earned_points FROM accounts WHERE id IN (",
    );
    let mut list = q.separated(", ");
    for (account, _) in accounts {
        list.push_bind(*account);
    }
    q.push(")");
    let before = id_pairs(tx, q).await?;
    let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("WITH v (id, up, newly) AS (");
    q.push_values(accounts, |mut row, (account, (uploaded, newly))| {
        row.push_bind(*account)
            .push_bind(*uploaded)
            .push_bind(*newly);
    });
    q.push(format!(
        ") UPDATE accounts SET
             uploaded_bytes = MIN(uploaded_bytes + v.up, {BYTES_CEILING}),
             credited_bytes = MIN(credited_bytes + v.newly, {BYTES_CEILING}),
             balance = balance + MIN(credited_bytes + v.newly, {BYTES_CEILING}) / "
    ));
    q.push_bind(bytes_per_point);
    q.push(format!(
        " - earned_points,
             earned_points = MIN(credited_bytes + v.newly, {BYTES_CEILING}) / "
    ));
    q.push_bind(bytes_per_point);
    q.push(" FROM v WHERE accounts.id = v.id RETURNING accounts.id, accounts.earned_points");
    let after = id_pairs(tx, q).await?;
    // Earnings over time (the points screen's chart), for the accounts that still exist.
    let earned: Vec<(i64, i64, i64, i64)> = accounts
        .iter()
        .filter_map(|(account, (uploaded, newly))| {
            let points = after.get(account)? - before.get(account).copied().unwrap_or(0);
            Some((*account, *uploaded, *newly, points.max(0)))
        })
        .collect();
    crate::earnings::record(tx, &earned, now).await
}

/// Removes node `id` of `account_id`.
pub async fn leave(db: &SqlitePool, account_id: i64, id: &str) -> Result<(), NodeError> {
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
pub async fn expire(db: &SqlitePool, timeout_ms: i64) -> Result<u64, NodeError> {
    Ok(sqlx::query("DELETE FROM nodes WHERE last_seen_ms < $1")
        .bind(now_ms() - timeout_ms)
        .execute(db)
        .await?
        .rows_affected())
}

/// Drops every node: after a tracker restart nothing is known to be alive; nodes find out
/// from their next heartbeat and register again.
pub async fn forget_all(db: &SqlitePool) -> Result<(), NodeError> {
    sqlx::query("DELETE FROM nodes").execute(db).await?;
    Ok(())
}

/// Live nodes, of one account or of all.
pub async fn list(db: &SqlitePool, account_id: Option<i64>) -> Result<Vec<NodeInfo>, NodeError> {
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
        })
        .collect())
}
