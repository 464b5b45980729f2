//! Operator commands on a data dir, each safe while a `serve` runs on it (SQLite in WAL mode,
//! short transactions): change or remove a movie, list and disable accounts, take an online
//! backup and restore one, and the roll-up that keeps the `transfers` table bounded.
//! `main.rs` parses the command line and prints; the work is here, so tests and the
//! local network can call it too.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rivulet_node_core::task::Every;
use serde::Serialize;
use sqlx::{AnyPool, Row};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::catalogue::{self, CatalogueError, RECORD_FILE, StoredVideo, VideoRecord};
use crate::catalogue_cache;
use crate::data_dir::DataDir;
use crate::db::DB_FILE;

/// The lock file a running `serve` holds (an exclusive `flock`), so that `restore` and a
/// second `serve` can tell the data dir is in use.
pub const SERVE_LOCK_FILE: &str = "serve.lock";

/// Why an operator command failed; each message is one line for the operator.
#[derive(Debug, Error)]
pub enum OpsError {
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Busy(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> OpsError + '_ {
    move |source| OpsError::Io {
        path: path.to_owned(),
        source,
    }
}

// ---- the serve lock ----

/// The data dir held by one `serve`: released when dropped (or when the process dies).
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
}

impl ServeLock {
    /// Takes the lock of `root`, or says that a serve holds it.
    pub fn take(root: &Path) -> Result<ServeLock, OpsError> {
        let path = root.join(SERVE_LOCK_FILE);
        let file = File::create(&path).map_err(io_error(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(ServeLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(OpsError::Busy(format!(
                "a serve is running on {} (it holds {}): stop it first",
                root.display(),
                path.display()
            ))),
            Err(TryLockError::Error(e)) => Err(io_error(&path)(e)),
        }
    }
}

// ---- the catalogue ----

/// Changes a movie's title and/or price in place (its `video.json` replaced atomically); a
/// running serve sees it within moments ([`catalogue_cache::mark_changed`]).
pub fn set_video(
    data: &DataDir,
    id: &str,
    title: Option<&str>,
    price: Option<u64>,
) -> Result<VideoRecord, OpsError> {
    if title.is_none() && price.is_none() {
        return Err(OpsError::BadInput(
            "nothing to change: give --title and/or --price".into(),
        ));
    }
    let video = StoredVideo::load(data, id)?;
    let mut record = video.record.clone();
    if let Some(title) = title {
        record.title =
            crate::ingest::check_title(title).map_err(|e| OpsError::BadInput(e.to_string()))?;
    }
    if let Some(price) = price {
        if price > crate::cli::MAX_POINTS {
            return Err(OpsError::BadInput(format!(
                "price must be at most {}",
                crate::cli::MAX_POINTS
            )));
        }
        record.price = price;
    }
    let json = serde_json::to_vec_pretty(&record)
        .map_err(|e| OpsError::BadInput(format!("video {id}: {e}")))?;
    let tmp = format!("{RECORD_FILE}.tmp-{}", std::process::id());
    catalogue::write_synced(&video.dir, &tmp, &json).map_err(io_error(&video.dir))?;
    fs::rename(video.dir.join(&tmp), video.dir.join(RECORD_FILE)).map_err(io_error(&video.dir))?;
    let _ = File::open(&video.dir).and_then(|d| d.sync_all());
    catalogue_cache::mark_changed(data).map_err(io_error(&data.videos_dir()))?;
    Ok(record)
}

/// Removes a movie and its files: first renamed out of `videos/` in one step (a running
/// serve stops listing it and stops issuing tickets for it), then deleted. Purchases and
/// watch history of it stay in the database as history.
pub fn remove_video(data: &DataDir, id: &str) -> Result<(), OpsError> {
    catalogue::check_id(id)?;
    let dir = data.video_dir(id);
    if !dir.is_dir() {
        return Err(CatalogueError::NotFound(id.to_owned()).into());
    }
    // A staging directory without a lock: if this process dies before it is deleted, the
    // next command that opens the data dir sweeps it.
    let trash = data
        .staging_dir()
        .join(format!("removed-{id}-{}", catalogue::new_id()));
    fs::create_dir_all(data.staging_dir()).map_err(io_error(&data.staging_dir()))?;
    fs::rename(&dir, &trash).map_err(io_error(&dir))?;
    catalogue_cache::mark_changed(data).map_err(io_error(&data.videos_dir()))?;
    match fs::remove_dir_all(&trash) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(&trash)(e)),
        _ => Ok(()),
    }
}

// ---- accounts ----

/// One account as `accounts list` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountLine {
    pub username: String,
    pub admin: bool,
    pub disabled: bool,
    pub balance: u64,
    pub purchases: u64,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

