//! The application root: which screen shows, the settings pane, the log-in session, and the
//! bridge to the engine. `update` dispatches each message to its screen and acts on the
//! events screens raise; it never blocks (tracker calls and keyring access run as tasks,
//! node work in the engine's worker). Closing the window with sharing on and a system tray
//! present leaves the app running without a window (see [`on_close`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use iced::widget::{button, column, container, progress_bar, row, text};
use iced::{Element, Length, Subscription, Task, window};
use rivulet_node_core::cache::{CacheOptions, CacheStatus};
use rivulet_node_core::viewer::{DownloadLimits, clean_downloads};
use rivulet_tracker_client::Link;

use crate::engine::{Command, NodeEvent, NodeHandle, ViewerFeed};
use crate::link::Launch;
use crate::report::{Reporter, Status};
use crate::screen::{catalogue, first_run, login, player, points, settings as pane};
use crate::settings::Settings;
use crate::tray::{TrayAction, TrayEvent, TrayFeed, TrayState};
use crate::{credentials, environment};

/// The main area.
#[derive(Debug)]
pub enum Screen {
    /// Waiting for something (the demo network) with this sentence.
    Starting(String),
    Login(login::State),
    /// The set-up after the first log-in.
    FirstRun(first_run::State),
    Catalogue(catalogue::State),
    Player(Box<player::State>),
    Points(points::State),
}

#[derive(Debug)]
pub struct App {
    pub screen: Screen,
    /// The settings pane, when open.
    pub pane: Option<pane::State>,
    pub settings: Settings,
    settings_path: PathBuf,
    /// Where each movie was left ("continue watching").
    pub positions: crate::resume::Positions,
    pub node: Option<NodeHandle>,
    pub session: Option<login::LoggedIn>,
    pub cache: Option<CacheStatus>,
    /// The status of the viewer of the movie playing, subscribed to while the player shows.
    viewer_feed: Option<ViewerFeed>,
    /// A sentence for the status bar (keyring, settings, cache problems).
    pub notice: Option<String>,
    launch: Launch,
    /// A movie to open once logged in (a `rivulet://watch/ID` link).
    pending_watch: Option<String>,
    /// The movie ids later launches handed over, for the status file.
    links_opened: Vec<String>,
    /// Closing: waiting for the engine to stop.
    pub closing: bool,
    /// The demo caches' progress while the demo prepares: chunks held of those needed.
    pub warming: Option<(usize, usize)>,
    /// The session's link to the tracker, followed while logged in.
    link_feed: Option<LinkFeed>,
    /// Since when and why the tracker cannot be reached (the banner), while it cannot.
    pub tracker_down: Option<(std::time::SystemTime, String)>,
    demo_ready_ms: Option<u64>,
    reporter: Reporter,
    play_asked: Option<Instant>,
    first_frame_ms: Option<u64>,
    play_to_frame_ms: Option<u64>,
    /// Whether a system tray shows the app's icon (so closing the window may keep sharing).
    pub tray: TrayState,
    /// The window is closed and the app runs on from the tray, its cache serving.
    pub in_tray: bool,
    /// Sharing paused from the tray menu: the cache stays stopped until "Resume sharing"
    /// (for this run; the settings are unchanged).
    pub sharing_paused: bool,
    /// Whether sharing runs, as the tray menu shows it (Pause or Resume).
    tray_sharing: tokio::sync::watch::Sender<bool>,
    /// "No system tray found" was said.
    no_tray_said: bool,
}

/// What closing the window does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnClose {
    /// The window closes; the app runs on from the tray and its cache keeps serving.
    KeepSharing,
    /// The full close: the engine stops (the cache and the viewer tell the tracker), the app
    /// exits.
    Quit,
}

/// What closing the window does: keep sharing when the user asked for it, a cache runs and a
/// tray shows the icon (the way back to the window and to Quit); otherwise quit as always.
pub fn on_close(settings: &Settings, cache_running: bool, tray: &TrayState) -> OnClose {
    if settings.share && settings.keep_sharing_on_close && cache_running && tray.is_shown() {
        OnClose::KeepSharing
    } else {
        OnClose::Quit
    }
}

/// The window the app opens (at start, and again from the tray).
pub fn window_settings() -> window::Settings {
    let mut settings = window::Settings {
        size: iced::Size::new(1320.0, 860.0),
        icon: crate::icon::window_icon(),
        // The app decides what the close button does (`Message::CloseRequested`).
        exit_on_close_request: false,
        ..window::Settings::default()
    };
    settings.platform_specific.application_id = "rivulet".into();
    settings
}

#[derive(Clone, Debug)]
pub enum Message {
    Login(login::Message),
    FirstRun(first_run::Message),
    Catalogue(catalogue::Message),
    Player(player::Message),
    Points(points::Message),
    Pane(pane::Message),
    /// Something from the engine.
    Node(NodeEvent),
    OpenSettings,
    OpenPoints,
    /// End the session and go back to the log-in screen.
    LogOut,
    OpenCatalogue,
    /// A password came back from the keyring (None: nothing remembered).
    Recalled(Option<String>),
    /// The keyring or the settings file answered; a sentence to show if it failed.
    Noted(Option<String>),
    /// The window's close button: quit, or keep sharing from the tray ([`on_close`]).
    CloseRequested,
    /// The full close whatever the settings (SIGTERM, Ctrl-C, "Quit" in the tray menu).
    Quit,
    /// The tray icon: shown, unavailable, or a menu pick.
    Tray(TrayEvent),
    /// The engine did not stop in time: leave anyway.
    ForceExit,
    /// A later launch handed over its link (or asks the window to come to the front).
    SecondLaunch(crate::single::Handoff),
    /// Time to hold the hidden download area to its age and size limits again.
    CleanDownloads,
    /// The logged-in session's link to the tracker changed.
    Link(Link),
    /// While the tracker is unreachable: ask it again whether it is back.
    Probe,
}

