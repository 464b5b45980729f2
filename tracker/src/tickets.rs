//! The tracker's ticket key (an Ed25519 seed in the data dir, made on first start, readable
//! by the owner only) and the rules for issuing FTP tickets.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rand::RngCore;
use rivulet_node_core::ticket::{TicketClaims, TicketSigner};
use sqlx::AnyPool;

use crate::accounts::{self, AccountError};
use crate::nodes::ORIGIN;
use crate::placement::Network;

/// The key file's name in the data dir.
pub const KEY_FILE: &str = "ticket.key";
/// How long a ticket lasts.
pub const TICKET_SECONDS: u64 = 10 * 60;

/// Loads the signing key from `data_dir`, creating it on first use.
pub fn load_or_create(data_dir: &Path) -> std::io::Result<TicketSigner> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let seed: [u8; 32] = bytes.try_into().map_err(|_| {
                std::io::Error::other(format!("{} is not a 32-byte key", path.display()))
            })?;
            Ok(TicketSigner::from_seed(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Written whole beside it, then linked into place: a crash never leaves a short
            // key, and of two first starts one key wins and both use it.
            let mut seed = [0u8; 32];
            rand::rng().fill_bytes(&mut seed);
            let temp = data_dir.join(format!("{KEY_FILE}.{}", std::process::id()));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)?;
            f.write_all(&seed)?;
            f.sync_all()?;
            let linked = std::fs::hard_link(&temp, &path);
            let _ = std::fs::remove_file(&temp);
            match linked {
                Ok(()) => Ok(TicketSigner::from_seed(&seed)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(data_dir),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Why a ticket was not issued.
#[derive(Debug, thiserror::Error)]
pub enum TicketRefusal {
    #[error("node {0:?} is not one of this account's live nodes")]
    NotYourNode(String),
    #[error("server {0:?} is neither the origin nor a live cache")]
    NoSuchServer(String),
    #[error("buy {0:?} first")]
    NotBought(String),
    #[error(
        "a cache placed with {0:?} fetches its indices from the origin; buy it to fetch from caches"
    )]
    PlacedFromOriginOnly(String),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Claims for a ticket, if the rules allow it: the holder is one of the caller's live nodes,
/// the server is the origin or a live cache, and the caller's account owns the movie (any
/// index), or the holder is a cache placed with it (its placed indices, from the origin).
pub async fn claims_for(
    db: &AnyPool,
    network: &Network,
    account_id: i64,
    holder: &str,
    server: &str,
    video: &str,
    now: u64,
) -> Result<TicketClaims, TicketRefusal> {
    sqlx::query("SELECT 1 FROM nodes WHERE id = $1 AND account_id = $2")
        .bind(holder)
        .bind(account_id)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| TicketRefusal::NotYourNode(holder.to_owned()))?;
    if server != ORIGIN {
        sqlx::query("SELECT 1 FROM nodes WHERE id = $1 AND kind = 'cache'")
            .bind(server)
            .fetch_optional(db)
            .await?
            .ok_or_else(|| TicketRefusal::NoSuchServer(server.to_owned()))?;
    }
    // Chunks 0..k of a movie are its bytes, so a holder's account must own the movie,
    // unless the holder is a cache that placement told to hold some of it: then it gets
    // those indices, from the origin, and nothing else.
    if accounts::owns(db, account_id, video).await? {
        return Ok(claims(holder, server, video, now, None));
    }
    match network.placed_indices(holder, video) {
        Some(indices) if server == ORIGIN => Ok(claims(holder, server, video, now, Some(indices))),
        Some(_) => Err(TicketRefusal::PlacedFromOriginOnly(video.to_owned())),
        None => Err(TicketRefusal::NotBought(video.to_owned())),
    }
}

/// A ticket's claims, from now for [`TICKET_SECONDS`], for `indices` (`None`: all).
pub fn claims(
    holder: &str,
    server: &str,
    video: &str,
    now: u64,
    indices: Option<Vec<u16>>,
) -> TicketClaims {
    TicketClaims {
        holder: holder.to_owned(),
        server: server.to_owned(),
        video: video.to_owned(),
        expires_at: now + TICKET_SECONDS,
        indices,
    }
}
