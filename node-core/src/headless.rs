//! What the headless commands do, as library calls, so that tests and the app run exactly
//! the code `rivulet-node` runs.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use rivulet_tracker_client::{
    Credentials, Heartbeat, NodeKind, NodeRegistration, PeerBytes, TicketRequest, TrackerClient,
    codes,
};

use crate::format::Manifest;
use crate::viewer::{self, Progress, Source, WatchOptions, WatchReport};

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
            Some(codes::INSUFFICIENT_POINTS) => anyhow::anyhow!("{e}"),
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
    let registration = NodeRegistration {
        kind: NodeKind::Viewer,
        bind: String::new(),
        advertise: String::new(),
        upload_bps: 0,
        storage_bytes: 0,
    };
    let node = client
        .register_node(&registration)
        .await
        .context("registering the viewer")?;
    let origin = client.origin().await.context("asking for the origin")?;
    let ticket = client
        .ticket(&TicketRequest {
            holder: node.node_id.clone(),
            server: "origin".into(),
            video: video_id.to_owned(),
        })
        .await
        .context("asking for a ticket")?;
    let source = Source {
        peer: "origin".into(),
        addr: origin.ftp,
        node_id: node.node_id.clone(),
        ticket: ticket.ticket,
    };
    let progress = Arc::new(Progress::default());
    // Heartbeats report what is being watched and what arrived since the last one.
    let beats = {
        let (client, node_id, progress, video) = (
            client.clone(),
            node.node_id.clone(),
            progress.clone(),
            video_id.to_owned(),
        );
        let every = Duration::from_secs(node.heartbeat_secs.max(1));
        tokio::spawn(async move {
            let mut reported = 0u64;
            loop {
                tokio::time::sleep(every).await;
                let now = progress.from_origin_bytes.load(Ordering::Relaxed);
                let hb = Heartbeat {
                    watching: Some(video.clone()),
                    received: vec![PeerBytes {
                        peer: "origin".into(),
                        video: video.clone(),
                        bytes: now - reported,
                    }],
                    ..Heartbeat::default()
                };
                if client.heartbeat(&node_id, &hb).await.is_ok() {
                    reported = now;
                }
            }
        })
    };
    let result = viewer::watch(
        video_id,
        manifest,
        video.duration_ms,
        source,
        out,
        options,
        progress.clone(),
    )
    .await;
    beats.abort();
    let _ = client.leave(&node.node_id).await;
    Ok(result?)
}