/// How often the app asks an unreachable tracker whether it is back.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// The session client's [`Link`] as a subscription's input: one subscription per log-in.
pub type LinkFeed = crate::feed::Feed<Link>;

/// Each change of the link after the subscription starts, as a message.
pub fn link_changes(feed: &LinkFeed) -> impl iced::futures::Stream<Item = Message> + use<> {
    iced::futures::StreamExt::map(feed.changes(), Message::Link)
}

/// How often the running app cleans the hidden download area (also when a movie closes).
pub const CLEAN_DOWNLOADS_EVERY: Duration = Duration::from_secs(600);

impl App {
    /// The app as launched, with the settings at `settings_path`.
    pub fn new(launch: Launch, settings_path: PathBuf) -> (App, Task<Message>) {
        let (settings, warning) = Settings::load(&settings_path);
        std::thread::spawn(|| {
            clean_downloads(&environment::downloads_dir(), DownloadLimits::default())
        });
        let screen = if launch.demo {
            Screen::Starting(
                "Starting the demo network (the first time, ffmpeg makes the demo movie first)…"
                    .into(),
            )
        } else {
            Screen::Login(login::State::new(
                &settings.tracker,
                &settings.username,
                settings.remember,
            ))
        };
        // `RIVULET_PASSWORD` logs in the saved user at once, like the headless commands
        // (benchmarks and kiosks); never a password on the command line.
        let from_env = rivulet_node_core::env::password()
            .filter(|p| !p.is_empty() && !launch.demo && !settings.username.is_empty());
        let recall = if let Some(password) = from_env {
            Task::done(Message::Recalled(Some(password)))
        } else if !launch.demo && settings.remember && !settings.username.is_empty() {
            let (tracker, user) = (settings.tracker.clone(), settings.username.clone());
            Task::perform(
                async move {
                    tokio::task::spawn_blocking(move || credentials::recall(&tracker, &user))
                        .await
                        .ok()
                        .flatten()
                },
                Message::Recalled,
            )
        } else {
            Task::none()
        };
        let positions =
            crate::resume::Positions::load(&settings_path.with_file_name("positions.json"));
        let app = App {
            screen,
            pane: None,
            settings,
            settings_path,
            positions,
            node: None,
            session: None,
            cache: None,
            viewer_feed: None,
            notice: warning,
            pending_watch: launch.watch.clone(),
            links_opened: Vec::new(),
            launch,
            closing: false,
            warming: None,
            link_feed: None,
            tracker_down: None,
            demo_ready_ms: None,
            reporter: Reporter::from_env(crate::report::launched()),
            play_asked: None,
            first_frame_ms: None,
            play_to_frame_ms: None,
            tray: TrayState::default(),
            in_tray: false,
            sharing_paused: false,
            tray_sharing: tokio::sync::watch::Sender::new(true),
            no_tray_said: false,
        };
        (app, recall)
    }

    /// Opens the window (at start; from the tray after it was closed).
    pub fn open_window(&mut self) -> Task<Message> {
        self.in_tray = false;
        window::open(window_settings()).1.discard()
    }

