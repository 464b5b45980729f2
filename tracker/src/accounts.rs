//! Accounts: who may log in, with what password (Argon2id), what they own and what they
//! can spend; sessions as random tokens stored only as hashes; purchases debited once.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use rivulet_tracker_client::Account;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};
use thiserror::Error;

/// Shortest and longest username, in characters.
pub const USERNAME_CHARS: std::ops::RangeInclusive<usize> = 3..=32;
/// Shortest and longest password, in characters.
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=256;
/// How long a session lasts.
pub const SESSION_SECONDS: i64 = 7 * 24 * 3600;

/// Why an account operation was refused.
#[derive(Debug, Error)]
pub enum AccountError {
    #[error("username must be 3–32 letters, digits, '.', '-' or '_'")]
    BadUsername,
    #[error("password must be 8–256 characters and mix letters with digits or symbols")]
    WeakPassword,
    #[error("password must not contain the username")]
    PasswordHasUsername,
    #[error("username {0:?} is taken")]
    UsernameTaken(String),
    #[error("wrong username or password")]
    BadCredentials,
    #[error("no account named {0:?}")]
    NoSuchAccount(String),
    #[error("the account {0:?} is disabled; ask the tracker's operator")]
    Disabled(String),
    #[error("{0}")]
    Hash(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Checks a username's form.
pub fn check_username(name: &str) -> Result<(), AccountError> {
    let chars = name.chars().count();
    let ok = USERNAME_CHARS.contains(&chars)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::BadUsername)
    }
}

/// Checks a password's strength: long enough, more than one kind of character, not the
/// username.
pub fn check_password(username: &str, password: &str) -> Result<(), AccountError> {
    let chars = password.chars().count();
    let letters = password.chars().any(char::is_alphabetic);
    let others = password.chars().any(|c| !c.is_alphabetic());
    if !(PASSWORD_CHARS.contains(&chars) && letters && others) {
        return Err(AccountError::WeakPassword);
    }
    if password.to_lowercase().contains(&username.to_lowercase()) {
        return Err(AccountError::PasswordHasUsername);
    }
    Ok(())
}

/// At most this many Argon2 computations (19 MiB each) run at once; the rest queue.
static ARGON2_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// [`hash_password`] off the async threads, within the shared limit of Argon2 work.
pub async fn hash_password_async(password: String) -> Result<String, AccountError> {
    let _slot = ARGON2_SLOTS
        .acquire()
        .await
        .map_err(|e| AccountError::Hash(e.to_string()))?;
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AccountError::Hash(e.to_string()))?
}

/// Argon2id hash of `password` in PHC string form; slow on purpose, so run it off the async
/// threads.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AccountError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

fn password_matches(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A new random session token (64 hex characters) and the hash stored for it.
fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

/// What is stored for a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// An account's id and role, as a request's session proves them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub account_id: i64,
    pub admin: bool,
}

