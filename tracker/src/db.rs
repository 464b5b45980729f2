//! The tracker's database: by default one SQLite file in the data dir (WAL, foreign keys, a
//! busy timeout so concurrent writers queue instead of failing), or a PostgreSQL server
//! named by `--database postgres://…` that several trackers can share. One code path for
//! both, through sqlx's `Any` driver: queries are plain SQL with `$n` parameters that both
//! engines run alike, and the schema comes from embedded migrations kept in step per engine
//! (`migrations/sqlite`, `migrations/postgres`: the same files, each in its engine's types).

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor, Transaction};

/// The database file's name in the data dir.
pub const DB_FILE: &str = "tracker.db";

/// How long a connect to the database may take before the command fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections a tracker keeps to a PostgreSQL server.
const POSTGRES_CONNECTIONS: u32 = 16;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which engine holds the tracker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The engine a database URL names: `sqlite:…`, or `postgres://…` / `postgresql://…`.
    pub fn of_url(url: &str) -> Result<Engine, BadUrl> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme {
            "sqlite" => Ok(Engine::Sqlite),
            "postgres" | "postgresql" => Ok(Engine::Postgres),
            // Only the scheme is repeated: the rest of a URL may hold a password.
            _ => Err(BadUrl(scheme.chars().take(20).collect())),
        }
    }

    /// The engine behind `pool`.
    pub fn of_pool(pool: &AnyPool) -> Engine {
        match pool.connect_options().database_url.scheme() {
            "sqlite" => Engine::Sqlite,
            _ => Engine::Postgres,
        }
    }
}

/// A `--database` value that names no engine the tracker runs on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unsupported database URL (scheme {0:?}): give sqlite://FILE or postgres://USER@HOST/NAME")]
pub struct BadUrl(pub String);

/// The database as two pools. On SQLite they are over one file: readers run side by side
/// (WAL), and every write goes through one connection, so writers queue in the process
/// instead of sleeping in SQLite's busy handler. On PostgreSQL both are one pool.
#[derive(Clone, Debug)]
pub struct Database {
    pub read: AnyPool,
    pub write: AnyPool,
    pub engine: Engine,
}

impl Database {
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Opens (creating if needed) the SQLite database in `data_dir` and brings its schema up to
/// date.
pub async fn open(data_dir: &Path) -> Result<Database, sqlx::Error> {
    let url = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join(DB_FILE))
        .create_if_missing(true)
        .to_url_lossy();
    connect(AnyConnectOptions::from_url(&url)?, Engine::Sqlite).await
}

/// Opens the database `url` names (see [`Engine::of_url`]) and brings its schema up to
/// date. A SQLite file is created if missing; a PostgreSQL database must exist.
pub async fn open_url(url: &str) -> Result<Database, OpenError> {
    let engine = Engine::of_url(url)?;
    let options: AnyConnectOptions = url.parse().map_err(OpenError::Database)?;
    Ok(connect(options, engine).await?)
}

/// Opens the database `url` names, or without one the data dir's SQLite file.
pub async fn open_configured(url: Option<&str>, data_dir: &Path) -> Result<Database, OpenError> {
    match url {
        Some(url) => open_url(url).await,
        None => Ok(open(data_dir).await?),
    }
}

/// Why [`open_url`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    BadUrl(#[from] BadUrl),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

async fn connect(options: AnyConnectOptions, engine: Engine) -> Result<Database, sqlx::Error> {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(sqlx::any::install_default_drivers);
    let options = options.disable_statement_logging();
    match engine {
        Engine::Sqlite => {
            let pool = |connections| {
                AnyPoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                            )
                            .await
                            .map(|_| ())
                        })
                    })
            };
            let write = pool(1).connect_with(options.clone()).await?;
            SQLITE_MIGRATIONS.run(&write).await?;
            let read = pool(4).connect_with(options).await?;
            Ok(Database {
                read,
                write,
                engine,
            })
        }
        Engine::Postgres => {
            let pool = AnyPoolOptions::new()
                .max_connections(POSTGRES_CONNECTIONS)
                .acquire_timeout(CONNECT_TIMEOUT)
                .connect_with(options)
                .await?;
            // Several trackers may start at once: the migrator takes PostgreSQL's advisory
            // lock, so one migrates and the others wait for it.
            POSTGRES_MIGRATIONS.run(&pool).await?;
            Ok(Database {
                read: pool.clone(),
                write: pool,
                engine,
            })
        }
    }
}

/// The engine behind the connection `conn`.
pub fn engine_of(conn: &sqlx::AnyConnection) -> Engine {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        Engine::Sqlite
    } else {
        Engine::Postgres
    }
}

/// Whether PostgreSQL aborted a transaction that may simply be tried again: it was chosen
/// to break a deadlock (40P01) or lost a serialization conflict (40001).
pub fn is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(e) => matches!(e.code().as_deref(), Some("40P01" | "40001")),
        _ => false,
    }
}

/// Begins a transaction that writes. On SQLite it takes the write lock at once (`BEGIN
/// IMMEDIATE`), so a transaction that reads before it writes cannot fail to upgrade when an
/// operator command writes beside `serve`; PostgreSQL locks the rows it updates.
pub async fn begin_write(pool: &AnyPool) -> Result<Transaction<'static, sqlx::Any>, sqlx::Error> {
    match Engine::of_pool(pool) {
        Engine::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Engine::Postgres => pool.begin().await,
    }
}

