//! Accounting: writes a batch of heartbeats in one transaction and settles what caches are
//! owed. A transfer is credited to the sending cache's account only as far as the receiving
//! viewer's receipts confirm it and the ledger (`credit.rs`) accepts them; points follow
//! credited bytes.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use rivulet_node_core::clock::unix_ms;
use rivulet_tracker_client::ChunkRef;
use sqlx::{AnyPool, Row};

use crate::credit::{Ledger, MAX_STORAGE_BYTES, MAX_UPLOAD_BPS, Role, Sender};
use crate::nodes::{BUCKET_SECS, BYTES_CEILING, HeartbeatJob, NodeError, ORIGIN};
use crate::placement::Network;

/// One row of transfers to add: (bucket, from, to, video) → (reported, confirmed).
type TransferKey = (i64, String, String, String);

/// What a batch needs besides the database: the ledger that judges receipts and the
/// network whose peer sets and placement vouch for transfers.
pub(crate) struct Judge<'a> {
    pub(crate) ledger: &'a mut Ledger,
    pub(crate) network: &'a Network,
}

/// How many times a batch is tried when the database aborts its transaction to break a
/// deadlock or a serialization conflict (two trackers crediting the same rows).
const ATTEMPTS: u32 = 4;

/// Writes `batch` in one transaction and answers each heartbeat. A transaction PostgreSQL
/// aborts as a deadlock's victim or for a serialization conflict is tried again (up to
/// [`ATTEMPTS`] in all), its judgement undone first so that nothing counts twice or is lost.
pub(crate) async fn write_batch(
    db: &AnyPool,
    batch: Vec<HeartbeatJob>,
    bytes_per_point: i64,
    judge: Judge<'_>,
) {
    let Judge { ledger, network } = judge;
    let mut attempt = 1;
    let result = loop {
        ledger.begin();
        let judge = Judge {
            ledger: &mut *ledger,
            network,
        };
        match write_batch_tx(db, &batch, bytes_per_point, judge).await {
            Ok((outcomes, uploads)) => {
                ledger.commit();
                let now = Instant::now();
                for (cache, bytes) in uploads {
                    network.record_upload(&cache, bytes, now);
                }
                break Ok(outcomes);
            }
            Err(e) if attempt < ATTEMPTS && crate::db::is_retryable(&e) => {
                ledger.rollback();
                tracing::debug!(
                    attempt,
                    "heartbeat batch aborted by the database, again: {e}"
                );
                // A few milliseconds apart, so two trackers do not collide again at once.
                let pause = 5 * u64::from(attempt) + u64::from(rand::random::<u8>() % 10);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                attempt += 1;
            }
            Err(e) => {
                // As before retries: whether a failed commit wrote is not known, so what was
                // judged stays judged (a report sent again is not counted twice).
                ledger.commit();
                break Err(e);
            }
        }
    };
    match result {
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

/// What a committed batch answers each heartbeat, and the bytes credited per cache (counted
/// toward its measured upload once the batch has committed).
type BatchWritten = (Vec<Result<Option<String>, NodeError>>, Vec<(String, u64)>);

/// A node named in a batch, as the tracker knows it.
struct Known {
    account_id: i64,
    kind: String,
    /// Its upload cap while it is live; `None` once it has left.
    live_upload: Option<u64>,
}

/// The nodes `names` that the tracker has ever registered (and, for live ones, their cap).
async fn known_nodes(
    tx: &mut sqlx::AnyConnection,
    names: &BTreeSet<&str>,
) -> Result<HashMap<String, Known>, sqlx::Error> {
    let names: Vec<&str> = names.iter().copied().collect();
    let mut known = HashMap::new();
    for chunk in names.chunks(100) {
        let mut q = crate::db::Sql::new(
            "SELECT o.node_id, o.account_id, o.kind, n.upload_bps FROM node_owners o
             LEFT JOIN nodes n ON n.id = o.node_id WHERE o.node_id IN (",
        );
        let mut list = q.separated(", ");
        for node in chunk {
            list.push_bind(*node);
        }
        q.push(")");
        for row in q.build().fetch_all(&mut *tx).await? {
            known.insert(
                row.get("node_id"),
                Known {
                    account_id: row.get("account_id"),
                    kind: row.get("kind"),
                    live_upload: row
                        .get::<Option<i64>, _>("upload_bps")
                        .map(|v| u64::try_from(v).unwrap_or(0)),
                },
            );
        }
    }
    Ok(known)
}

async fn write_batch_tx(
    db: &AnyPool,
    batch: &[HeartbeatJob],
    bytes_per_point: i64,
    judge: Judge<'_>,
) -> Result<BatchWritten, sqlx::Error> {
    let Judge { ledger, network } = judge;
    let now = unix_ms();
    let instant = Instant::now();
    let bucket = now / 1000 / BUCKET_SECS * BUCKET_SECS;
    let mut tx = crate::db::begin_write(db).await?;
    // The batch's own nodes are looked up with the peers they name: their accounts tell
    // which senders are caches when credit is settled.
    let named: BTreeSet<&str> = batch
        .iter()
        .flat_map(|job| job.heartbeat.sent.iter().chain(&job.heartbeat.received))
        .map(|p| p.peer.as_str())
        .chain(batch.iter().map(|job| job.node_id.as_str()))
        .filter(|peer| *peer != ORIGIN)
        .collect();
    let known = known_nodes(&mut tx, &named).await?;
    let updated = update_nodes(&mut tx, batch, now).await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut uploads: Vec<(String, u64)> = Vec::new();
    let mut transfers: HashMap<TransferKey, (i64, i64)> = HashMap::new();
    let mut watched_now: BTreeSet<(i64, &str)> = BTreeSet::new();
    for job in batch {
        let hb = &job.heartbeat;
        let Some(node) = updated
            .get(&job.node_id)
            .filter(|n| n.account_id == job.account_id)
        else {
            outcomes.push(Err(NodeError::Unknown(job.node_id.clone())));
            continue;
        };
        outcomes.push(Ok(node.watching.clone()));
        let viewer = node.kind == "viewer";
        let watching = node.watching.clone();
        let watched_before = if viewer {
            ledger.watch(&job.node_id, watching.as_deref())
        } else {
            None
        };
        if let (Some(video), true) = (&node.watching, viewer) {
            // A bought movie being watched joins the account's watched list.
            watched_now.insert((job.account_id, video.as_str()));
        }
        if !ledger.fresh(&job.node_id, hb.seq, instant) {
            // Sent again after a lost reply (or unnumbered): its bytes were counted or
            // never count.
            continue;
        }
        let mut add = |from: &str, to: &str, video: &str, reported: u64, confirmed: u64| {
            let sums = transfers
                .entry((bucket, from.to_owned(), to.to_owned(), video.to_owned()))
                .or_default();
            let (r, c) = (
                reported.min(BYTES_CEILING as u64) as i64,
                confirmed.min(BYTES_CEILING as u64) as i64,
            );
            sums.0 = sums.0.saturating_add(r).min(BYTES_CEILING);
            sums.1 = sums.1.saturating_add(c).min(BYTES_CEILING);
        };
        for p in hb.sent.iter().filter(|p| p.bytes > 0) {
            // Bytes "sent" to a node the tracker never registered add no rows.
            if known.contains_key(&p.peer) {
                add(&job.node_id, &p.peer, &p.video, p.bytes, 0);
            }
        }
        for p in &hb.received {
            if p.peer == ORIGIN {
                // The origin is paid nothing: these bytes are the load timeline's.
                if p.bytes > 0 {
                    add(ORIGIN, &job.node_id, &p.video, 0, p.bytes);
                }
                continue;
            }
            let Some(from) = known.get(&p.peer) else {
                continue;
            };
            let (Some(upload_bps), "cache") = (from.live_upload, from.kind.as_str()) else {
                // Only receipts from a live cache confirm anything.
                continue;
            };
            let Some(stored) = job.videos.iter().find(|v| v.record.id == p.video) else {
                continue;
            };
            let sender = Sender {
                account_id: from.account_id,
                upload_bps,
            };
            let (role, chunks, watched, given) = if viewer {
                let watched = watching.as_deref() == Some(p.video.as_str())
                    || watched_before.as_deref() == Some(p.video.as_str());
                let given = network.vouches_for(&job.node_id, &p.peer, &p.video);
                (Role::Viewing, p.chunks.clone(), watched, given)
            } else {
                // A cache warming from another: only chunks of indices the tracker placed
                // with it and told it to fetch from that cache count.
                let chunks: Vec<ChunkRef> = p
                    .chunks
                    .iter()
                    .copied()
                    .filter(|c| network.vouches_for_warming(&job.node_id, &p.peer, &p.video, c.1))
                    .collect();
                let given = !chunks.is_empty();
                (Role::Warming, chunks, true, given)
            };
            let result = ledger.confirm_as(
                role,
                (&job.node_id, job.account_id),
                (&p.peer, sender),
                &p.video,
                &stored.manifest,
                &chunks,
                (watched, given),
                instant,
            );
            match result {
                Ok(bytes) => {
                    uploads.push((p.peer.clone(), bytes));
                    add(&p.peer, &job.node_id, &p.video, 0, bytes)
                }
                Err(why) => tracing::debug!(
                    viewer = %job.node_id, cache = %p.peer, video = %p.video,
                    "receipts refused: {why:?}"
                ),
            }
        }
    }
    // Rows go in key order (and accounts in id order below), so two trackers writing
    // batches at once lock shared rows in the same order and do not deadlock.
    let mut rows: Vec<(TransferKey, (i64, i64))> = transfers.into_iter().collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for chunk in rows.chunks(100) {
        // Kinds are looked up as the rows go in: `origin`, a live node's kind, or `gone`.
        let mut q = crate::db::Sql::new(
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
    record_watched(&mut tx, &watched_now, now / 1000).await?;
    settle(&mut tx, &rows, &known, bytes_per_point).await?;
    tx.commit().await?;
    Ok((outcomes, uploads))
}

/// A node as a batch's update left it.
struct Updated {
    account_id: i64,
    kind: String,
    /// Its movie, kept only if its account owns it: demand and credit count owners only.
    watching: Option<String>,
}

/// Updates every node of the batch in one statement per 100 (a node reporting twice in a
/// batch keeps its last report); returns the nodes updated, by id. A heartbeat for a node
/// that is gone, or is another account's, updates nothing.
async fn update_nodes(
    tx: &mut sqlx::AnyConnection,
    batch: &[HeartbeatJob],
    now: i64,
) -> Result<HashMap<String, Updated>, sqlx::Error> {
    let mut last: HashMap<(&str, i64), &HeartbeatJob> = HashMap::new();
    for job in batch {
        last.insert((job.node_id.as_str(), job.account_id), job);
    }
    let mut jobs: Vec<&HeartbeatJob> = last.into_values().collect();
    jobs.sort_unstable_by(|a, b| a.node_id.cmp(&b.node_id));
    let mut updated = HashMap::new();
    for chunk in jobs.chunks(100) {
        let ids: Vec<String> = chunk.iter().map(|job| job.node_id.clone()).collect();
        lock_in_order(tx, "nodes", &ids).await?;
        let mut q = crate::db::Sql::new(
            "WITH v (id, account_id, watching, holdings, upload, storage) AS (",
        );
        q.push_values(chunk, |mut row, job| {
            let hb = &job.heartbeat;
            row.push_bind(job.node_id.as_str())
                .push_bind(job.account_id)
                .push_bind(hb.watching.as_deref())
                .push_bind(serde_json::to_string(&hb.holdings).unwrap_or_else(|_| "[]".into()))
                .push_bind(hb.upload_bps.map(|v| v.min(MAX_UPLOAD_BPS) as i64))
                .push_bind(hb.storage_bytes.map(|v| v.min(MAX_STORAGE_BYTES) as i64));
        });
        q.push(") UPDATE nodes SET last_seen_ms = ");
        q.push_bind(now);
        q.push(
            ", watching = CASE WHEN EXISTS (SELECT 1 FROM purchases p
                                            WHERE p.account_id = v.account_id
                                              AND p.video_id = v.watching)
                          THEN v.watching END,
               holdings = v.holdings,
               upload_bps = COALESCE(v.upload, nodes.upload_bps),
               storage_bytes = COALESCE(v.storage, nodes.storage_bytes)
             FROM v WHERE nodes.id = v.id AND nodes.account_id = v.account_id
             RETURNING nodes.id, nodes.account_id, nodes.kind, nodes.watching",
        );
        for row in q.build().fetch_all(&mut *tx).await? {
            updated.insert(
                row.get("id"),
                Updated {
                    account_id: row.get("account_id"),
                    kind: row.get("kind"),
                    watching: row.get("watching"),
                },
            );
        }
    }
    Ok(updated)
}

/// Adds the movies being watched to their accounts' watched lists, one statement per 100.
async fn record_watched(
    tx: &mut sqlx::AnyConnection,
    watched: &BTreeSet<(i64, &str)>,
    now_secs: i64,
) -> Result<(), sqlx::Error> {
    let watched: Vec<_> = watched.iter().collect();
    for chunk in watched.chunks(100) {
        let mut q =
            crate::db::Sql::new("INSERT INTO watched (account_id, video_id, first_at, last_at) ");
        q.push_values(chunk, |mut row, (account, video)| {
            row.push_bind(*account)
                .push_bind(*video)
                .push_bind(now_secs)
                .push_bind(now_secs);
        });
        q.push(" ON CONFLICT (account_id, video_id) DO UPDATE SET last_at = excluded.last_at");
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// Adds a batch's bytes to the running totals per sender, receiver and movie, and credits
/// each sender that is a cache with what both sides now agree on: the smaller of reported
/// and confirmed bytes, over all time. Points follow credited bytes: floor(credited /
/// bytes_per_point) in all, paid as the total grows. A handful of statements per batch,
/// whatever its size.
async fn settle(
    tx: &mut sqlx::AnyConnection,
    rows: &[(TransferKey, (i64, i64))],
    known: &HashMap<String, Known>,
    bytes_per_point: i64,
) -> Result<(), sqlx::Error> {
    // Pairs can repeat across buckets within a batch only at a bucket edge: merge them.
    let mut pairs: HashMap<(&str, &str, &str), (i64, i64)> = HashMap::new();
    for ((_, from, to, video), (reported, confirmed)) in rows {
        let sums = pairs.entry((from, to, video)).or_default();
        sums.0 = sums.0.saturating_add(*reported).min(BYTES_CEILING);
        sums.1 = sums.1.saturating_add(*confirmed).min(BYTES_CEILING);
    }
    let mut pairs: Vec<_> = pairs.into_iter().collect();
    pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let clamp = |column: &str| {
        format!(
            "{column} = CASE WHEN pair_totals.{column} > {BYTES_CEILING} - excluded.{column}
                 THEN {BYTES_CEILING} ELSE pair_totals.{column} + excluded.{column} END"
        )
    };
    let mut totals = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(100) {
        let mut q = crate::db::Sql::new(
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
    let owners: HashMap<&str, i64> = known
        .iter()
        .filter(|(_, k)| k.kind == "cache")
        .map(|(id, k)| (id.as_str(), k.account_id))
        .collect();
    let reported_now: HashMap<(&str, &str, &str), i64> =
        pairs.iter().map(|(k, (r, _))| (*k, *r)).collect();
    // Per account: (uploaded, newly credited); per pair: the new credited total.
    let mut accounts: HashMap<i64, (i64, i64)> = HashMap::new();
    let mut credited: Vec<(String, String, String, i64)> = Vec::new();
    for row in &totals {
        let from: String = row.get("from_node");
        let Some(&account) = owners.get(from.as_str()) else {
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
    credited.sort_unstable();
    for chunk in credited.chunks(100) {
        let mut q = crate::db::Sql::new(
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
    let mut accounts: Vec<(i64, (i64, i64))> = accounts
        .into_iter()
        .filter(|(_, (uploaded, newly))| *uploaded != 0 || *newly != 0)
        .collect();
    accounts.sort_unstable_by_key(|(id, _)| *id);
    let now = unix_ms();
    for chunk in accounts.chunks(100) {
        credit_accounts(tx, chunk, bytes_per_point, now).await?;
    }
    Ok(())
}

/// On PostgreSQL, locks the rows `ids` (sorted) of `table` in id order before an `UPDATE …
/// FROM (VALUES …)` writes them, whose join locks them in whatever order its plan reads
/// them: two trackers' batches then wait for each other instead of deadlocking. `FOR NO KEY
/// UPDATE`, as the update itself, so a foreign key check on the row is not held up. SQLite
/// runs one writer at a time and needs none.
async fn lock_in_order<T>(
    tx: &mut sqlx::AnyConnection,
    table: &str,
    ids: &[T],
) -> Result<(), sqlx::Error>
where
    T: Clone + for<'q> sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any> + Send + Sync + 'static,
{
    if ids.is_empty() || crate::db::engine_of(tx) != crate::db::Engine::Postgres {
        return Ok(());
    }
    let mut q = crate::db::Sql::new(format!("SELECT id FROM {table} WHERE id IN ("));
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(id.clone());
    }
    q.push(") ORDER BY id FOR NO KEY UPDATE");
    q.build().fetch_all(&mut *tx).await?;
    Ok(())
}

/// Runs `q`, whose rows are (account id, earned points).
async fn id_pairs(
    tx: &mut sqlx::AnyConnection,
    mut q: crate::db::Sql<'_>,
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
    tx: &mut sqlx::AnyConnection,
    accounts: &[(i64, (i64, i64))],
    bytes_per_point: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    let ids: Vec<i64> = accounts.iter().map(|(account, _)| *account).collect();
    lock_in_order(tx, "accounts", &ids).await?;
    let mut q = crate::db::Sql::new("SELECT id, earned_points FROM accounts WHERE id IN (");
    let mut list = q.separated(", ");
    for (account, _) in accounts {
        list.push_bind(*account);
    }
    q.push(")");
    let before = id_pairs(tx, q).await?;
    let mut q = crate::db::Sql::new("WITH v (id, up, newly) AS (");
    q.push_values(accounts, |mut row, (account, (uploaded, newly))| {
        row.push_bind(*account)
            .push_bind(*uploaded)
            .push_bind(*newly);
    });
    // Capped sums as CASE, which both engines have (SQLite's two-argument MIN is
    // PostgreSQL's LEAST).
    let capped = |sum: &str| {
        format!("CASE WHEN {sum} < {BYTES_CEILING} THEN {sum} ELSE {BYTES_CEILING} END")
    };
    let credited = capped("credited_bytes + v.newly");
    q.push(format!(
        ") UPDATE accounts SET
             uploaded_bytes = {},
             credited_bytes = {credited},
             balance = balance + {credited} / ",
        capped("uploaded_bytes + v.up"),
    ));
    q.push_bind(bytes_per_point);
    q.push(format!(
        " - earned_points,
             earned_points = {credited} / "
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
