//! Which of the trackers sharing one database leads: exactly one runs placement, node
//! expiry and the transfer roll-up at a time. On PostgreSQL the leader holds a session-level
//! advisory lock on a connection of its own (the lease); the others try for it every
//! [`RETRY_EVERY`], so when the holder dies (its connection closes and PostgreSQL frees the
//! lock) another takes over within a few seconds. Every tracker also holds a shared lock
//! for as long as it lives, so a starting tracker can tell whether it is the only one
//! alive. On SQLite the single process always leads.

use std::future::Future;
use std::time::Duration;

use sqlx::{AnyConnection, ConnectOptions, Connection, Row};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::db::{Database, Engine};
use crate::nodes::{self, NodeError};

/// The advisory lock the leader holds (exclusive).
pub const LEAD_KEY: i64 = 0x5256_4c54_0000_0001;
/// The advisory lock every live tracker holds shared.
pub const LIVE_KEY: i64 = 0x5256_4c54_0000_0002;
/// How often a follower tries for the lease, and the leader checks its connection.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How long one statement on the lease connection may take before it counts as lost.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a starting tracker waits for its shared lock (held off only while the leader
/// checks that it is alone).
const LIVE_WAIT: Duration = Duration::from_secs(10);

/// Whether this tracker leads now, and a way to wait for that to change. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Leadership {
    leading: std::sync::Arc<watch::Sender<bool>>,
}

impl Leadership {
    fn new(leading: bool) -> Leadership {
        Leadership {
            leading: std::sync::Arc::new(watch::Sender::new(leading)),
        }
    }

    /// Whether this tracker holds the lease now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    fn set(&self, leading: bool) {
        self.leading.send_if_modified(|now| {
            let changed = *now != leading;
            *now = leading;
            changed
        });
    }

    /// Runs `work` while this tracker leads, until `stop` is cancelled: started with a
    /// token of its own each time it takes the lease, which is cancelled when it loses it.
    pub async fn while_leading<W, F>(
        self,
        stop: CancellationToken,
        mut work: W,
    ) -> Result<(), std::convert::Infallible>
    where
        W: FnMut(CancellationToken) -> F,
        F: Future<Output = Result<(), std::convert::Infallible>>,
    {
        let mut changes = self.leading.subscribe();
        loop {
            tokio::select! {
                () = until(&mut changes, true) => {}
                () = stop.cancelled() => return Ok(()),
            }
            let lost = stop.child_token();
            let run = work(lost.clone());
            tokio::pin!(run);
            tokio::select! {
                _ = &mut run => return Ok(()),
                () = until(&mut changes, false) => {
                    tracing::info!("no longer leading: leader work stops");
                    lost.cancel();
                    let _ = run.await;
                }
            }
        }
    }
}