/// Creates an account. The password must already be checked.
pub async fn create(
    db: &AnyPool,
    username: &str,
    password_hash: &str,
    admin: bool,
    balance: u64,
) -> Result<i64, AccountError> {
    let result = sqlx::query_scalar(
        "INSERT INTO accounts (username, username_key, password_hash, admin, balance, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(username)
    .bind(username.to_lowercase())
    .bind(password_hash)
    .bind(i64::from(admin))
    .bind(i64::try_from(balance).unwrap_or(i64::MAX))
    .bind(now())
    .fetch_one(db)
    .await;
    match result {
        Ok(id) => Ok(id),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(AccountError::UsernameTaken(username.to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Checks a username and password; returns the account id. A missing account costs the
/// same hashing time as a wrong password, so timing does not tell which names exist.
pub async fn verify_login(
    db: &AnyPool,
    username: &str,
    password: &str,
) -> Result<i64, AccountError> {
    let row =
        sqlx::query("SELECT id, password_hash, disabled FROM accounts WHERE username_key = $1")
            .bind(username.to_lowercase())
            .fetch_optional(db)
            .await?;
    let (id, phc, disabled) = match row {
        Some(row) => (
            Some(row.get::<i64, _>("id")),
            row.get::<String, _>("password_hash"),
            // Read strictly: an unreadable flag must not let a disabled account in.
            row.try_get::<i64, _>("disabled")? != 0,
        ),
        None => (None, dummy_hash(), false),
    };
    let password = password.to_owned();
    let ok = {
        let _slot = ARGON2_SLOTS
            .acquire()
            .await
            .map_err(|e| AccountError::Hash(e.to_string()))?;
        tokio::task::spawn_blocking(move || password_matches(&password, &phc))
            .await
            .unwrap_or(false)
    };
    // Only the right password learns that the account is disabled.
    match (id, ok) {
        (Some(_), true) if disabled => Err(AccountError::Disabled(username.to_owned())),
        (Some(id), true) => Ok(id),
        _ => Err(AccountError::BadCredentials),
    }
}

/// An Argon2id hash of a password nobody knows, checked against when the account is
/// missing.
fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| {
            let mut secret = [0u8; 32];
            rand::rng().fill_bytes(&mut secret);
            hash_password(&hex::encode(secret)).unwrap_or_default()
        })
        .clone()
}

/// Starts a session for `account_id`; returns the token and its expiry.
pub async fn start_session(db: &AnyPool, account_id: i64) -> Result<(String, i64), AccountError> {
    let (token, hash) = new_token();
    let expires_at = now() + SESSION_SECONDS;
    sqlx::query("INSERT INTO sessions (token_hash, account_id, expires_at) VALUES ($1, $2, $3)")
        .bind(hash)
        .bind(account_id)
        .bind(expires_at)
        .execute(db)
        .await?;
    // Old sessions are swept on the way.
    sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now())
        .execute(db)
        .await?;
    Ok((token, expires_at))
}

/// Disables or enables the account `username` (any case). Disabling ends its sessions in
/// the same transaction; a disabled account's log-ins are refused ([`verify_login`]).
pub async fn set_disabled(
    db: &AnyPool,
    username: &str,
    disabled: bool,
) -> Result<(), AccountError> {
    let mut tx = crate::db::begin_write(db).await?;
    let id: Option<i64> = sqlx::query_scalar(
        "UPDATE accounts SET disabled = $1 WHERE username_key = $2 RETURNING id",
    )
    .bind(i64::from(disabled))
    .bind(username.to_lowercase())
    .fetch_optional(&mut *tx)
    .await?;
    let id = id.ok_or_else(|| AccountError::NoSuchAccount(username.to_owned()))?;
    if disabled {
        sqlx::query("DELETE FROM sessions WHERE account_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The account whose live session has token hash `hash`, and when that session expires.
pub async fn session_by_hash(
    db: &AnyPool,
    hash: &str,
) -> Result<Option<(Caller, i64)>, AccountError> {
    let row = sqlx::query(
        "SELECT a.id, a.admin, s.expires_at FROM sessions s JOIN accounts a ON a.id = s.account_id
         WHERE s.token_hash = $1 AND s.expires_at > $2 AND a.disabled = 0",
    )
    .bind(hash)
    .bind(now())
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| {
        (
            Caller {
                account_id: r.get("id"),
                admin: crate::db::flag(&r, "admin"),
            },
            r.get("expires_at"),
        )
    }))
}

/// Ends the session of `token`.
pub async fn end_session(db: &AnyPool, token: &str) -> Result<(), AccountError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash(token))
        .execute(db)
        .await?;
    Ok(())
}

/// An account as its owner sees it.
pub async fn account(db: &AnyPool, account_id: i64) -> Result<Account, AccountError> {
    let row = sqlx::query(
        "SELECT username, admin, balance, uploaded_bytes, credited_bytes FROM accounts WHERE id = $1",
    )
    .bind(account_id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| AccountError::NoSuchAccount(account_id.to_string()))?;
    let ids = |table: &'static str| async move {
        sqlx::query(&format!(
            "SELECT video_id FROM {table} WHERE account_id = $1 ORDER BY video_id"
        ))
        .bind(account_id)
        .fetch_all(db)
        .await
        .map(|rows| {
            rows.iter()
                .map(|r| r.get::<String, _>("video_id"))
                .collect::<Vec<_>>()
        })
    };
    let unsigned = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(Account {
        username: row.get("username"),
        admin: crate::db::flag(&row, "admin"),
        balance: unsigned(row.get("balance")),
        uploaded_bytes: unsigned(row.get("uploaded_bytes")),
        credited_bytes: unsigned(row.get("credited_bytes")),
        bought: ids("purchases").await?,
        watched: ids("watched").await?,
    })
}

/// Whether the account owns the movie.
pub async fn owns(db: &AnyPool, account_id: i64, video_id: &str) -> Result<bool, AccountError> {
    Ok(
        sqlx::query("SELECT 1 FROM purchases WHERE account_id = $1 AND video_id = $2")
            .bind(account_id)
            .bind(video_id)
            .fetch_optional(db)
            .await?
            .is_some(),
    )
}

/// The outcome of [`buy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuyOutcome {
    /// Paid `charged` points; `balance` left.
    Bought { charged: u64, balance: u64 },
    /// Owned already; nothing taken.
    AlreadyOwned { balance: u64 },
    /// Costs more than the balance.
    TooExpensive { balance: u64 },
}

/// Buys `video_id` at `price` in one transaction: the purchase row is written first (taking
/// the write lock), so concurrent purchases of one movie by one account charge exactly once.
pub async fn buy(
    db: &AnyPool,
    account_id: i64,
    video_id: &str,
    price: u64,
) -> Result<BuyOutcome, AccountError> {
    let price = i64::try_from(price).unwrap_or(i64::MAX);
    let mut tx = crate::db::begin_write(db).await?;
    let inserted = sqlx::query(
        "INSERT INTO purchases (account_id, video_id, price, bought_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (account_id, video_id) DO NOTHING",
    )
    .bind(account_id)
    .bind(video_id)
    .bind(price)
    .bind(now())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let charged = if inserted == 1 {
        sqlx::query("UPDATE accounts SET balance = balance - $1 WHERE id = $2 AND balance >= $1")
            .bind(price)
            .bind(account_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
    } else {
        0
    };
    let balance: i64 = sqlx::query("SELECT balance FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_one(&mut *tx)
        .await?
        .get("balance");
    let balance = u64::try_from(balance).unwrap_or(0);
    if inserted == 1 && charged == 0 {
        tx.rollback().await?;
        return Ok(BuyOutcome::TooExpensive { balance });
    }
    tx.commit().await?;
    Ok(if inserted == 1 {
        BuyOutcome::Bought {
            charged: u64::try_from(price).unwrap_or(0),
            balance,
        }
    } else {
        BuyOutcome::AlreadyOwned { balance }
    })
}

/// The clock in the unit of the accounts tables: seconds since the Unix epoch.
/// Now in unix seconds, as sessions count time.
pub(crate) fn now() -> i64 {
    rivulet_node_core::clock::unix_secs() as i64
}
