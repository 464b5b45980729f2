//! The queries behind the administrators' views.

use std::collections::HashMap;

use rivulet_tracker_client::{AccountSummary, Counterpart, Flow, LoadPoint, NodeFlows};
use sqlx::{AnyPool, Row};

use crate::nodes::BUCKET_SECS;
use rivulet_node_core::clock::unix_ms;

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A byte total summed as floating point (sums of 64-bit counters can exceed 64 bits).
fn total(row: &sqlx::any::AnyRow, column: &str) -> u64 {
    // Unchecked: SQLite hands back an integer 0 for an empty sum, a real otherwise.
    let v: f64 = row.try_get_unchecked(column).unwrap_or(0.0);
    if v.is_finite() && v > 0.0 {
        v.min(u64::MAX as f64) as u64
    } else {
        0
    }
}

/// Every account with its totals.
pub async fn accounts(db: &AnyPool) -> Result<Vec<AccountSummary>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT a.username, a.admin, a.balance, a.uploaded_bytes, a.credited_bytes, a.created_at,
                (SELECT COUNT(*) FROM purchases p WHERE p.account_id = a.id) AS purchases,
                (SELECT COUNT(*) FROM nodes n WHERE n.account_id = a.id) AS nodes
         FROM accounts a ORDER BY a.username_key",
    )
    .fetch_all(db)
    .await?;
    // Credited bytes per (cache account, viewer account): the largest per cache account.
    let pairs: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT ca.username, va.username, CAST(SUM(p.credited_bytes) AS BIGINT) AS bytes
         FROM pair_totals p
         JOIN node_owners co ON co.node_id = p.from_node
         JOIN node_owners vo ON vo.node_id = p.to_node
         JOIN accounts ca ON ca.id = co.account_id
         JOIN accounts va ON va.id = vo.account_id
         WHERE p.credited_bytes > 0
         GROUP BY ca.id, va.id",
    )
    .fetch_all(db)
    .await?;
    let mut top: HashMap<String, (String, u64)> = HashMap::new();
    for (cache_account, viewer_account, bytes) in pairs {
        let bytes = unsigned(bytes);
        let best = top
            .entry(cache_account)
            .or_insert((viewer_account.clone(), 0));
        if bytes > best.1 || (bytes == best.1 && viewer_account < best.0) {
            *best = (viewer_account, bytes);
        }
    }
    Ok(rows
        .iter()
        .map(|r| AccountSummary {
            top_counterpart: top.get(r.get::<&str, _>("username")).map(|(name, bytes)| {
                let total = unsigned(r.get("credited_bytes")).max(*bytes).max(1);
                Counterpart {
                    username: name.clone(),
                    credited_bytes: *bytes,
                    percent: (u128::from(*bytes) * 100 / u128::from(total)) as u8,
                }
            }),
            username: r.get("username"),
            admin: crate::db::flag(r, "admin"),
            balance: unsigned(r.get("balance")),
            uploaded_bytes: unsigned(r.get("uploaded_bytes")),
            credited_bytes: unsigned(r.get("credited_bytes")),
            purchases: unsigned(r.get("purchases")),
            nodes: unsigned(r.get("nodes")),
            created_at: unsigned(r.get("created_at")),
        })
        .collect())
}

/// Purchases per movie.
pub async fn purchases_by_video(db: &AnyPool) -> Result<HashMap<String, u64>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT video_id, COUNT(*) FROM purchases GROUP BY video_id")
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(|(v, n)| (v, unsigned(n))).collect())
}

/// Bytes per bucket over the last `secs` seconds, by flow. Receivers' confirmations count;
/// a sender's report stands in where the receiver has not confirmed. Reads the 10-second
/// rows only: callers ask for at most a day, and rows are rolled up after a day
/// ([`crate::ops::ROLL_UP_AFTER_SECS`]).
pub async fn load(db: &AnyPool, secs: i64) -> Result<Vec<LoadPoint>, sqlx::Error> {
    let since = unix_ms() / 1000 - secs;
    let rows = sqlx::query(
        "SELECT bucket,
            SUM(CASE WHEN from_kind = 'origin' AND to_kind = 'viewer' THEN bytes ELSE 0 END) AS ov,
            SUM(CASE WHEN from_kind = 'origin' AND to_kind = 'cache' THEN bytes ELSE 0 END) AS oc,
            SUM(CASE WHEN from_kind = 'cache' AND to_kind = 'viewer' THEN bytes ELSE 0 END) AS cv,
            SUM(CASE WHEN to_kind = 'viewer' THEN bytes ELSE 0 END) AS demand
         FROM (SELECT bucket, from_kind, to_kind,
                      CAST(CASE WHEN confirmed_bytes > 0 THEN confirmed_bytes ELSE reported_bytes END
                           AS DOUBLE PRECISION) AS bytes
               FROM transfers WHERE bucket >= $1) AS t
         GROUP BY bucket ORDER BY bucket",
    )
    .bind(since)
    .fetch_all(db)
    .await?;
    Ok(rows
        .iter()
        .map(|r| LoadPoint {
            at: unsigned(r.get("bucket")),
            secs: BUCKET_SECS as u64,
            origin_to_viewers: total(r, "ov"),
            origin_to_caches: total(r, "oc"),
            caches_to_viewers: total(r, "cv"),
            demand: total(r, "demand"),
        })
        .collect())
}

/// What `node` received from each peer and sent to each peer, per movie, over all time.
pub async fn flows(db: &AnyPool, node: &str) -> Result<NodeFlows, sqlx::Error> {
    let side = |incoming: bool| async move {
        let (me, peer, peer_kind) = if incoming {
            ("to_node", "from_node", "from_kind")
        } else {
            ("from_node", "to_node", "to_kind")
        };
        // Rows older than a day are rolled up into `transfer_hours` (ops.rs), whose
        // `bytes` is the same per-row choice summed.
        let rows = sqlx::query(&format!(
            "SELECT peer, peer_kind, video_id, SUM(bytes) AS bytes FROM (
                SELECT {peer} AS peer, {peer_kind} AS peer_kind, video_id,
                       CAST(CASE WHEN confirmed_bytes > 0 THEN confirmed_bytes ELSE reported_bytes END
                            AS DOUBLE PRECISION) AS bytes
                FROM transfers WHERE {me} = $1
                UNION ALL
                SELECT {peer}, {peer_kind}, video_id, CAST(bytes AS DOUBLE PRECISION)
                FROM transfer_hours WHERE {me} = $1
             ) AS t GROUP BY peer, peer_kind, video_id ORDER BY bytes DESC"
        ))
        .bind(node)
        .fetch_all(db)
        .await?;
        Ok::<_, sqlx::Error>(
            rows.iter()
                .map(|r| Flow {
                    peer: r.get("peer"),
                    peer_kind: r.get("peer_kind"),
                    video: r.get("video_id"),
                    bytes: total(r, "bytes"),
                })
                .collect(),
        )
    };
    Ok(NodeFlows {
        node: node.to_owned(),
        received: side(true).await?,
        sent: side(false).await?,
    })
}