    /// [`App::view`] for the daemon, which asks per window (there is one).
    pub fn view_window(&self, _window: window::Id) -> Element<'_, Message> {
        self.view()
    }

    /// [`App::title`] for the daemon.
    pub fn window_title(&self, _window: window::Id) -> String {
        self.title()
    }

    pub fn title(&self) -> String {
        match &self.screen {
            Screen::Player(p) => format!("{} — Rivulet", p.title),
            _ => "Rivulet".into(),
        }
    }

    pub fn update(&mut self, message: Message) -> Task<Message> {
        let task = match message {
            Message::Login(m) => self.login(m),
            Message::FirstRun(m) => self.first_run(m),
            Message::Catalogue(m) => self.catalogue(m),
            Message::Player(m) => self.player(m),
            Message::Points(m) => self.points(m),
            Message::Pane(m) => self.pane(m),
            Message::Node(e) => self.node_event(e),
            Message::OpenSettings => self.open_settings(),
            Message::OpenPoints => self.open_points(),
            Message::LogOut => self.log_out(),
            Message::OpenCatalogue => self.open_catalogue(),
            Message::Recalled(password) => self.recalled(password),
            Message::Noted(note) => {
                if note.is_some() {
                    self.notice = note;
                }
                Task::none()
            }
            Message::CloseRequested => self.close_requested(),
            Message::Quit => self.close(),
            Message::Tray(event) => self.tray_event(event),
            Message::ForceExit => iced::exit(),
            Message::SecondLaunch(handoff) => self.second_launch(handoff),
            Message::CleanDownloads => clean_downloads_task(),
            Message::Link(link) => self.link_changed(link),
            Message::Probe => self.probe(),
        };
        if !self.tray_wanted() {
            // No icon runs: what the last one said no longer holds.
            self.tray = TrayState::Unknown;
        }
        self.tray_sharing.send_if_modified(|shown| {
            let changed = *shown == self.sharing_paused;
            *shown = !self.sharing_paused;
            changed
        });
        self.report();
        task
    }

    fn open_settings(&mut self) -> Task<Message> {
        let mut pane = pane::State::new(&self.settings, self.cache.clone());
        pane.no_tray = matches!(self.tray, TrayState::Absent(_));
        self.pane = Some(pane);
        Task::none()
    }

    /// The window's close button: the window closes and sharing goes on from the tray, or
    /// the app quits ([`on_close`]).
    fn close_requested(&mut self) -> Task<Message> {
        if self.closing {
            return Task::none();
        }
        match on_close(&self.settings, self.cache.is_some(), &self.tray) {
            OnClose::KeepSharing => self.close_to_tray(),
            OnClose::Quit => self.close(),
        }
    }

    /// Closes the window and runs on without one. A movie playing stops (its place is kept):
    /// there is nothing to show it in.
    fn close_to_tray(&mut self) -> Task<Message> {
        let left_player = if matches!(self.screen, Screen::Player(_)) {
            self.leave_player()
        } else {
            Task::none()
        };
        self.in_tray = true;
        tracing::info!("the window closed; sharing goes on from the tray");
        Task::batch([left_player, window::latest().and_then(window::close)])
    }

    /// The window again: opened when it was closed, else brought to the front.
    fn show_window(&mut self) -> Task<Message> {
        if self.in_tray {
            self.open_window()
        } else {
            window::latest().and_then(window::gain_focus)
        }
    }

    fn tray_event(&mut self, event: TrayEvent) -> Task<Message> {
        match event {
            TrayEvent::Shown => {
                self.tray = TrayState::Shown;
                if let Some(p) = &mut self.pane {
                    p.no_tray = false;
                }
                Task::none()
            }
            TrayEvent::Unavailable(why) => {
                tracing::info!("no system tray ({why}): closing the window quits");
                self.tray = TrayState::Absent(why);
                if let Some(p) = &mut self.pane {
                    p.no_tray = true;
                }
                if !self.no_tray_said && self.settings.share && self.settings.keep_sharing_on_close
                {
                    self.no_tray_said = true;
                    self.notice = Some(crate::tray::NO_TRAY.into());
                }
                // Without the icon there would be no way back to a closed window.
                if self.in_tray {
                    self.open_window()
                } else {
                    Task::none()
                }
            }
            TrayEvent::Action(TrayAction::Open) => self.show_window(),
            TrayEvent::Action(TrayAction::PauseSharing) => self.pause_sharing(),
            TrayEvent::Action(TrayAction::ResumeSharing) => self.resume_sharing(),
            TrayEvent::Action(TrayAction::Quit) => self.close(),
        }
    }

    /// Stops the cache for now (it tells the tracker it leaves); the settings stay as they are.
    fn pause_sharing(&mut self) -> Task<Message> {
        self.sharing_paused = true;
        if let Some(node) = &self.node {
            node.send(Command::StopCache);
        }
        self.cache = None;
        if let Some(p) = &mut self.pane {
            p.cache = None;
        }
        Task::none()
    }

    /// Starts the cache again after [`App::pause_sharing`] (when logged in and sharing).
    fn resume_sharing(&mut self) -> Task<Message> {
        self.sharing_paused = false;
        if let Some(done) = self.session.clone() {
            self.start_cache(&done);
        }
        Task::none()
    }

    /// Whether the tray icon should run: sharing, with "keep sharing when the window closes",
    /// once the first-run choices are made, and not while closing. Not in the demo (it has
    /// no first run; closing it ends it).
    fn tray_wanted(&self) -> bool {
        self.settings.share
            && self.settings.keep_sharing_on_close
            && self.settings.set_up
            && !self.launch.demo
            && !self.closing
    }

    /// The tray's input, which [`App::subscription`] follows while the tray is wanted.
    pub fn tray_feed(&self) -> Option<TrayFeed> {
        self.tray_wanted()
            .then(|| TrayFeed::new(self.tray_sharing.subscribe()))
    }

    fn login(&mut self, message: login::Message) -> Task<Message> {
        let Screen::Login(state) = &mut self.screen else {
            return Task::none();
        };
        let (task, event) = state.update(message);
        let task = task.map(Message::Login);
        match event {
            Some(login::Event::LoggedIn(done)) => Task::batch([task, self.logged_in(*done)]),
            None => task,
        }
    }

    fn logged_in(&mut self, done: login::LoggedIn) -> Task<Message> {
        let mut tasks = Vec::new();
        if !self.launch.demo {
            let was_remembered = self.settings.remember;
            self.settings.tracker = done.tracker.clone();
            self.settings.username = done.account.username.clone();
            self.settings.remember = done.remember;
            tasks.push(self.save_settings());
            let (tracker, user, password) = (
                done.tracker.clone(),
                done.account.username.clone(),
                done.password.clone(),
            );
            let remember = done.remember;
            if remember || was_remembered {
                tasks.push(Task::perform(
                    async move {
                        tokio::task::spawn_blocking(move || {
                            if remember {
                                credentials::store(&tracker, &user, &password).err()
                            } else {
                                credentials::forget(&tracker, &user);
                                None
                            }
                        })
                        .await
                        .ok()
                        .flatten()
                    },
                    Message::Noted,
                ));
            }
        }
        // Before the first-run choices are made, no cache starts.
        let setting_up = !self.launch.demo && !self.settings.set_up;
        if !setting_up {
            self.start_cache(&done);
        }
        self.link_feed = Some(LinkFeed::new(done.client.link()));
        self.tracker_down = None;
        self.session = Some(done);
        if setting_up {
            self.screen = Screen::FirstRun(first_run::State::new(&self.settings));
            return Task::batch(tasks);
        }
        tasks.push(match self.pending_watch.take() {
            Some(id) => self.open_player(&id, &id, 0),
            None => self.open_catalogue(),
        });
        Task::batch(tasks)
    }

    /// The first-run set-up: once done, its choices are saved and the cache starts with them.
    fn first_run(&mut self, message: first_run::Message) -> Task<Message> {
        let Screen::FirstRun(state) = &mut self.screen else {
            return Task::none();
        };
        let (task, event) = state.update(message);
        let task = task.map(Message::FirstRun);
        match event {
            Some(first_run::Event::Done(settings)) => {
                self.settings = *settings;
                let saved = self.save_settings();
                if let Some(done) = self.session.clone() {
                    self.start_cache(&done);
                }
                let next = match self.pending_watch.take() {
                    Some(id) => self.open_player(&id, &id, 0),
                    None => self.open_catalogue(),
                };
                Task::batch([task, saved, next])
            }
            None => task,
        }
    }

    /// The status feed of the movie playing, which [`App::subscription`] follows.
    pub fn viewer_feed(&self) -> Option<&ViewerFeed> {
        self.viewer_feed.as_ref()
    }

    fn cache_options(&self, done: &login::LoggedIn) -> CacheOptions {
        let dir = self.settings.cache_dir();
        let key_path = if self.settings.cache_dir.is_some() {
            custom_store_key(&environment::store_key(), &dir.display().to_string())
        } else {
            environment::store_key()
        };
        let credentials = rivulet_tracker_client::Credentials {
            username: done.account.username.clone(),
            password: done.password.clone(),
        };
        let options = CacheOptions::new(done.tracker.clone(), credentials, dir, key_path)
            .storage_bytes(self.settings.storage_bytes())
            .upload_bps(self.settings.upload_bps())
            .download_bps(self.settings.download_bps());
        // A tracker on this machine (the demo, tests) gets a cache on this machine; any
        // other is served on every interface, on the port the user forwards.
        if tracker_is_local(&done.tracker) {
            options
        } else {
            options
                .listen(std::net::SocketAddr::from((
                    std::net::Ipv6Addr::UNSPECIFIED,
                    self.settings.listen_port,
                )))
                .passive_ports(rivulet_node_core::net::DEFAULT_PASSIVE_PORTS)
        }
    }

    fn start_cache(&mut self, done: &login::LoggedIn) {
        if !self.settings.share || self.sharing_paused {
            return;
        }
        let options = self.cache_options(done);
        if let Some(node) = &self.node {
            node.send(Command::StartCache(Box::new(options)));
        }
    }

    fn open_catalogue(&mut self) -> Task<Message> {
        let Some(s) = &self.session else {
            return Task::none();
        };
        let (mut state, task) = catalogue::State::new(s.client.clone(), s.account.clone());
        state.continue_watching = self
            .positions
            .recent(&s.tracker, &s.account.username)
            .map(|spot| catalogue::Resume {
                video: spot.video.clone(),
                secs: spot.secs,
                duration: spot.duration,
            })
            .collect();
        self.screen = Screen::Catalogue(state);
        task.map(Message::Catalogue)
    }

    fn open_points(&mut self) -> Task<Message> {
        let Some(s) = &self.session else {
            return Task::none();
        };
        let account = match &self.screen {
            Screen::Catalogue(c) => c.account.clone(),
            _ => s.account.clone(),
        };
        self.screen = Screen::Points(points::State::new(
            s.client.clone(),
            account,
            self.cache.clone(),
        ));
        self.points(points::Message::Refresh)
    }

    fn open_player(&mut self, id: &str, title: &str, duration_ms: u64) -> Task<Message> {
        let Some(s) = &self.session else {
            return Task::none();
        };
        let resume = self
            .positions
            .resume_at(&s.tracker, &s.account.username, id);
        let state = player::State::new(id, title, duration_ms).resuming_at(resume);
        if let Some(node) = &self.node {
            node.send(Command::Watch {
                client: s.client.clone(),
                video: id.to_owned(),
                playhead: state.playhead(),
            });
        }
        self.play_asked = Some(Instant::now());
        self.screen = Screen::Player(Box::new(state));
        Task::none()
    }

    /// A later launch: the window comes to the front and opens its link, now if logged in
    /// (leaving the movie playing, unless it is that one), else once logged in.
    fn second_launch(&mut self, handoff: crate::single::Handoff) -> Task<Message> {
        let focus = self.show_window();
        let Some(id) = handoff.watch else {
            return focus;
        };
        self.links_opened.push(id.clone());
        if self.session.is_none() {
            self.pending_watch = Some(id);
            return focus;
        }
        let open = match &self.screen {
            Screen::Player(p) if p.video_id == id => Task::none(),
            Screen::Player(_) => {
                self.stop_player();
                self.open_player(&id, &id, 0)
            }
            _ => self.open_player(&id, &id, 0),
        };
        Task::batch([focus, open])
    }

    fn catalogue(&mut self, message: catalogue::Message) -> Task<Message> {
        let Screen::Catalogue(state) = &mut self.screen else {
            return Task::none();
        };
        let (task, event) = state.update(message);
        let task = task.map(Message::Catalogue);
        match event {
            Some(catalogue::Event::Watch(v)) => {
                if let Some(s) = &mut self.session {
                    s.account = state.account.clone();
                }
                Task::batch([task, self.open_player(&v.id, &v.title, v.duration_ms)])
            }
            None => task,
        }
    }

    fn player(&mut self, message: player::Message) -> Task<Message> {
        let Screen::Player(state) = &mut self.screen else {
            return Task::none();
        };
        let (task, event) = state.update(message);
        if state.frames_shown > 0 && self.first_frame_ms.is_none() {
            self.first_frame_ms = Some(self.reporter.uptime_ms());
            self.play_to_frame_ms = self.play_asked.map(|t| t.elapsed().as_millis() as u64);
        }
        let task = task.map(Message::Player);
        match event {
            Some(player::Event::Back) => Task::batch([task, self.leave_player()]),
            Some(player::Event::Fullscreen(on)) => {
                let mode = if on {
                    window::Mode::Fullscreen
                } else {
                    window::Mode::Windowed
                };
                Task::batch([
                    task,
                    window::latest().and_then(move |id| window::set_mode::<Message>(id, mode)),
                ])
            }
            None => task,
        }
    }

    /// Leaves the player for the catalogue: the movie's place is kept, the viewer stops, the
    /// download area is cleaned.
    fn leave_player(&mut self) -> Task<Message> {
        self.stop_player();
        Task::batch([self.open_catalogue(), clean_downloads_task()])
    }

    /// Stops the movie playing (Back, another movie from a later launch, the window closing
    /// to the tray): where it was is kept and its viewer stops; the screen that replaces the
    /// player drops mpv.
    fn stop_player(&mut self) {
        self.remember_position();
        self.viewer_feed = None;
        if let Some(node) = &self.node {
            node.send(Command::StopWatching);
        }
    }

    fn points(&mut self, message: points::Message) -> Task<Message> {
        let Screen::Points(state) = &mut self.screen else {
            return Task::none();
        };
        let (task, event) = state.update(message);
        let task = task.map(Message::Points);
        match event {
            Some(points::Event::Back) => Task::batch([task, self.open_catalogue()]),
            None => task,
        }
    }

    fn pane(&mut self, message: pane::Message) -> Task<Message> {
        let Some(state) = &mut self.pane else {
            return Task::none();
        };
        let (task, event) = state.update(message);
        let task = task.map(Message::Pane);
        match event {
            Some(pane::Event::Apply(new)) => Task::batch([task, self.apply_settings(*new)]),
            Some(pane::Event::Forget) => Task::batch([task, self.forget()]),
            Some(pane::Event::Close) => {
                self.pane = None;
                task
            }
            None => task,
        }
    }

    /// Saves `new` and brings the running cache in line at once: new limits apply live; a
    /// new folder restarts the cache there.
    fn apply_settings(&mut self, new: Settings) -> Task<Message> {
        let moved = new.cache_dir() != self.settings.cache_dir();
        let sharing = (self.settings.share, new.share);
        let tracker_changed = new.tracker != self.settings.tracker;
        self.settings = new;
        if let (Some(node), Some(done)) = (&self.node, &self.session) {
            if sharing == (true, false) {
                node.send(Command::StopCache);
                self.cache = None;
            } else if !self.settings.share || (self.sharing_paused && sharing.0) {
                // Watch only stays watch only; paused from the tray, the new settings apply
                // when sharing resumes.
            } else if moved || sharing == (false, true) {
                self.sharing_paused = false;
                node.send(Command::StartCache(Box::new(self.cache_options(done))));
            } else {
                node.send(Command::SetLimits {
                    upload_bps: self.settings.upload_bps(),
                    storage_bytes: self.settings.storage_bytes(),
                    download_bps: self.settings.download_bps(),
                });
            }
        }
        if tracker_changed && self.session.is_some() {
            self.notice = Some("The new tracker address is used at the next log-in.".into());
        }
        self.save_settings()
    }

    /// Removes the remembered password from the keyring; the next start asks for it.
    fn forget(&mut self) -> Task<Message> {
        self.settings.remember = false;
        let (tracker, user) = (
            self.settings.tracker.clone(),
            self.settings.username.clone(),
        );
        self.notice = Some("Your password is no longer remembered.".into());
        Task::batch([
            self.save_settings(),
            Task::perform(
                async move {
                    tokio::task::spawn_blocking(move || credentials::forget(&tracker, &user))
                        .await
                        .err()
                        .map(|e| format!("could not forget the password: {e}"))
                },
                Message::Noted,
            ),
        ])
    }

    fn save_settings(&self) -> Task<Message> {
        if self.launch.demo {
            return Task::none();
        }
        let (settings, path) = (self.settings.clone(), self.settings_path.clone());
        Task::perform(
            async move {
                tokio::task::spawn_blocking(move || {
                    settings
                        .save(&path)
                        .err()
                        .map(|e| format!("could not save the settings to {}: {e}", path.display()))
                })
                .await
                .ok()
                .flatten()
            },
            Message::Noted,
        )
    }

    fn recalled(&mut self, password: Option<String>) -> Task<Message> {
        let Screen::Login(state) = &mut self.screen else {
            return Task::none();
        };
        match password {
            Some(p) => {
                state.password = p;
                self.login(login::Message::LogIn)
            }
            None => Task::none(),
        }
    }

    fn node_event(&mut self, event: NodeEvent) -> Task<Message> {
        match event {
            NodeEvent::Ready(handle) => {
                if self.launch.demo {
                    handle.send(Command::StartDemo(environment::demo_dir()));
                } else if let Some(done) = self
                    .session
                    .clone()
                    .filter(|_| self.settings.share && self.settings.set_up && !self.sharing_paused)
                {
                    let options = self.cache_options(&done);
                    handle.send(Command::StartCache(Box::new(options)));
                }
                self.node = Some(handle);
                Task::none()
            }
            NodeEvent::DemoWarming { held, k } => {
                self.warming = Some((held, k));
                self.screen = Screen::Starting(format!(
                    "Preparing the demo network… its caches hold {} of the {k} chunks of each segment the player needs",
                    held.min(k)
                ));
                Task::none()
            }
            NodeEvent::DemoReady(demo) => {
                self.warming = None;
                self.demo_ready_ms = Some(self.reporter.uptime_ms());
                if self.pending_watch.is_none() {
                    self.pending_watch = Some(crate::demo::DEMO_VIDEO.to_owned());
                }
                let mut state = login::State::new(&demo.tracker, &demo.username, false);
                state.password = demo.password;
                self.screen = Screen::Login(state);
                self.login(login::Message::LogIn)
            }
            NodeEvent::DemoFailed(e) => {
                self.notice = Some(format!("The demo network could not start: {e}"));
                self.screen = Screen::Starting(format!("The demo network could not start: {e}"));
                Task::none()
            }
            NodeEvent::CacheStarted => Task::none(),
            // A last report of a cache just stopped (watch only, logged out) is old news.
            NodeEvent::CacheStatus(_)
                if !self.settings.share || self.session.is_none() || self.sharing_paused =>
            {
                Task::none()
            }
            NodeEvent::CacheStatus(status) => {
                if let Some(p) = &mut self.pane {
                    p.cache = Some(status.clone());
                }
                if let Screen::Points(p) = &mut self.screen {
                    p.cache = Some(status.clone());
                }
                self.cache = Some(status);
                Task::none()
            }
            NodeEvent::CacheFailed(e) => {
                self.notice = Some(format!("The cache is not running: {e}"));
                Task::none()
            }
            NodeEvent::Watching {
                video,
                title,
                url,
                feed,
            } => {
                self.viewer_feed = Some(feed);
                self.for_player(&video, player::Message::StreamReady { url, title })
            }
            NodeEvent::WatchFailed { video, message } => {
                self.for_player(&video, player::Message::Failed(message))
            }
            NodeEvent::Viewer(status) => {
                let video = status.video.clone();
                self.for_player(&video, player::Message::Viewer(status))
            }
            NodeEvent::Stopped => {
                self.node = None;
                if self.closing {
                    iced::exit()
                } else {
                    Task::none()
                }
            }
        }
    }

    /// Passes `message` to the player if it plays `video`.
    fn for_player(&mut self, video: &str, message: player::Message) -> Task<Message> {
        match &self.screen {
            Screen::Player(p) if p.video_id == video => self.player(message),
            _ => Task::none(),
        }
    }

    /// Logs out: the movie's place is kept, the player and the cache stop (the cache tells
    /// the tracker it leaves; the next log-in starts it for that account), the session ends
    /// at the tracker, and the log-in screen comes back with the user name filled in. A
    /// password in the keyring stays until "Forget my saved password" in the settings.
    fn log_out(&mut self) -> Task<Message> {
        let Some(s) = self.end_session() else {
            return Task::none();
        };
        let client = s.client;
        // The session is gone from the app either way; a tracker that could not be told
        // lets it expire, and the status bar says so.
        Task::perform(
            async move {
                client
                    .logout()
                    .await
                    .err()
                    .map(|e| format!("The tracker was not told of the log-out: {e}"))
            },
            Message::Noted,
        )
    }

    /// Leaves the session in the app: the movie's place is kept, the player and the cache stop,
    /// the log-in screen comes back with the user name filled in. Returns the session that was.
    fn end_session(&mut self) -> Option<login::LoggedIn> {
        self.session.as_ref()?;
        self.stop_player();
        let s = self.session.take()?;
        self.link_feed = None;
        self.tracker_down = None;
        if let Some(node) = &self.node {
            node.send(Command::StopCache);
        }
        self.cache = None;
        self.pane = None;
        self.screen = Screen::Login(login::State::new(
            &s.tracker,
            &s.account.username,
            s.remember,
        ));
        Some(s)
    }

    /// The tracker became unreachable (the banner shows), came back (the banner goes, a
    /// catalogue that failed meanwhile loads again), or refused to renew the session (back
    /// to the log-in screen, saying why).
    fn link_changed(&mut self, link: Link) -> Task<Message> {
        if self.session.is_none() {
            return Task::none();
        }
        match link {
            Link::Unreachable { since, error } => {
                self.tracker_down = Some((since, error));
                Task::none()
            }
            Link::Up => {
                self.tracker_down = None;
                match &self.screen {
                    Screen::Catalogue(c) if c.error.is_some() => self.open_catalogue(),
                    _ => Task::none(),
                }
            }
            Link::SessionEnded { message, .. } => {
                self.end_session();
                if let Screen::Login(l) = &mut self.screen {
                    l.error = Some(format!(
                        "Your session has ended and the tracker refused to renew it ({message}). Log in again."
                    ));
                }
                Task::none()
            }
        }
    }

    /// Asks the tracker for the account: its answer (or not) moves the link.
    fn probe(&self) -> Task<Message> {
        let Some(s) = &self.session else {
            return Task::none();
        };
        let client = s.client.clone();
        // Only the link's change matters, which the subscription delivers.
        Task::perform(
            async move {
                let _ = client.me().await;
            },
            |()| Message::Noted(None),
        )
    }

    /// The session's link feed, which [`App::subscription`] follows while logged in.
    pub fn link_feed(&self) -> Option<&LinkFeed> {
        self.link_feed.as_ref()
    }

    /// Notes where the open player's movie was left, for the next time it opens.
    fn remember_position(&mut self) {
        let (Screen::Player(p), Some(s)) = (&self.screen, &self.session) else {
            return;
        };
        self.positions.record(crate::resume::Spot {
            tracker: s.tracker.clone(),
            user: s.account.username.clone(),
            video: p.video_id.clone(),
            title: p.title.clone(),
            secs: p.time,
            duration: p.duration,
            at_ms: u64::try_from(rivulet_node_core::clock::unix_ms()).unwrap_or(0),
        });
        if let Err(e) = self.positions.save() {
            self.notice = Some(format!("Where the movie was left could not be saved: {e}"));
        }
    }

    /// Stops the engine (cache and viewer tell the tracker), then exits; gives up waiting
    /// after a few seconds.
    fn close(&mut self) -> Task<Message> {
        if self.closing {
            return Task::none();
        }
        self.remember_position();
        self.closing = true;
        match &self.node {
            Some(node) if node.send(Command::Shutdown) => {
                Task::perform(tokio::time::sleep(Duration::from_secs(8)), |()| {
                    Message::ForceExit
                })
            }
            _ => iced::exit(),
        }
    }

    fn report(&mut self) {
        let mut status = Status {
            screen: match &self.screen {
                Screen::Starting(_) => "starting",
                Screen::Login(_) => "login",
                Screen::FirstRun(_) => "first-run",
                Screen::Catalogue(_) => "catalogue",
                Screen::Player(_) => "player",
                Screen::Points(_) => "points",
            }
            .into(),
            first_frame_ms: self.first_frame_ms,
            demo_ready_ms: self.demo_ready_ms,
            play_to_frame_ms: self.play_to_frame_ms,
            // That there is no tray is news for the user, not an error of the app.
            error: self.notice.clone().filter(|n| n != crate::tray::NO_TRAY),
            links_opened: self.links_opened.clone(),
            in_tray: self.in_tray,
            tray_shown: self.tray.is_shown(),
            user: self.session.as_ref().map(|s| s.account.username.clone()),
            points: self.session.as_ref().map(|s| s.account.balance),
            cache: self.cache.as_ref().map(|c| crate::report::CacheReport {
                storage_bytes: c.storage_bytes,
                upload_bps: c.upload_bps,
                download_bps: c.download_bps,
                sent_bytes: c.sent_bytes,
            }),
            pane_open: self.pane.is_some(),
            ..Status::default()
        };
        match &self.screen {
            Screen::Player(p) => {
                status.time_pos = (p.time * 10.0).round() / 10.0;
                status.paused = p.mpv_property("pause").as_deref() == Some("yes");
                status.frames_rendered = p.frames_rendered();
                status.frames_shown = p.frames_shown;
                status.from_caches_bytes = p.viewer.from_caches_bytes;
                status.from_origin_bytes = p.viewer.from_origin_bytes;
                status.peers = p.viewer.peers;
                if let player::Phase::Failed(e) = &p.phase {
                    status.error = Some(e.clone());
                }
            }
            Screen::Login(l) => {
                status.error = l.error.clone().or(status.error);
                status.login_name = Some(l.username.clone());
            }
            Screen::Catalogue(c) => {
                status.points = Some(c.account.balance);
                status.continue_watching = c
                    .continue_watching
                    .iter()
                    .map(|r| r.video.clone())
                    .collect();
            }
            Screen::Points(p) => status.points = Some(p.account.balance),
            Screen::Starting(s) if s.contains("could not") => status.error = Some(s.clone()),
            _ => {}
        }
        self.reporter.write(status);
    }

    pub fn view(&self) -> Element<'_, Message> {
        let main: Element<'_, Message> = match &self.screen {
            Screen::Starting(s) => {
                let mut page = column![text(s.clone())]
                    .spacing(12)
                    .align_x(iced::Alignment::Center);
                if let Some((held, k)) = self.warming {
                    page = page
                        .push(progress_bar(0.0..=k.max(1) as f32, held.min(k) as f32).length(360));
                }
                container(page).center(Length::Fill).into()
            }
            Screen::Login(s) => s.view().map(Message::Login),
            Screen::FirstRun(s) => s.view().map(Message::FirstRun),
            Screen::Catalogue(s) => s.view().map(Message::Catalogue),
            Screen::Player(s) => s.view().map(Message::Player),
            Screen::Points(s) => s.view().map(Message::Points),
        };
        let with_pane: Element<'_, Message> = match &self.pane {
            Some(p) => row![
                container(main).width(Length::Fill),
                p.view().map(Message::Pane)
            ]
            .into(),
            None => main,
        };
        let fullscreen = matches!(&self.screen, Screen::Player(p) if p.fullscreen);
        if self.session.is_none() || fullscreen {
            return with_pane;
        }
        let cache = match &self.cache {
            Some(c) => format!(
                "cache: {} stored, {} sent",
                crate::screen::bytes(c.used_bytes),
                crate::screen::bytes(c.sent_bytes)
            ),
            None if !self.settings.share => "watch only: no cache".into(),
            None if self.sharing_paused => "sharing paused".into(),
            None => "cache: starting".into(),
        };
        let bar = row![
            button("Catalogue")
                .on_press(Message::OpenCatalogue)
                .style(button::text),
            button("Points")
                .on_press(Message::OpenPoints)
                .style(button::text),
            button("Settings")
                .on_press(Message::OpenSettings)
                .style(button::text),
            text(self.notice.clone().unwrap_or_default())
                .size(13)
                .width(Length::Fill),
            text(cache).size(13),
            button("Log out")
                .on_press(Message::LogOut)
                .style(button::text),
        ]
        .spacing(6)
        .padding([2, 8])
        .align_y(iced::Alignment::Center);
        match &self.tracker_down {
            Some((since, error)) => {
                let tracker = self.session.as_ref().map_or("", |s| s.tracker.as_str());
                let banner =
                    container(text(tracker_down_sentence(tracker, *since, error)).size(14))
                        .padding([6, 12])
                        .width(Length::Fill)
                        .style(container::danger);
                column![banner, bar, with_pane].into()
            }
            None => column![bar, with_pane].into(),
        }
    }

    pub fn subscription(&self) -> Subscription<Message> {
        let mut subs = vec![
            Subscription::run(crate::engine::subscription_stream).map(Message::Node),
            window::close_requests().map(|_| Message::CloseRequested),
            Subscription::run(termination).map(|()| Message::Quit),
            Subscription::run(crate::single::handoffs).map(Message::SecondLaunch),
            iced::time::every(CLEAN_DOWNLOADS_EVERY).map(|_| Message::CleanDownloads),
        ];
        if let Some(feed) = &self.link_feed {
            subs.push(Subscription::run_with(feed.clone(), link_changes));
        }
        if let Some(feed) = self.tray_feed() {
            subs.push(Subscription::run_with(feed, crate::tray::events).map(Message::Tray));
        }
        if self.tracker_down.is_some() {
            subs.push(iced::time::every(PROBE_EVERY).map(|_| Message::Probe));
        }
        match &self.screen {
            Screen::Player(_) => {
                subs.push(
                    iced::time::every(Duration::from_millis(15))
                        .map(|_| Message::Player(player::Message::Tick)),
                );
                subs.push(
                    iced::keyboard::listen()
                        .filter_map(player::key_message)
                        .map(Message::Player),
                );
                if let Some(feed) = &self.viewer_feed {
                    subs.push(
                        Subscription::run_with(feed.clone(), crate::engine::viewer_status)
                            .map(Message::Node),
                    );
                }
            }
            Screen::Points(_) => subs.push(
                iced::time::every(Duration::from_secs(3))
                    .map(|_| Message::Points(points::Message::Refresh)),
            ),
            _ => {}
        }
        Subscription::batch(subs)
    }
}