/// Every account, by username.
pub async fn list_accounts(db: &AnyPool) -> Result<Vec<AccountLine>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT a.username, a.admin, a.disabled, a.balance, a.created_at,
                (SELECT COUNT(*) FROM purchases p WHERE p.account_id = a.id) AS purchases
         FROM accounts a ORDER BY a.username_key",
    )
    .fetch_all(db)
    .await?;
    let unsigned = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(rows
        .iter()
        .map(|r| AccountLine {
            username: r.get("username"),
            admin: crate::db::flag(r, "admin"),
            disabled: crate::db::flag(r, "disabled"),
            balance: unsigned(r.get("balance")),
            purchases: unsigned(r.get("purchases")),
            created_at: unsigned(r.get("created_at")),
        })
        .collect())
}

// ---- backup and restore ----

/// Opens the database of `data` for an operator command, or the one `url` names: it must
/// exist already (a command on a mistyped data dir must not create an empty one).
pub async fn open_existing(
    data: &Path,
    url: Option<&str>,
) -> Result<crate::db::Database, OpsError> {
    if let Some(url) = url {
        return crate::db::open_url(url).await.map_err(|e| match e {
            crate::db::OpenError::BadUrl(bad) => OpsError::BadInput(bad.to_string()),
            crate::db::OpenError::Database(e) => e.into(),
        });
    }
    let file = data.join(DB_FILE);
    if !file.is_file() {
        return Err(OpsError::BadInput(format!(
            "no tracker database at {}",
            file.display()
        )));
    }
    Ok(crate::db::open(data).await?)
}

/// Writes a consistent copy of the database to `file` while others may write to it
/// (`VACUUM INTO` reads one snapshot): first into `file.partial`, then renamed, so `file`
/// is always a whole backup. Refuses to replace an existing `file`; makes its folder if
/// missing. Returns its size.
pub async fn backup(db: &AnyPool, file: &Path) -> Result<u64, OpsError> {
    if file.exists() {
        return Err(OpsError::BadInput(format!(
            "{} exists already: name a new file",
            file.display()
        )));
    }
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let mut partial = file.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = fs::remove_file(&partial);
    let target = partial
        .to_str()
        .ok_or_else(|| OpsError::BadInput(format!("{} is not UTF-8", file.display())))?;
    let done = sqlx::query("VACUUM INTO $1").bind(target).execute(db).await;
    if let Err(e) = done {
        let _ = fs::remove_file(&partial);
        return Err(e.into());
    }
    File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io_error(&partial))?;
    fs::rename(&partial, file).map_err(io_error(file))?;
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = File::open(parent).and_then(|d| d.sync_all());
    }
    Ok(fs::metadata(file).map_err(io_error(file))?.len())
}

/// Checks that `file` is a whole tracker database: SQLite's integrity check passes and it
/// has the tracker's tables.
async fn check_backup(file: &Path) -> Result<(), OpsError> {
    use sqlx::ConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;
    let not_ours = |why: String| OpsError::BadInput(format!("{}: {why}", file.display()));
    if !file.is_file() {
        return Err(not_ours("no such file".into()));
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .connect()
        .await
        .map_err(|e| not_ours(e.to_string()))?;
    let check: Result<String, _> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await;
    match check {
        Ok(ok) if ok == "ok" => {}
        Ok(problem) => return Err(not_ours(format!("not a whole database: {problem}"))),
        Err(e) => return Err(not_ours(format!("not a tracker database: {e}"))),
    }
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'
         AND name IN ('accounts', 'purchases', '_sqlx_migrations')",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| not_ours(e.to_string()))?;
    if tables != 3 {
        return Err(not_ours("not a tracker database".into()));
    }
    Ok(())
}

/// What [`restore`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// Where the database it replaced was kept, if there was one.
    pub previous: Option<PathBuf>,
}

/// Makes `file` (a [`backup`]) the database of `data`, refusing while a serve holds the
/// data dir. The database it replaces is first backed up beside it as
/// `tracker.db.before-restore-<unix ms>`. The next `serve` migrates it if it is older.
pub async fn restore(data: &DataDir, file: &Path) -> Result<Restored, OpsError> {
    let _lock = ServeLock::take(data.root())?;
    check_backup(file).await?;
    let live = data.root().join(DB_FILE);
    let previous = if live.is_file() {
        let keep = data.root().join(format!(
            "{DB_FILE}.before-restore-{}",
            rivulet_node_core::clock::unix_ms()
        ));
        let db = crate::db::open(data.root()).await?;
        let kept = backup(&db.read, &keep).await;
        db.close().await;
        kept?;
        Some(keep)
    } else {
        None
    };
    let incoming = data.root().join(format!("{DB_FILE}.restoring"));
    fs::copy(file, &incoming).map_err(io_error(&incoming))?;
    File::open(&incoming)
        .and_then(|f| f.sync_all())
        .map_err(io_error(&incoming))?;
    // The old database's write-ahead log must not be replayed into the new one.
    for suffix in ["-wal", "-shm"] {
        let side = data.root().join(format!("{DB_FILE}{suffix}"));
        match fs::remove_file(&side) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(&side)(e)),
            _ => {}
        }
    }
    fs::rename(&incoming, &live).map_err(io_error(&live))?;
    let _ = File::open(data.root()).and_then(|d| d.sync_all());
    Ok(Restored { previous })
}

