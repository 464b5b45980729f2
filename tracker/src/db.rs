//! The tracker's database: one SQLite file in the data dir (WAL, foreign keys, a busy
//! timeout so concurrent writers queue instead of failing), schema from the embedded
//! migrations. Queries are plain SQL with `$n` parameters so the same code can move to
//! PostgreSQL.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The database file's name in the data dir.
pub const DB_FILE: &str = "tracker.db";

/// The database as two pools over one file: readers run side by side (WAL), and every write
/// goes through one connection, so writers queue in the process instead of sleeping in
/// SQLite's busy handler.
#[derive(Clone, Debug)]
pub struct Database {
    pub read: SqlitePool,
    pub write: SqlitePool,
}

impl Database {
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Opens (creating if needed) the database in `data_dir` and brings its schema up to date.
pub async fn open(data_dir: &Path) -> Result<Database, sqlx::Error> {
    let url = format!("sqlite://{}", data_dir.join(DB_FILE).display());
    let options = SqliteConnectOptions::from_str(&url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await?;
    sqlx::migrate!("./migrations").run(&write).await?;
    let read = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    Ok(Database { read, write })
}
