//! The peer engine behind a handle: a worker thread with its own tokio runtime runs the
//! app's cache, the viewer of the movie being played and, with `--demo`, the embedded
//! network. The UI sends [`Command`]s through a [`NodeHandle`] and receives [`NodeEvent`]s;
//! nothing here blocks the UI, and [`Command::Shutdown`] stops everything gracefully (the
//! cache and the viewer tell the tracker they leave).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use iced::futures::{SinkExt as _, Stream};
use rivulet_node_core::cache::{Cache, CacheOptions, CacheStatus};
use rivulet_node_core::format::Manifest;
use rivulet_node_core::viewer::http::StreamServer;
use rivulet_node_core::viewer::{Session, WatchOptions};
use rivulet_tracker_client::TrackerClient;
use tokio::sync::mpsc;

use crate::demo::{Demo, DemoLogin, Warmth};

/// What the UI asks of the engine.
#[derive(Debug)]
pub enum Command {
    /// Start the embedded demo network with its data under this folder.
    StartDemo(PathBuf),
    /// Start (or restart with new options) the app's cache.
    StartCache(Box<CacheOptions>),
    /// Change the running cache's limits at once.
    SetLimits { upload_bps: u64, storage_bytes: u64 },
    /// Stop the cache (it tells the tracker).
    StopCache,
    /// Join as a viewer of `video` and serve its stream to the player.
    Watch {
        client: TrackerClient,
        video: String,
        /// The player's byte position, for "buffered ahead".
        playhead: Arc<AtomicU64>,
    },
    /// Leave the movie being watched.
    StopWatching,
    /// Stop everything and end the worker.
    Shutdown,
}

/// Where the bytes of the movie being watched come from, for the player's live panel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ViewerStatus {
    pub video: String,
    /// Verified bytes from caches and from the origin.
    pub from_caches_bytes: u64,
    pub from_origin_bytes: u64,
    /// Caches in the peer set now.
    pub peers: usize,
    /// Rebuilt bytes right after the playhead.
    pub buffered_ahead_bytes: u64,
    /// Segments rebuilt, of all.
    pub complete_segments: u32,
    pub segments: u32,
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
    /// A movie's stream is served at `url` for the player.
    Watching {
        video: String,
        title: String,
        url: String,
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

struct Viewing {
    title: String,
    session: Arc<Session>,
    server: StreamServer,
    reporter: tokio::task::JoinHandle<()>,
}

struct Worker {
    events: mpsc::UnboundedSender<NodeEvent>,
    demo: Option<Demo>,
    /// Waits for the demo caches to warm, then says the demo is ready.
    warming: Option<tokio::task::JoinHandle<()>>,
    cache: Option<(Cache, tokio::task::JoinHandle<()>)>,
    viewing: Option<Viewing>,
}

impl Worker {
    fn new(events: mpsc::UnboundedSender<NodeEvent>) -> Worker {
        Worker {
            events,
            demo: None,
            warming: None,
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
                } => {
                    if let Some((cache, _)) = &self.cache {
                        cache.set_limits(upload_bps, storage_bytes);
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
        if let Some(warming) = self.warming.take() {
            warming.abort();
        }
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
                self.warming = Some(tokio::spawn(warm_up(warmth, login, self.events.clone())));
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
                let forward = tokio::spawn(async move {
                    loop {
                        let now = status.borrow_and_update().clone();
                        if events.send(NodeEvent::CacheStatus(now)).is_err()
                            || status.changed().await.is_err()
                        {
                            break;
                        }
                    }
                });
                self.cache = Some((cache, forward));
                self.emit(NodeEvent::CacheStarted);
            }
            Err(e) => self.emit(NodeEvent::CacheFailed(format!("{e:#}"))),
        }
    }

    async fn stop_cache(&mut self) {
        if let Some((cache, forward)) = self.cache.take() {
            forward.abort();
            cache.stop().await;
        }
    }

    async fn watch(&mut self, client: TrackerClient, video: String, playhead: Arc<AtomicU64>) {
        self.stop_watching().await;
        match open_viewing(&client, &video, playhead, self.events.clone()).await {
            Ok(viewing) => {
                self.emit(NodeEvent::Watching {
                    video,
                    title: viewing.title.clone(),
                    url: viewing.server.url().to_owned(),
                });
                self.viewing = Some(viewing);
            }
            Err(message) => self.emit(NodeEvent::WatchFailed { video, message }),
        }
    }

    async fn stop_watching(&mut self) {
        if let Some(v) = self.viewing.take() {
            v.reporter.abort();
            let _ = v.reporter.await;
            v.server.shutdown().await;
            if let Ok(session) = Arc::try_unwrap(v.session) {
                session.close().await;
            }
        }
    }
}

/// How long the demo waits for its caches before it plays anyway (the origin fills in).
const DEMO_WARM_LIMIT: Duration = Duration::from_secs(45);

/// Reports the demo caches' progress until they hold k chunks of every segment and the
/// tracker knows it (or [`DEMO_WARM_LIMIT`] passes), then says the demo is ready.
async fn warm_up(mut warmth: Warmth, login: DemoLogin, events: mpsc::UnboundedSender<NodeEvent>) {
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
        eprintln!(
            "rivulet: the demo caches hold the demo movie ({k} chunks per segment) after {} ms",
            began.elapsed().as_millis()
        );
    } else {
        eprintln!(
            "rivulet: the demo caches are still cold after {} s; playing from the origin ({:?})",
            DEMO_WARM_LIMIT.as_secs(),
            warmth.problems()
        );
    }
    let _ = events.send(NodeEvent::DemoReady(login));
}

