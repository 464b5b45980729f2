//! What the headless commands do, as library calls, so that tests and the app run exactly
//! the code `rivulet-node` runs.

use std::path::Path;
use std::time::Instant;

use rivulet_tracker_client::{Credentials, ErrorCode};

use crate::viewer::{self, JoinError, JoinOptions, Viewer, WatchOptions, WatchReport};

/// `rivulet-node watch`: logs in, buys the movie if asked (refuses an unbought one
/// otherwise), registers a viewer node, rebuilds the movie into `out` while sending
/// heartbeats, leaves, and returns the report.
pub async fn watch(
    tracker: &str,
    user: &str,
    password: &str,
    video_id: &str,
    out: &Path,
    options: &WatchOptions,
    buy: bool,
) -> anyhow::Result<WatchReport> {
    let client = crate::env::tracker_client(tracker)?;
    watch_with(&client, user, password, video_id, out, options, buy).await
}

/// [`watch`] through `client` (a tracker with a private CA, say).
pub async fn watch_with(
    client: &rivulet_tracker_client::TrackerClient,
    user: &str,
    password: &str,
    video_id: &str,
    out: &Path,
    options: &WatchOptions,
    buy: bool,
) -> anyhow::Result<WatchReport> {
    let started = Instant::now();
    let partial = viewer::partial_path(out);
    let join = JoinOptions::new(&partial)
        .credentials(Credentials {
            username: user.to_owned(),
            password: password.to_owned(),
        })
        .buy(buy)
        .watch(options.clone());
    let viewer = Viewer::join(client, video_id, &join)
        .await
        .map_err(|e| match e {
            JoinError::NotBought { price, .. } => anyhow::anyhow!(
                "{user} has not bought {video_id:?}; pass --buy to buy it for {price} points"
            ),
            // The tracker's refusal says it all ("costs 1000 points, you have 0").
            JoinError::Buy(e) if e.code() == Some(&ErrorCode::InsufficientPoints) => {
                anyhow::anyhow!("{e}")
            }
            e => anyhow::Error::new(e),
        })?;
    let manifest = viewer.manifest().clone();
    let duration_ms = viewer.info().duration_ms;
    let result = viewer::watch(&viewer, &manifest, duration_ms, out, options, started).await;
    viewer.close().await;
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    Ok(result?)
}
