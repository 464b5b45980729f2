//! The peer engine behind a handle (`engine`): a worker thread with its own tokio runtime runs the
//! app's cache, the viewer of the movie being played and, with `--demo`, the embedded
//! network. The UI sends [`Command`]s through a [`NodeHandle`] and receives [`NodeEvent`]s;
//! nothing here blocks the UI, and [`Command::Shutdown`] stops everything gracefully (the
//! cache and the viewer tell the tracker they leave).

use std::path::PathBuf;
use std::time::Duration;

use iced::futures::{SinkExt as _, Stream, StreamExt as _};
use rivulet_node_core::cache::{Cache, CacheOptions, CacheStatus};
use rivulet_node_core::task::Tasks;
use rivulet_node_core::viewer::http::StreamServer;
use rivulet_node_core::viewer::{JoinError, JoinOptions, Viewer, WatchOptions};
use rivulet_tracker_client::TrackerClient;
use tokio::sync::{mpsc, watch};

use crate::demo::{Demo, DemoLogin, Warmth};

/// What the UI asks of the engine.
#[derive(Debug)]
pub enum Command {
    /// Start the embedded demo network with its data under this folder.
    StartDemo(PathBuf),
    /// Start (or restart with new options) the app's cache.
    StartCache(Box<CacheOptions>),
    /// Change the running cache's limits at once.
    SetLimits {
        upload_bps: u64,
        storage_bytes: u64,
        /// The download budget, bits per second (0: none).
        download_bps: u64,
    },
    /// Stop the cache (it tells the tracker).
    StopCache,
    /// Join as a viewer of `video` and serve its stream to the player.
    Watch {
        client: TrackerClient,
        video: String,
        /// The player's byte position, for "buffered ahead".
        playhead: watch::Receiver<u64>,
    },
    /// Leave the movie being watched.
    StopWatching,
    /// Stop everything and end the worker.
    Shutdown,
}

/// Where the bytes of the movie being watched come from, for the player's live panel.
pub use rivulet_node_core::viewer::ViewerStatus;

/// A viewer's status for the GUI to subscribe to ([`viewer_status`]); each viewer the engine
/// starts gets a feed of its own.
pub type ViewerFeed = crate::feed::Feed<ViewerStatus>;

/// The viewer's status as a stream, for `Subscription::run_with`: the current value, then
/// each change, until the viewer closes.
pub fn viewer_status(feed: &ViewerFeed) -> impl Stream<Item = NodeEvent> + use<> {
    feed.values().map(NodeEvent::Viewer)
}

/// What the engine tells the UI.
#[derive(Clone, Debug)]
pub enum NodeEvent {
    /// The worker runs; send commands here.
    Ready(NodeHandle),
    /// The demo network runs and its caches are filling: they hold `held` of the `k`
    /// chunk indices per segment the demo viewer needs from them.
    DemoWarming {
        held: usize,
        k: usize,
    },
    /// The demo network runs (its caches warm, or the wait timed out); log in with this.
    DemoReady(DemoLogin),
    DemoFailed(String),
    /// The app's cache runs (its first status follows).
    CacheStarted,
    CacheStatus(CacheStatus),
    CacheFailed(String),
    /// A movie's stream is served at `url` for the player; its status follows on `feed`.
    Watching {
        video: String,
        title: String,
        url: String,
        feed: ViewerFeed,
    },
    WatchFailed {
        video: String,
        message: String,
    },
    Viewer(ViewerStatus),
    /// Everything stopped; the worker has ended.
    Stopped,
}

/// Sends commands to the worker. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    commands: mpsc::UnboundedSender<Command>,
}

impl NodeHandle {
    /// Sends `command`; false when the worker has ended.
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }
}