async fn open_viewing(
    client: &TrackerClient,
    video: &str,
    playhead: Arc<AtomicU64>,
    events: mpsc::UnboundedSender<NodeEvent>,
) -> Result<Viewing, String> {
    let info = client
        .video(video)
        .await
        .map_err(|e| crate::screen::describe(&e))?;
    if !info.bought {
        return Err(format!(
            "you have not bought \"{}\" yet: buy it in the catalogue first",
            info.title
        ));
    }
    let bytes = client
        .manifest(video)
        .await
        .map_err(|e| crate::screen::describe(&e))?;
    let manifest = Manifest::from_json(&bytes)
        .map_err(|e| format!("the tracker sent a broken manifest: {e}"))?;
    let dir = crate::environment::downloads_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create the download folder {}: {e}", dir.display()))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let download = dir.join(format!("{video}-{stamp}.mkv"));
    let options = WatchOptions {
        realtime: true,
        ..WatchOptions::default()
    };
    let session = Session::open(
        client,
        video,
        Arc::new(manifest),
        info.duration_ms,
        &download,
        &options,
    )
    .await
    .map_err(|e| format!("joining the network for \"{}\": {e}", info.title))?;
    let session = Arc::new(session);
    let shared = session.stream().shared().clone();
    let server = StreamServer::start(shared.clone())
        .await
        .map_err(|e| format!("serving the stream to the player: {e}"))?;
    let watched = session.clone();
    let video = video.to_owned();
    let reporter = tokio::spawn(async move {
        let segments = shared.manifest().segment_count();
        loop {
            let progress = watched.progress();
            let status = ViewerStatus {
                video: video.clone(),
                from_caches_bytes: progress.from_caches_bytes.load(Ordering::Relaxed),
                from_origin_bytes: progress.from_origin_bytes.load(Ordering::Relaxed),
                peers: watched.peer_count(),
                buffered_ahead_bytes: shared.buffered_after(playhead.load(Ordering::Relaxed)),
                complete_segments: shared.complete_segments(),
                segments,
            };
            if events.send(NodeEvent::Viewer(status)).is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    Ok(Viewing {
        title: info.title,
        session,
        server,
        reporter,
    })
}