/// Waits until `changes` says `want` (forever if its sender is gone, which a
/// [`Leadership`] never lets happen while it is alive).
async fn until(changes: &mut watch::Receiver<bool>, want: bool) {
    loop {
        if *changes.borrow_and_update() == want {
            return;
        }
        if changes.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// This tracker's lease: the connection its advisory locks live on (PostgreSQL).
#[derive(Debug)]
pub struct Lease {
    leadership: Leadership,
    /// `None` on SQLite, where the process always leads.
    postgres: Option<PgLease>,
}

#[derive(Debug)]
struct PgLease {
    options: sqlx::any::AnyConnectOptions,
    conn: Option<AnyConnection>,
}

async fn timed<T>(
    what: &str,
    fut: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(sqlx::Error::Protocol(format!(
            "{what} took longer than {STATEMENT_TIMEOUT:?}"
        ))),
    }
}

async fn try_lock(conn: &mut AnyConnection, sql: &str, key: i64) -> Result<bool, sqlx::Error> {
    let row = timed(sql, sqlx::query(sql).bind(key).fetch_one(&mut *conn)).await?;
    row.try_get::<bool, _>(0)
}

impl Lease {
    /// Opens the lease and makes the first try for it, before the tracker serves: on
    /// PostgreSQL, connects, takes the shared "alive" lock and tries the leader's lock. A
    /// tracker that leads with no other tracker alive (always so on SQLite) forgets the
    /// nodes a previous run left ([`nodes::forget_all`]): nothing is known to be alive
    /// after a restart, and nodes learn it from their next heartbeat and register again.
    /// With another tracker alive the registry is theirs too and is left alone; silent nodes
    /// go by age ([`nodes::expire`]).
    pub async fn take(db: &Database) -> Result<Lease, NodeError> {
        if db.engine == Engine::Sqlite {
            nodes::forget_all(&db.write).await?;
            return Ok(Lease {
                leadership: Leadership::new(true),
                postgres: None,
            });
        }
        let options = (*db.write.connect_options()).clone();
        let mut conn = timed("connecting for the lease", options.connect()).await?;
        take_alive(&mut conn).await?;
        let leading = try_lock(&mut conn, "SELECT pg_try_advisory_lock($1)", LEAD_KEY).await?;
        if leading {
            // Exclusive "alive" beside our own shared hold: granted only if no other
            // tracker holds it shared. Others wait for it before they serve.
            let alone = try_lock(&mut conn, "SELECT pg_try_advisory_lock($1)", LIVE_KEY).await?;
            if alone {
                let forgot = nodes::forget_all(&db.write).await;
                try_lock(&mut conn, "SELECT pg_advisory_unlock($1)", LIVE_KEY).await?;
                forgot?;
                tracing::info!("leading, the only tracker alive: stale nodes forgotten");
            } else {
                tracing::info!("leading; other trackers alive: their nodes are kept");
            }
        } else {
            tracing::info!("following: another tracker leads");
        }
        Ok(Lease {
            leadership: Leadership::new(leading),
            postgres: Some(PgLease {
                options,
                conn: Some(conn),
            }),
        })
    }

    /// Whether this tracker leads, now and later.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    /// Keeps the lease until `stop` is cancelled: a follower tries for the leader's lock
    /// every [`RETRY_EVERY`]; the leader checks its connection as often and stops leading
    /// when it is lost (reconnecting, it follows until it wins the lock again). On stop the
    /// locks are released and the connection closed.
    pub async fn run(self, stop: CancellationToken) -> Result<(), std::convert::Infallible> {
        let Lease {
            leadership,
            postgres,
        } = self;
        let Some(mut pg) = postgres else {
            stop.cancelled().await;
            return Ok(());
        };
        let mut every = rivulet_node_core::task::Every::new(RETRY_EVERY);
        while every.tick(&stop).await {
            let leading = leadership.is_leader();
            match pg.renew(leading).await {
                Ok(now) => {
                    if now && !leading {
                        tracing::info!("took the lease: this tracker now leads");
                    }
                    leadership.set(now);
                }
                Err(e) => {
                    if !stop.is_cancelled() {
                        tracing::warn!(leading, "the lease's connection: {e}");
                    }
                    pg.conn = None;
                    leadership.set(false);
                }
            }
        }
        leadership.set(false);
        if let Some(mut conn) = pg.conn.take() {
            // Closing the session frees its locks; unlocking first says so at once.
            let _ = timed("unlocking", async {
                sqlx::query("SELECT pg_advisory_unlock_all()")
                    .execute(&mut conn)
                    .await
            })
            .await;
            let _ = timed("closing the lease", conn.close()).await;
        }
        Ok(())
    }
}

/// Takes the shared "alive" lock on `conn`, waiting while a leader checks it is alone.
async fn take_alive(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    let deadline = tokio::time::Instant::now() + LIVE_WAIT;
    loop {
        if try_lock(conn, "SELECT pg_try_advisory_lock_shared($1)", LIVE_KEY).await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(sqlx::Error::Protocol(format!(
                "the trackers' shared lock was not granted within {LIVE_WAIT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl PgLease {
    /// One renewal: whether this tracker leads after it.
    async fn renew(&mut self, leading: bool) -> Result<bool, sqlx::Error> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let mut conn = timed("connecting for the lease", self.options.connect()).await?;
                take_alive(&mut conn).await?;
                self.conn.insert(conn)
            }
        };
        if leading {
            // The lock lives as long as the session: a live connection is a held lease.
            timed(
                "checking the lease",
                sqlx::query("SELECT 1").execute(&mut *conn),
            )
            .await?;
            return Ok(true);
        }
        try_lock(conn, "SELECT pg_try_advisory_lock($1)", LEAD_KEY).await
    }
}