/// A query built piece by piece, with `$n` placeholders for its binds, which both engines
/// read. (sqlx's `QueryBuilder` writes `?` for the `Any` driver, which PostgreSQL refuses.)
/// The calls mirror `QueryBuilder`'s.
pub struct Sql<'q> {
    sql: String,
    args: sqlx::any::AnyArguments<'q>,
    binds: usize,
}

impl<'q> Sql<'q> {
    pub fn new(init: impl Into<String>) -> Sql<'q> {
        Sql {
            sql: init.into(),
            args: sqlx::any::AnyArguments::default(),
            binds: 0,
        }
    }

    /// Appends SQL text.
    pub fn push(&mut self, sql: impl std::fmt::Display) -> &mut Self {
        use std::fmt::Write;
        let _ = write!(self.sql, "{sql}");
        self
    }

    /// Appends a placeholder and binds `value` to it.
    pub fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'q + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        use sqlx::Arguments;
        self.binds += 1;
        let placeholder = format!("${}", self.binds);
        self.push(placeholder);
        // Encoding into the Any driver's buffer only copies the value: it cannot fail.
        let _ = self.args.add(value);
        self
    }

    /// A list whose items [`Separated::push`] and [`Separated::push_bind`] separate with
    /// `separator`.
    pub fn separated(&mut self, separator: &'static str) -> Separated<'_, 'q> {
        Separated {
            sql: self,
            separator,
            first: true,
        }
    }

    /// Appends `VALUES (…), (…)`: one parenthesised row per item, its columns written by
    /// `row`.
    pub fn push_values<I, F>(&mut self, items: I, mut row: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(Separated<'_, 'q>, I::Item),
    {
        self.push("VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push("(");
            row(self.separated(", "), item);
            self.push(")");
        }
        self
    }

    /// The query, ready to run.
    pub fn build(&mut self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        sqlx::query_with(&self.sql, std::mem::take(&mut self.args))
    }
}

impl std::fmt::Debug for Sql<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sql")
            .field("sql", &self.sql)
            .field("binds", &self.binds)
            .finish()
    }
}

/// A list being written into a [`Sql`]: see [`Sql::separated`].
#[derive(Debug)]
pub struct Separated<'b, 'q> {
    sql: &'b mut Sql<'q>,
    separator: &'static str,
    first: bool,
}

impl<'q> Separated<'_, 'q> {
    fn separate(&mut self) {
        if !self.first {
            self.sql.push(self.separator);
        }
        self.first = false;
    }

    /// Appends the separator (unless first) and SQL text.
    pub fn push(&mut self, sql: impl std::fmt::Display) -> &mut Self {
        self.separate();
        self.sql.push(sql);
        self
    }

    /// Appends SQL text with no separator.
    pub fn push_unseparated(&mut self, sql: impl std::fmt::Display) -> &mut Self {
        self.sql.push(sql);
        self
    }

    /// Appends a bound value with no separator.
    pub fn push_bind_unseparated<T>(&mut self, value: T) -> &mut Self
    where
        T: 'q + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        self.sql.push_bind(value);
        self
    }

    /// Appends the separator (unless first) and a bound value.
    pub fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'q + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        self.separate();
        self.sql.push_bind(value);
        self
    }
}

/// A 0/1 flag column (both engines keep booleans as integers) as a `bool`; false when it
/// cannot be read, so use it only where false is the safe answer (e.g. `admin`).
pub fn flag(row: &sqlx::any::AnyRow, column: &str) -> bool {
    use sqlx::Row;
    row.try_get::<i64, _>(column).is_ok_and(|v| v != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_queries_number_their_placeholders() {
        let mut q = Sql::new("INSERT INTO t (a, b) ");
        q.push_values([(1_i64, "x"), (2, "y")], |mut row, (a, b)| {
            row.push_bind(a).push_bind(b);
        });
        q.push(" WHERE c IN (");
        let mut list = q.separated(", ");
        list.push_bind(3_i64).push("4").push_unseparated("!");
        q.push(")");
        assert_eq!(
            q.sql,
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) WHERE c IN ($5, 4!)"
        );
    }

    #[test]
    fn urls_name_their_engine_or_are_refused() {
        assert_eq!(Engine::of_url("sqlite:///var/x.db"), Ok(Engine::Sqlite));
        assert_eq!(Engine::of_url("sqlite:x.db"), Ok(Engine::Sqlite));
        assert_eq!(Engine::of_url("postgres://u@h/db"), Ok(Engine::Postgres));
        assert_eq!(Engine::of_url("postgresql://u@h/db"), Ok(Engine::Postgres));
        for bad in ["mysql://u@h/db", "", "/var/lib/tracker.db", "postgres"] {
            let err = Engine::of_url(bad).unwrap_err().to_string();
            assert!(err.contains("sqlite://FILE or postgres://"), "{bad}: {err}");
        }
        let err = Engine::of_url("mysql://root:hunter2@db/x")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "the password is repeated: {err}");
    }

    #[test]
    fn both_engines_have_the_same_migrations() {
        let names = |m: &Migrator| {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&SQLITE_MIGRATIONS), names(&POSTGRES_MIGRATIONS));
        assert!(SQLITE_MIGRATIONS.iter().count() >= 6);
    }
}
