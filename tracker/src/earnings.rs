//! Earnings over time: each settlement that credits an account's caches adds to the
//! account's row for that minute in `credit_minutes` (bytes reported, newly credited,
//! points earned), and [`history`] sums them into fixed buckets for the app's points screen.

use rivulet_tracker_client::{Earnings, EarningsBucket};
use sqlx::{AnyPool, Row};

/// Longest history one request may ask for: 30 days.
pub const MAX_MINUTES: u32 = 30 * 24 * 60;
/// Most buckets one request may ask for.
pub const MAX_BUCKETS: u32 = 240;

/// Adds what one settlement gave each account — (account, uploaded bytes, newly credited
/// bytes, points) — to the account's row for the minute of `at_ms` (inside the
/// settlement's transaction).
pub async fn record(
    tx: &mut sqlx::AnyConnection,
    earned: &[(i64, i64, i64, i64)],
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    if earned.is_empty() {
        return Ok(());
    }
    let minute = at_ms.div_euclid(60_000);
    let mut q = crate::db::Sql::new(
        "INSERT INTO credit_minutes (account_id, minute, uploaded_bytes, credited_bytes, points) ",
    );
    q.push_values(earned, |mut row, (account, uploaded, credited, points)| {
        row.push_bind(*account)
            .push_bind(minute)
            .push_bind(*uploaded)
            .push_bind(*credited)
            .push_bind(*points);
    });
    q.push(
        " ON CONFLICT (account_id, minute) DO UPDATE SET
             uploaded_bytes = credit_minutes.uploaded_bytes + excluded.uploaded_bytes,
             credited_bytes = credit_minutes.credited_bytes + excluded.credited_bytes,
             points = credit_minutes.points + excluded.points",
    );
    q.build().execute(&mut *tx).await?;
    Ok(())
}

/// The last `minutes` of `account`'s earnings up to `now_ms`, in `buckets` equal buckets
/// (oldest first, empty ones included; a minute counts in the bucket its start falls in).
/// The caller checks the ranges (a bucket is at least a minute).
pub async fn history(
    db: &AnyPool,
    account: i64,
    now_ms: i64,
    minutes: u32,
    buckets: u32,
) -> Result<Earnings, sqlx::Error> {
    let span_ms = i64::from(minutes) * 60_000;
    let bucket_ms = (span_ms + i64::from(buckets) - 1) / i64::from(buckets);
    // Buckets end at the next whole bucket after now, so they stay put between calls.
    let end = (now_ms / bucket_ms + 1) * bucket_ms;
    let since = end - bucket_ms * i64::from(buckets);
    let rows = sqlx::query(
        "SELECT ($2 + ((minute * 60000 - $2) / $3) * $3) AS start,
                CAST(SUM(uploaded_bytes) AS BIGINT) AS uploaded,
                CAST(SUM(credited_bytes) AS BIGINT) AS credited,
                CAST(SUM(points) AS BIGINT) AS points
         FROM credit_minutes
         WHERE account_id = $1 AND minute * 60000 >= $2 AND minute * 60000 < $4
         GROUP BY start",
    )
    .bind(account)
    .bind(since)
    .bind(bucket_ms)
    .bind(end)
    .fetch_all(db)
    .await?;
    let mut out: Vec<EarningsBucket> = (0..i64::from(buckets))
        .map(|i| EarningsBucket {
            start: unsigned((since + i * bucket_ms) / 1000),
            uploaded_bytes: 0,
            credited_bytes: 0,
            points: 0,
        })
        .collect();
    for r in &rows {
        let i = (r.get::<i64, _>("start") - since) / bucket_ms;
        if let Some(b) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
            b.uploaded_bytes = unsigned(r.get("uploaded"));
            b.credited_bytes = unsigned(r.get("credited"));
            b.points = unsigned(r.get("points"));
        }
    }
    Ok(Earnings {
        bucket_secs: unsigned(bucket_ms / 1000).max(1),
        buckets: out,
    })
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
