//! Accounting: writes a batch of heartbeats in one transaction and settles what caches are
//! owed. A transfer is credited to the sending cache's account only as far as the receiving
//! viewer confirmed it; points follow credited bytes.

use std::collections::HashMap;

use rivulet_node_core::clock::unix_ms;
use sqlx::{Row, SqlitePool};

use crate::nodes::{BUCKET_SECS, BYTES_CEILING, HeartbeatJob, NodeError, ORIGIN};

/// One row of transfers to add: (bucket, from, to, video) → (reported, confirmed).
type TransferKey = (i64, String, String, String);

pub(crate) async fn write_batch(db: &SqlitePool, batch: Vec<HeartbeatJob>, bytes_per_point: i64) {
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
    let now = unix_ms();
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
    let now = unix_ms();
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
