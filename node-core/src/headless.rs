//! What the headless commands do, as library calls, so that tests and the app run exactly
//! the code `rivulet-node` runs.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use rivulet_tracker_client::{Credentials, ErrorCode, TrackerClient};

use crate::format::Manifest;
use crate::viewer::{self, Session, WatchOptions, WatchReport};

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
    let started = Instant::now();
    let anon = TrackerClient::new(tracker);
    let creds = Credentials {
        username: user.to_owned(),
        password: password.to_owned(),
    };
    let session = anon.login(&creds).await.context("logging in")?;
    let client = anon.with_token(session.token);
    let video = client
        .video(video_id)
        .await
        .context("looking up the movie")?;
    if !video.bought {
        if !buy {
            bail!(
                "{user} has not bought {video_id:?}; pass --buy to buy it for {} points",
                video.price
            );
        }
        client.buy(video_id).await.map_err(|e| match e.code() {
            Some(ErrorCode::InsufficientPoints) => anyhow::anyhow!("{e}"),
            _ => anyhow::Error::new(e).context("buying the movie"),
        })?;
    }
    let manifest = Arc::new(
        Manifest::from_json(
            &client
                .manifest(video_id)
                .await
                .context("fetching the manifest")?,
        )
        .context("the tracker's manifest")?,
    );
    let partial = viewer::partial_path(out);
    let session = Session::open(
        &client,
        video_id,
        manifest.clone(),
        video.duration_ms,
        &partial,
        options,
    )
    .await
    .context("joining the network")?;
    let result = viewer::watch(
        &session,
        &manifest,
        video.duration_ms,
        out,
        options,
        started,
    )
    .await;
    session.close().await;
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    Ok(result?)
}