/// Starts the worker thread: its handle and its events.
pub fn spawn() -> (NodeHandle, mpsc::UnboundedReceiver<NodeEvent>) {
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (events, event_rx) = mpsc::unbounded_channel();
    let failed = events.clone();
    let started = std::thread::Builder::new()
        .name("rivulet-node".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("rivulet-node-rt")
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => {
                    rt.block_on(Worker::new(events).run(command_rx));
                    rt.shutdown_timeout(Duration::from_secs(2));
                }
                Err(e) => {
                    let _ = events.send(NodeEvent::CacheFailed(format!(
                        "the engine could not start: {e}"
                    )));
                    let _ = events.send(NodeEvent::Stopped);
                }
            }
        });
    if let Err(e) = started {
        let _ = failed.send(NodeEvent::CacheFailed(format!(
            "the engine could not start: {e}"
        )));
    }
    (NodeHandle { commands }, event_rx)
}

/// The worker as an iced subscription stream: [`NodeEvent::Ready`] first, then its events.
pub fn subscription_stream() -> impl Stream<Item = NodeEvent> {
    iced::stream::channel(64, async |mut out| {
        let (handle, mut events) = spawn();
        let _ = out.send(NodeEvent::Ready(handle)).await;
        while let Some(event) = events.recv().await {
            if out.send(event).await.is_err() {
                break;
            }
        }
    })
}

/// The movie being watched: its viewer and the loopback endpoint the player reads.
struct Viewing {
    viewer: Viewer,
    server: StreamServer,
}

struct Worker {
    events: mpsc::UnboundedSender<NodeEvent>,
    demo: Option<Demo>,
    /// Waits for the demo caches to warm, then says the demo is ready.
    warming: Tasks,
    /// The app's cache and the task forwarding its status.
    cache: Option<(Cache, Tasks)>,
    viewing: Option<Viewing>,
}

impl Worker {
    fn new(events: mpsc::UnboundedSender<NodeEvent>) -> Worker {
        Worker {
            events,
            demo: None,
            warming: Tasks::new(),
            cache: None,
            viewing: None,
        }
    }

    fn emit(&self, event: NodeEvent) {
        let _ = self.events.send(event);
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        while let Some(command) = commands.recv().await {
            match command {
                Command::StartDemo(dir) => self.start_demo(dir).await,
                Command::StartCache(options) => self.start_cache(*options).await,
                Command::SetLimits {
                    upload_bps,
                    storage_bytes,
                    download_bps,
                } => {
                    if let Some((cache, _)) = &self.cache {
                        cache.set_limits(upload_bps, storage_bytes);
                        cache.set_download_bps(download_bps);
                    }
                }
                Command::StopCache => self.stop_cache().await,
                Command::Watch {
                    client,
                    video,
                    playhead,
                } => self.watch(client, video, playhead).await,
                Command::StopWatching => self.stop_watching().await,
                Command::Shutdown => break,
            }
        }
        self.stop_watching().await;
        self.stop_cache().await;
        self.warming.shutdown().await;
        if let Some(demo) = self.demo.take() {
            demo.stop().await;
        }
        self.emit(NodeEvent::Stopped);
    }

    async fn start_demo(&mut self, dir: PathBuf) {
        if self.demo.is_some() {
            return;
        }
        match Demo::start(&dir).await {
            Ok((demo, login)) => {
                let warmth = demo.warmth();
                self.demo = Some(demo);
                self.warming.spawn_until_cancelled(
                    "demo-warm-up",
                    warm_up(warmth, login, self.events.clone()),
                );
            }
            Err(e) => self.emit(NodeEvent::DemoFailed(format!("{e:#}"))),
        }
    }

    async fn start_cache(&mut self, options: CacheOptions) {
        self.stop_cache().await;
        match Cache::start(options).await {
            Ok(cache) => {
                let mut status = cache.status();
                let events = self.events.clone();
                let forward = Tasks::new();
                forward.spawn_until_cancelled("cache-status", async move {
                    loop {
                        let now = status.borrow_and_update().clone();
                        if events.send(NodeEvent::CacheStatus(now)).is_err()
                            || status.changed().await.is_err()
                        {
                            return Ok::<(), std::convert::Infallible>(());
                        }
                    }
                });
                self.cache = Some((cache, forward));
                self.emit(NodeEvent::CacheStarted);
            }
            Err(e) => {
                tracing::warn!("the cache could not start: {e}");
                self.emit(NodeEvent::CacheFailed(e.to_string()));
            }
        }
    }

