//! Sessions as requests see them: whose a bearer token is, remembered for a few seconds so
//! that a node's heartbeats do not each cost a database read.
//!
//! A session ended through this process (log-out, a page's log-out) is forgotten at once;
//! one ended elsewhere (`rivulet-tracker disable` in another process, another tracker on the
//! same database) or an account made admin there is seen here within the recheck time
//! (`serve --session-recheck`, [`DEFAULT_RECHECK`]; 0 reads the database on every request).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::AnyPool;

use crate::accounts::{self, AccountError, Caller};

/// How long a looked-up session is trusted without asking the database again, unless the
/// operator says otherwise.
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(15);
/// Most sessions remembered; past it, stale ones are dropped, then all.
const MAX_REMEMBERED: usize = 100_000;

struct Remembered {
    caller: Caller,
    /// When the session itself expires (unix seconds).
    expires_at: i64,
    looked_up: Instant,
}

/// Recently checked sessions by token hash.
pub struct SessionCache {
    by_hash: Mutex<HashMap<String, Remembered>>,
    recheck: Duration,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache").finish_non_exhaustive()
    }
}

impl SessionCache {
    /// A cache that trusts a looked-up session for `recheck` (zero: never).
    pub fn new(recheck: Duration) -> SessionCache {
        SessionCache {
            by_hash: Mutex::default(),
            recheck,
        }
    }

    /// The account whose live session `token` is, if any.
    pub async fn caller(&self, db: &AnyPool, token: &str) -> Result<Option<Caller>, AccountError> {
        let hash = accounts::token_hash(token);
        let now = accounts::now();
        if let Some(r) = self.lock().get(&hash)
            && r.looked_up.elapsed() < self.recheck
            && r.expires_at > now
        {
            return Ok(Some(r.caller));
        }
        let found = accounts::session_by_hash(db, &hash).await?;
        let mut map = self.lock();
        match found {
            Some((caller, _)) if self.recheck.is_zero() => Ok(Some(caller)),
            Some((caller, expires_at)) => {
                if map.len() >= MAX_REMEMBERED {
                    map.retain(|_, r| r.looked_up.elapsed() < self.recheck);
                    if map.len() >= MAX_REMEMBERED {
                        map.clear();
                    }
                }
                map.insert(
                    hash,
                    Remembered {
                        caller,
                        expires_at,
                        looked_up: Instant::now(),
                    },
                );
                Ok(Some(caller))
            }
            None => {
                map.remove(&hash);
                Ok(None)
            }
        }
    }

    /// Ends the session `token` in the database and here.
    pub async fn end(&self, db: &AnyPool, token: &str) -> Result<(), AccountError> {
        self.lock().remove(&accounts::token_hash(token));
        accounts::end_session(db, token).await
    }

    /// Forgets every remembered session.
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Remembered>> {
        // The map holds no invariant a panicking holder could break.
        self.by_hash.lock().unwrap_or_else(|e| e.into_inner())
    }
}