// ---- the transfers roll-up ----

/// Transfer rows older than this are summed into hourly rows (`transfer_hours`). The admin
/// load timeline reaches back one day at most, so it always reads 10-second rows.
pub const ROLL_UP_AFTER_SECS: i64 = 24 * 3600;
/// Hourly rows older than this are deleted.
pub const KEEP_SECS: i64 = 90 * 24 * 3600;
/// How often the roll-up runs in `serve`.
pub const ROLL_UP_EVERY: Duration = Duration::from_secs(600);
const HOUR: i64 = 3600;

/// What one [`roll_up_transfers`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RollUp {
    /// 10-second rows summed into hourly rows (and deleted).
    pub rolled: u64,
    /// Hours those rows fell in.
    pub hours: u64,
    /// Rows (of either table) deleted for being older than [`KEEP_SECS`].
    pub pruned: u64,
}

/// Rolls `transfers` rows older than a day (before `now`, Unix seconds) into hourly rows,
/// one hour per transaction, and deletes rows older than 90 days. The hourly rows keep the
/// reported and confirmed sums and the sum the views count (per 10-second row: confirmed
/// bytes where the receiver confirmed, the sender's report otherwise), so the flow views
/// read the same totals before and after.
pub async fn roll_up_transfers(db: &AnyPool, now: i64) -> Result<RollUp, sqlx::Error> {
    let mut done = RollUp::default();
    let oldest_kept = now - KEEP_SECS;
    for table in [
        "DELETE FROM transfers WHERE bucket < $1",
        "DELETE FROM transfer_hours WHERE hour < $1",
    ] {
        done.pruned += sqlx::query(table)
            .bind(oldest_kept)
            .execute(db)
            .await?
            .rows_affected();
    }
    let cutoff = (now - ROLL_UP_AFTER_SECS).div_euclid(HOUR) * HOUR;
    let ceiling = crate::nodes::BYTES_CEILING;
    let capped = |sum: &str| format!("CASE WHEN {sum} > {ceiling} THEN {ceiling} ELSE {sum} END");
    let added = |col: &str| {
        format!(
            "{col} = CASE WHEN transfer_hours.{col} > {ceiling} - excluded.{col} THEN {ceiling}
                     ELSE transfer_hours.{col} + excluded.{col} END"
        )
    };
    let insert = format!(
        "INSERT INTO transfer_hours (hour, from_node, from_kind, to_node, to_kind, video_id,
                                     reported_bytes, confirmed_bytes, bytes)
         SELECT $1, from_node, MAX(from_kind), to_node, MAX(to_kind), video_id, {}, {}, {}
         FROM transfers WHERE bucket >= $1 AND bucket < $2
         GROUP BY from_node, to_node, video_id
         ON CONFLICT (hour, from_node, to_node, video_id) DO UPDATE SET {}, {}, {}",
        capped("SUM(reported_bytes)"),
        capped("SUM(confirmed_bytes)"),
        capped("SUM(CASE WHEN confirmed_bytes > 0 THEN confirmed_bytes ELSE reported_bytes END)"),
        added("reported_bytes"),
        added("confirmed_bytes"),
        added("bytes"),
    );
    loop {
        let first: Option<i64> =
            sqlx::query_scalar("SELECT MIN(bucket) FROM transfers WHERE bucket < $1")
                .bind(cutoff)
                .fetch_one(db)
                .await?;
        let Some(first) = first else {
            return Ok(done);
        };
        let hour = first.div_euclid(HOUR) * HOUR;
        let mut tx = crate::db::begin_write(db).await?;
        sqlx::query(&insert)
            .bind(hour)
            .bind(hour + HOUR)
            .execute(&mut *tx)
            .await?;
        done.rolled += sqlx::query("DELETE FROM transfers WHERE bucket >= $1 AND bucket < $2")
            .bind(hour)
            .bind(hour + HOUR)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        done.hours += 1;
        // Heartbeat batches get the write connection between hours.
        tokio::task::yield_now().await;
    }
}

/// Runs [`roll_up_transfers`] every `every` (and once at start) until `stop` is cancelled.
pub async fn roll_up_periodically(
    db: AnyPool,
    every: Duration,
    stop: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut every = Every::new(every);
    while every.tick(&stop).await {
        let now = rivulet_node_core::clock::unix_secs() as i64;
        match roll_up_transfers(&db, now).await {
            Ok(done) if done != RollUp::default() => tracing::info!(
                rolled = done.rolled,
                hours = done.hours,
                pruned = done.pruned,
                "transfer rows rolled up"
            ),
            Ok(_) => {}
            Err(e) if !stop.is_cancelled() => tracing::warn!("rolling up transfer rows: {e}"),
            Err(_) => {}
        }
    }
    Ok(())
}