/// The banner's sentence while the tracker at `tracker` has been unreachable since `since`.
pub fn tracker_down_sentence(tracker: &str, since: std::time::SystemTime, error: &str) -> String {
    let secs = since.elapsed().map_or(0, |d| d.as_secs());
    let how_long = if secs < 60 {
        "a moment".to_owned()
    } else {
        format!("{} min", secs / 60)
    };
    format!(
        "The tracker at {tracker} cannot be reached (for {how_long}); trying again every {} s. Playing continues from caches. ({error})",
        PROBE_EVERY.as_secs()
    )
}

/// Cleans the hidden download area off the UI thread (see [`clean_downloads`]).
fn clean_downloads_task() -> Task<Message> {
    Task::perform(
        async {
            let cleaned = tokio::task::spawn_blocking(|| {
                clean_downloads(&environment::downloads_dir(), DownloadLimits::default())
            })
            .await;
            if let Ok(n) = cleaned
                && n > 0
            {
                tracing::info!("removed {n} old files from the download area");
            }
            None
        },
        Message::Noted,
    )
}

/// SIGTERM or Ctrl-C, once: the full close (as "Quit" in the tray menu), so the engine stops
/// gracefully (the cache and the viewer tell the tracker they leave), whatever closing the
/// window would do.
fn termination() -> impl iced::futures::Stream<Item = ()> {
    iced::stream::channel(1, async |mut out| {
        use iced::futures::SinkExt as _;
        #[cfg(unix)]
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            let _ = out.send(()).await;
        }
        std::future::pending::<()>().await;
    })
}

