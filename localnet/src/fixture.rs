//! Ready-made layers of a local network, each in its own temporary folder, for tests that
//! need no more than that: a tracker alone, with accounts, with movies, with caches.

use crate::{LocalNetError, LocalNetwork, MovieSpec};

/// A tracker with its origin and an empty catalogue.
pub async fn tracker() -> Result<LocalNetwork, LocalNetError> {
    LocalNetwork::temp().start().await
}

/// A tracker with the accounts `names`, all with `password`.
pub async fn with_accounts(names: &[&str], password: &str) -> Result<LocalNetwork, LocalNetError> {
    names
        .iter()
        .fold(LocalNetwork::temp(), |b, name| b.account(*name, password))
        .start()
        .await
}

/// A tracker serving `movies`.
pub async fn with_movies(movies: &[MovieSpec]) -> Result<LocalNetwork, LocalNetError> {
    LocalNetwork::temp()
        .movies(movies.iter().cloned())
        .start()
        .await
}

/// A tracker serving `movies` with `caches` running caches (accounts `cache-1`… with
/// [`crate::CACHE_PASSWORD`]).
pub async fn with_caches(
    movies: &[MovieSpec],
    caches: usize,
) -> Result<LocalNetwork, LocalNetError> {
    LocalNetwork::temp()
        .movies(movies.iter().cloned())
        .caches(caches)
        .start()
        .await
}