    async fn stop_cache(&mut self) {
        if let Some((cache, forward)) = self.cache.take() {
            forward.shutdown().await;
            cache.stop().await;
        }
    }

    async fn watch(
        &mut self,
        client: TrackerClient,
        video: String,
        playhead: watch::Receiver<u64>,
    ) {
        self.stop_watching().await;
        match open_viewing(&client, &video, playhead).await {
            Ok(viewing) => {
                self.emit(NodeEvent::Watching {
                    video,
                    title: viewing.viewer.info().title.clone(),
                    url: viewing.server.url().to_owned(),
                    feed: ViewerFeed::new(viewing.viewer.status()),
                });
                self.viewing = Some(viewing);
            }
            Err(message) => {
                tracing::warn!(video, "cannot watch: {message}");
                self.emit(NodeEvent::WatchFailed { video, message });
            }
        }
    }

    async fn stop_watching(&mut self) {
        if let Some(v) = self.viewing.take() {
            v.server.shutdown().await;
            v.viewer.close().await;
        }
    }
}

/// How long the demo waits for its caches before it plays anyway (the origin fills in).
const DEMO_WARM_LIMIT: Duration = Duration::from_secs(45);

/// Reports the demo caches' progress until they hold k chunks of every segment and the
/// tracker knows it (or [`DEMO_WARM_LIMIT`] passes), then says the demo is ready.
async fn warm_up(
    mut warmth: Warmth,
    login: DemoLogin,
    events: mpsc::UnboundedSender<NodeEvent>,
) -> Result<(), std::convert::Infallible> {
    let began = tokio::time::Instant::now();
    let deadline = began + DEMO_WARM_LIMIT;
    let k = warmth.k;
    let warm = loop {
        let held = warmth.held();
        let _ = events.send(NodeEvent::DemoWarming { held, k });
        if held >= k {
            break true;
        }
        match tokio::time::timeout_at(deadline, warmth.changed()).await {
            Ok(true) => {}
            Ok(false) | Err(_) => break false,
        }
    };
    if warm {
        // One more heartbeat from each cache so that the tracker offers what they hold,
        // and a placement round to put them in the viewer's peer set.
        let _ = tokio::time::timeout_at(deadline, warmth.reported()).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        tracing::info!(
            "the demo caches hold the demo movie ({k} chunks per segment) after {} ms",
            began.elapsed().as_millis()
        );
    } else {
        tracing::warn!(
            "the demo caches are still cold after {} s; playing from the origin ({:?})",
            DEMO_WARM_LIMIT.as_secs(),
            warmth.problems()
        );
    }
    let _ = events.send(NodeEvent::DemoReady(login));
    Ok(())
}

/// Joins `video` as a viewer (it must be bought: the catalogue buys) and serves its stream
/// to the player; the error is a sentence for the player screen.
async fn open_viewing(
    client: &TrackerClient,
    video: &str,
    playhead: watch::Receiver<u64>,
) -> Result<Viewing, String> {
    let stamp = rivulet_node_core::clock::unix_ms();
    let download = crate::environment::downloads_dir().join(format!("{video}-{stamp}.mkv"));
    let options = JoinOptions::new(download)
        .playhead(playhead)
        .watch(WatchOptions {
            realtime: true,
            // The rebuilt movie is never a file a user can copy: no name on disk.
            private: true,
            ..WatchOptions::default()
        });
    let viewer = Viewer::join(client, video, &options)
        .await
        .map_err(|e| match &e {
            JoinError::NotBought { title, .. } => {
                format!("you have not bought \"{title}\" yet: buy it in the catalogue first")
            }
            JoinError::Lookup(c) | JoinError::Manifest(c) => crate::screen::describe(c),
            JoinError::Network(w) => format!("joining the network for \"{video}\": {w}"),
            _ => e.to_string(),
        })?;
    let server = match StreamServer::start(viewer.stream().shared().clone()).await {
        Ok(server) => server,
        Err(e) => {
            viewer.close().await;
            return Err(format!("serving the stream to the player: {e}"));
        }
    };
    Ok(Viewing { viewer, server })
}