/// A short stable name for a folder, so each custom cache folder gets its own store key:
/// the first 16 hex digits of its BLAKE3 hash (stable across Rust releases).
fn blake_name(s: &str) -> String {
    blake3::hash(s.as_bytes()).to_hex()[..16].to_owned()
}

/// The name [`blake_name`] gave before, from `DefaultHasher`: only to find a key written by
/// an older build on this toolchain (which is what a user upgrading the app has).
fn legacy_name(s: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Whether the tracker at `url` runs on this machine (`localhost`, 127.0.0.0/8, `::1`).
fn tracker_is_local(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The store key of the custom cache folder `dir`, beside `default_key`. A key an older
/// build wrote under its unstable name is renamed to the stable one once, so the store it
/// encrypts is not orphaned.
fn custom_store_key(default_key: &std::path::Path, dir: &str) -> PathBuf {
    let key = default_key.with_file_name(format!("store-{}.key", blake_name(dir)));
    let old = default_key.with_file_name(format!("store-{}.key", legacy_name(dir)));
    if !key.exists() && old.exists() {
        match std::fs::rename(&old, &key) {
            Ok(()) => tracing::info!(
                "renamed the store key {} to {}",
                old.display(),
                key.display()
            ),
            Err(e) => {
                tracing::warn!("could not rename the store key {}: {e}", old.display());
                return old;
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracker_on_this_machine_is_told_from_others() {
        for local in [
            "http://127.0.0.1:7878",
            "http://localhost:7878/",
            "https://[::1]:8443",
            "http://127.0.0.2",
        ] {
            assert!(tracker_is_local(local), "{local}");
        }
        for remote in [
            "https://tracker.example",
            "http://192.168.1.10:7878",
            "http://[2a00::1]:7878",
            "http://localhost.example:7878",
        ] {
            assert!(!tracker_is_local(remote), "{remote}");
        }
    }

    #[test]
    fn closing_keeps_sharing_only_when_asked_with_a_cache_and_a_tray() {
        let on = Settings::default();
        let shown = TrayState::Shown;
        assert_eq!(on_close(&on, true, &shown), OnClose::KeepSharing);
        // Any one missing: the full close, as before there was a tray.
        let off = Settings {
            keep_sharing_on_close: false,
            ..Settings::default()
        };
        let watch_only = Settings {
            share: false,
            ..Settings::default()
        };
        assert_eq!(on_close(&off, true, &shown), OnClose::Quit);
        assert_eq!(on_close(&watch_only, true, &shown), OnClose::Quit);
        assert_eq!(on_close(&on, false, &shown), OnClose::Quit);
        assert_eq!(on_close(&on, true, &TrayState::Unknown), OnClose::Quit);
        let absent = TrayState::Absent("no session bus".into());
        assert_eq!(on_close(&on, true, &absent), OnClose::Quit);
    }

    #[test]
    fn folder_names_are_stable() {
        // Fixed for good: a different value orphans every custom cache folder's store.
        assert_eq!(blake_name("/media/films"), blake_name("/media/films"));
        assert_eq!(
            blake_name("/media/films"),
            blake3::hash(b"/media/films").to_hex()[..16]
        );
        assert_ne!(blake_name("/media/films"), blake_name("/media/film"));
    }

    #[test]
    fn an_old_named_key_is_renamed_once() {
        let dir = tempfile::tempdir().unwrap();
        let default_key = dir.path().join("store.key");
        let folder = "/media/films";
        let old = dir
            .path()
            .join(format!("store-{}.key", legacy_name(folder)));
        std::fs::write(&old, b"old key").unwrap();
        let key = custom_store_key(&default_key, folder);
        assert_eq!(
            key,
            dir.path().join(format!("store-{}.key", blake_name(folder)))
        );
        assert_eq!(std::fs::read(&key).unwrap(), b"old key");
        assert!(!old.exists());
        // Both present: the new one wins and the old stays untouched.
        std::fs::write(&old, b"other").unwrap();
        assert_eq!(custom_store_key(&default_key, folder), key);
        assert_eq!(std::fs::read(&key).unwrap(), b"old key");
        assert!(old.exists());
    }
}
