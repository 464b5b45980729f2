//! Settings an operator may change while the tracker runs: the points rate and the points a
//! new account starts with. Read on every use, so a change applies to the next heartbeat
//! batch and the next sign-up. `rivulet-tracker settings set` stores them in the `settings`
//! table; `serve` applies the stored values at start (over its flags and config file) and
//! every [`RELOAD_EVERY`] while it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rivulet_node_core::task::Every;
use sqlx::AnyPool;
use tokio_util::sync::CancellationToken;

/// How often a running `serve` reads the stored settings again.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// The most bytes a point may cost (1 TB).
pub const MAX_BYTES_PER_POINT: u64 = 1_000_000_000_000;

/// The live settings, shared by the API, the web app and the heartbeat writer.
#[derive(Debug)]
pub struct Settings {
    signup_points: AtomicU64,
    bytes_per_point: AtomicU64,
}

impl Settings {
    /// Settings starting at these values (`bytes_per_point` at least 1).
    pub fn new(signup_points: u64, bytes_per_point: u64) -> Settings {
        Settings {
            signup_points: AtomicU64::new(signup_points),
            bytes_per_point: AtomicU64::new(bytes_per_point.max(1)),
        }
    }

    /// Points a new account starts with.
    pub fn signup_points(&self) -> u64 {
        self.signup_points.load(Ordering::Relaxed)
    }

    /// Credited bytes per point earned.
    pub fn bytes_per_point(&self) -> u64 {
        self.bytes_per_point.load(Ordering::Relaxed)
    }

    /// Changes the points a new account starts with.
    pub fn set_signup_points(&self, points: u64) {
        self.signup_points.store(points, Ordering::Relaxed);
    }

    /// Changes the points rate (at least 1 byte per point).
    pub fn set_bytes_per_point(&self, bytes: u64) {
        self.bytes_per_point.store(bytes.max(1), Ordering::Relaxed);
    }

    /// Takes every stored value (values out of range, written by hand, are left out).
    pub fn apply(&self, stored: &[(SettingName, u64)]) {
        for &(name, value) in stored {
            if name.check(value).is_err() {
                continue;
            }
            match name {
                SettingName::PointsRate => self.set_bytes_per_point(value),
                SettingName::SignupPoints => self.set_signup_points(value),
            }
        }
    }
}

/// A setting `rivulet-tracker settings set` can store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SettingName {
    /// Credited bytes per point a cache's account earns (at least 1).
    PointsRate,
    /// Points a new account starts with.
    SignupPoints,
}

impl SettingName {
    /// Every setting, in the order `settings show` prints them.
    pub const ALL: [SettingName; 2] = [SettingName::PointsRate, SettingName::SignupPoints];

    /// Its name on the command line and in the `settings` table.
    pub fn as_str(self) -> &'static str {
        match self {
            SettingName::PointsRate => "points-rate",
            SettingName::SignupPoints => "signup-points",
        }
    }

    fn parse(name: &str) -> Option<SettingName> {
        SettingName::ALL.into_iter().find(|n| n.as_str() == name)
    }

    /// Whether `value` is allowed; the error is one line.
    pub fn check(self, value: u64) -> Result<(), String> {
        let (low, high) = match self {
            SettingName::PointsRate => (1, MAX_BYTES_PER_POINT),
            SettingName::SignupPoints => (0, crate::cli::MAX_POINTS),
        };
        if (low..=high).contains(&value) {
            Ok(())
        } else {
            Err(format!("{} must be {low} to {high}", self.as_str()))
        }
    }
}

/// The values stored in the database (settings never set are absent).
pub async fn stored(db: &AnyPool) -> Result<Vec<(SettingName, u64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT name, value FROM settings")
        .fetch_all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(name, value)| Some((SettingName::parse(&name)?, u64::try_from(value).ok()?)))
        .collect())
}

/// Stores `value` for `name` (checked first), replacing what was stored.
pub async fn store(db: &AnyPool, name: SettingName, value: u64) -> Result<(), StoreError> {
    name.check(value).map_err(StoreError::OutOfRange)?;
    sqlx::query(
        "INSERT INTO settings (name, value) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(name.as_str())
    .bind(i64::try_from(value).unwrap_or(i64::MAX))
    .execute(db)
    .await?;
    Ok(())
}

/// Why a setting was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    OutOfRange(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Reads the stored settings into `settings` every `every` until `stop` is cancelled.
pub async fn reload_periodically(
    db: AnyPool,
    settings: Arc<Settings>,
    every: Duration,
    stop: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut every = Every::new(every);
    while every.tick(&stop).await {
        match stored(&db).await {
            Ok(values) => settings.apply(&values),
            Err(e) if !stop.is_cancelled() => tracing::warn!("reading the stored settings: {e}"),
            Err(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_apply_and_bad_ones_are_skipped() {
        let s = Settings::new(100, 1000);
        s.apply(&[(SettingName::SignupPoints, 7), (SettingName::PointsRate, 0)]);
        assert_eq!((s.signup_points(), s.bytes_per_point()), (7, 1000));
        s.apply(&[(SettingName::PointsRate, 5)]);
        assert_eq!(s.bytes_per_point(), 5);
        assert!(SettingName::PointsRate.check(0).is_err());
        assert!(
            SettingName::SignupPoints
                .check(crate::cli::MAX_POINTS + 1)
                .is_err()
        );
        assert!(SettingName::SignupPoints.check(0).is_ok());
    }
}
