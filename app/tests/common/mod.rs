//! Shared by the app's tests: a real tracker on loopback (`rivulet-localnet`), a way to
//! run the tasks `update` returns without a window, and the app driven message by message.

#![allow(dead_code)]

pub mod bus;
pub mod clear;
pub mod real_app;
pub mod x11;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use iced::Task;
use iced::futures::StreamExt as _;
use rivulet_app::app::{App, Message, Screen};
use rivulet_app::engine::{self as node, NodeEvent};
use rivulet_app::link::Launch;
use rivulet_app::screen::login;
use rivulet_app::settings::Settings;
use tokio::sync::mpsc::UnboundedReceiver;

pub const PASSWORD: &str = "screen-pass-1";

/// Points every file the app and its engine write under one temporary folder for this test
/// process, without a sound card or a display for the screens.
pub fn isolate() -> PathBuf {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("rivulet-app-test")
            .tempdir()
            .expect("temporary folder")
            .keep();
        // SAFETY: set once, before any thread of this test reads the environment.
        unsafe {
            std::env::set_var("RIVULET_HOME", &dir);
            std::env::set_var("RIVULET_MPV_AO", "null");
            std::env::set_var("ICED_TEST_BACKEND", "tiny-skia");
        }
        dir
    })
    .clone()
}

/// Runs `task` to its end (outside a window: only its outputs matter), with a time limit.
pub async fn outputs<M: Send + 'static>(task: Task<M>) -> Vec<M> {
    let Some(mut stream) = iced_runtime::task::into_stream(task) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
            Ok(Some(iced_runtime::Action::Output(m))) => out.push(m),
            Ok(Some(_)) => {}
            Ok(None) => return out,
            Err(_) => panic!("a task did not finish within 60 s"),
        }
    }
}

/// The app with its engine, driven by hand.
pub struct Driver {
    pub app: App,
    pub events: Option<UnboundedReceiver<NodeEvent>>,
    pub dir: tempfile::TempDir,
}

impl Driver {
    /// A fresh app (own settings file and cache folder); with the engine when `engine`.
    pub async fn new(engine: bool) -> Driver {
        Driver::with_settings(engine, |_| {}).await
    }

    /// [`Driver::new`] with its settings changed by `tune` before the app starts.
    pub async fn with_settings(engine: bool, tune: impl FnOnce(&mut Settings)) -> Driver {
        let home = isolate();
        let dir = tempfile::tempdir_in(&home).unwrap();
        let mut settings = Settings {
            cache_dir: Some(dir.path().join("cache")),
            storage: rivulet_app::settings::Limit::Custom(200_000_000),
            upload: rivulet_app::settings::Limit::Custom(1_000_000_000),
            // The first-run set-up has its own test.
            set_up: true,
            ..Settings::default()
        };
        tune(&mut settings);
        let path = dir.path().join("settings.json");
        settings.save(&path).unwrap();
        let (app, task) = App::new(Launch::default(), path);
        let mut driver = Driver {
            app,
            events: None,
            dir,
        };
        driver.run(task).await;
        if engine {
            let (handle, events) = node::spawn();
            driver.events = Some(events);
            driver.send(Message::Node(NodeEvent::Ready(handle))).await;
        }
        driver
    }

    /// Starts the app again on the same settings file, as a person relaunching it would
    /// (the engine, if any, keeps running for the new app).
    pub async fn restart(&mut self) {
        let (app, task) = App::new(Launch::default(), self.dir.path().join("settings.json"));
        self.app = app;
        self.run(task).await;
    }

    /// Updates with `message` and with every message its tasks produce, to the end.
    pub async fn send(&mut self, message: Message) {
        let task = self.app.update(message);
        self.run(task).await;
    }

    async fn run(&mut self, task: Task<Message>) {
        let mut queue = std::collections::VecDeque::from(outputs(task).await);
        while let Some(m) = queue.pop_front() {
            let task = self.app.update(m);
            queue.extend(outputs(task).await);
        }
    }

    /// Feeds engine events to the app until `done` holds, for at most `limit`.
    pub async fn until(&mut self, limit: Duration, mut done: impl FnMut(&App) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(&self.app) {
            let events = self.events.as_mut().expect("the engine runs");
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(e)) => self.send(Message::Node(e)).await,
                Ok(None) | Err(_) => return false,
            }
        }
        true
    }

    /// Logs in through the log-in screen's messages.
    pub async fn log_in(&mut self, tracker: &str, user: &str, password: &str) {
        for m in [
            login::Message::Tracker(tracker.into()),
            login::Message::Username(user.into()),
            login::Message::Password(password.into()),
            login::Message::LogIn,
        ] {
            self.send(Message::Login(m)).await;
        }
    }

    /// The log-in screen's error, if it shows one.
    pub fn login_error(&self) -> Option<String> {
        match &self.app.screen {
            Screen::Login(l) => l.error.clone(),
            _ => None,
        }
    }

    /// The full close (as SIGTERM or Quit in the tray): stops the engine and waits for it.
    pub async fn close(mut self) {
        if self.events.is_some() {
            let _ = self.app.update(Message::Quit);
            let stopped = self
                .until(Duration::from_secs(20), |app| app.node.is_none())
                .await;
            assert!(stopped, "the engine did not stop within 20 s");
        }
    }
}
