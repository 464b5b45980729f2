//! Settings pane: tracker address; sharing on (a cache) or watch only; cache size and upload
//! cap as 0.2 / 0.5 / 1 of 1.5 GB and 10 Mbit/s or custom values; the cache's download limit
//! (unlimited, 10 / 25 / 50 Mbit/s or custom); cache folder; whether sharing goes on from the
//! system tray when the window closes (and, when no tray is there, that closing quits).
//! "Apply" hands the new settings to the app, which saves them and changes the running cache
//! at once.

use std::path::PathBuf;

use iced::widget::{button, checkbox, column, container, row, text, text_input};
use iced::{Element, Length, Task};
use rivulet_node_core::cache::{CacheStatus, MULTIPLIERS};

use super::bytes;
use crate::settings::{DOWNLOAD_CHOICES_MBIT, DownloadLimit, Limit, Settings};

#[derive(Debug)]
pub struct State {
    /// The settings as edited.
    pub draft: Settings,
    /// Custom storage in GB, as typed.
    pub storage_text: String,
    /// Custom upload in Mbit/s, as typed.
    pub upload_text: String,
    /// Custom download limit in Mbit/s, as typed.
    pub download_text: String,
    pub cache_dir_text: String,
    /// The cache port, as typed.
    pub port_text: String,
    pub error: Option<String>,
    /// What the running cache reports.
    pub cache: Option<CacheStatus>,
    /// No system tray was found: closing the window quits (said under the toggle).
    pub no_tray: bool,
}

#[derive(Clone, Debug)]
pub enum Message {
    Tracker(String),
    /// Storage as a multiplier of 1.5 GB.
    StorageMultiplier(f64),
    /// Custom storage in GB, as typed.
    StorageCustom(String),
    /// Upload as a multiplier of 10 Mbit/s.
    UploadMultiplier(f64),
    /// Custom upload in Mbit/s, as typed.
    UploadCustom(String),
    /// Download limit: unlimited or one of [`DOWNLOAD_CHOICES_MBIT`].
    Download(DownloadLimit),
    /// Custom download limit in Mbit/s, as typed.
    DownloadCustom(String),
    CacheDir(String),
    /// The cache port, as typed.
    ListenPort(String),
    /// Share (run a cache) or watch only.
    Share(bool),
    /// Keep sharing from the system tray when the window closes.
    KeepSharing(bool),
    /// Check the draft and hand it to the app.
    Apply,
    /// Remove the remembered password from the OS keyring.
    Forget,
    Close,
}

/// What the pane asks of the app.
#[derive(Clone, Debug)]
pub enum Event {
    Apply(Box<Settings>),
    /// Forget the remembered log-in.
    Forget,
    Close,
}

impl State {
    pub fn new(settings: &Settings, cache: Option<CacheStatus>) -> State {
        let storage_text = match settings.storage {
            Limit::Custom(b) => format!("{}", b as f64 / 1e9),
            Limit::Multiplier(_) => String::new(),
        };
        let upload_text = match settings.upload {
            Limit::Custom(b) => format!("{}", b as f64 / 1e6),
            Limit::Multiplier(_) => String::new(),
        };
        State {
            draft: settings.clone(),
            storage_text,
            upload_text,
            download_text: custom_download_text(settings.download),
            cache_dir_text: settings
                .cache_dir
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            port_text: settings.listen_port.to_string(),
            error: None,
            cache,
            no_tray: false,
        }
    }

    pub fn update(&mut self, message: Message) -> (Task<Message>, Option<Event>) {
        match message {
            Message::Tracker(t) => self.draft.tracker = t,
            Message::StorageMultiplier(m) => {
                self.draft.storage = Limit::Multiplier(m);
                self.storage_text.clear();
            }
            Message::StorageCustom(s) => self.storage_text = s,
            Message::UploadMultiplier(m) => {
                self.draft.upload = Limit::Multiplier(m);
                self.upload_text.clear();
            }
            Message::UploadCustom(s) => self.upload_text = s,
            Message::Download(limit) => {
                self.draft.download = limit;
                self.download_text.clear();
            }
            Message::DownloadCustom(s) => self.download_text = s,
            Message::CacheDir(s) => self.cache_dir_text = s,
            Message::ListenPort(s) => self.port_text = s,
            Message::Share(on) => self.draft.share = on,
            Message::KeepSharing(on) => self.draft.keep_sharing_on_close = on,
            Message::Apply => match self.checked() {
                Ok(settings) => {
                    self.error = None;
                    self.draft = settings.clone();
                    return (Task::none(), Some(Event::Apply(Box::new(settings))));
                }
                Err(e) => self.error = Some(e),
            },
            Message::Forget => {
                self.draft.remember = false;
                return (Task::none(), Some(Event::Forget));
            }
            Message::Close => return (Task::none(), Some(Event::Close)),
        }
        (Task::none(), None)
    }

    /// The draft with the typed custom values, or what is wrong with it.
    fn checked(&self) -> Result<Settings, String> {
        let mut s = self.draft.clone();
        let tracker = s.tracker.trim();
        if !(tracker.starts_with("http://") || tracker.starts_with("https://")) {
            return Err("The tracker address must start with http:// or https://.".into());
        }
        s.tracker = tracker.to_owned();
        if !self.storage_text.trim().is_empty() {
            let gb = positive(&self.storage_text, "cache size in GB")?;
            s.storage = Limit::Custom((gb * 1e9) as u64);
        }
        if !self.upload_text.trim().is_empty() {
            let mbit = positive(&self.upload_text, "upload in Mbit/s")?;
            s.upload = Limit::Custom((mbit * 1e6) as u64);
        }
        if !self.download_text.trim().is_empty() {
            s.download = DownloadLimit::parse_mbit(&self.download_text)?;
        }
        s.listen_port = Settings::parse_listen_port(&self.port_text)?;
        let dir = self.cache_dir_text.trim();
        s.cache_dir = if dir.is_empty() {
            None
        } else if PathBuf::from(dir).is_absolute() {
            Some(PathBuf::from(dir))
        } else {
            return Err(format!(
                "The cache folder must be an absolute path, not {dir:?}."
            ));
        };
        Ok(s)
    }

    pub fn view(&self) -> Element<'_, Message> {
        let mut pane = column![
            text("Settings").size(22),
            text("Tracker"),
            text_input("http://127.0.0.1:7878", &self.draft.tracker)
                .on_input(Message::Tracker)
                .padding(6),
            self.sharing(),
            text(format!("Cache size: {}", bytes(self.draft.storage_bytes()))),
            row![
                choices(self.draft.storage, Message::StorageMultiplier),
                text_input("custom GB", &self.storage_text)
                    .on_input(Message::StorageCustom)
                    .width(90)
                    .padding(6),
            ]
            .spacing(8),
            text(format!(
                "Upload: {:.1} Mbit/s",
                self.draft.upload_bps() as f64 / 1e6
            )),
            row![
                choices(self.draft.upload, Message::UploadMultiplier),
                text_input("custom Mbit/s", &self.upload_text)
                    .on_input(Message::UploadCustom)
                    .width(90)
                    .padding(6),
            ]
            .spacing(8),
            text(format!("Download: {}", self.draft.download.label())),
            download_choices(self.draft.download, Message::Download),
            text_input("custom Mbit/s", &self.download_text)
                .on_input(Message::DownloadCustom)
                .width(90)
                .padding(6),
            text("Cache folder (empty: the default)"),
            text_input(
                &crate::environment::default_cache_dir()
                    .display()
                    .to_string(),
                &self.cache_dir_text
            )
            .on_input(Message::CacheDir)
            .padding(6),
            text(format!(
                "Cache port (TCP; forward it and {}–{} on your router)",
                rivulet_node_core::net::DEFAULT_PASSIVE_PORTS.start(),
                rivulet_node_core::net::DEFAULT_PASSIVE_PORTS.end()
            )),
            text_input("7880", &self.port_text)
                .on_input(Message::ListenPort)
                .width(90)
                .padding(6),
            row![
                button("Apply").on_press(Message::Apply),
                button("Close")
                    .on_press(Message::Close)
                    .style(button::secondary),
            ]
            .spacing(8),
        ]
        .spacing(6);
        if self.draft.remember {
            pane = pane.push(
                button("Forget my saved password")
                    .on_press(Message::Forget)
                    .style(button::secondary),
            );
        }
        if let Some(e) = &self.error {
            pane = pane.push(text(e.clone()).style(text::danger));
        }
        if let Some(c) = &self.cache {
            pane = pane.push(text(format!(
                "Running cache: {} of {} used, upload cap {:.1} Mbit/s, download {}{}",
                bytes(c.used_bytes),
                bytes(c.storage_bytes),
                c.upload_bps as f64 / 1e6,
                DownloadLimit::Capped(c.download_bps).label(),
                c.problem
                    .as_ref()
                    .map(|p| format!(" · problem: {p}"))
                    .unwrap_or_default()
            )));
            pane = pane.push(text(c.reach_line()));
        }
        container(pane)
            .width(360)
            .height(Length::Fill)
            .padding(12)
            .style(container::rounded_box)
            .into()
    }
}

impl State {
    /// Share or watch only, what that means, and (while sharing) the "keep sharing when the
    /// window closes" toggle with what happens instead when there is no tray.
    fn sharing(&self) -> Element<'_, Message> {
        let mut part = column![
            checkbox(self.draft.share)
                .label("Share: a cache uploads movie chunks to other viewers and earns points")
                .on_toggle(Message::Share),
            text(if self.draft.share {
                "Points are earned by what your cache uploads and spent on movies."
            } else {
                "Watch only: no cache runs; you spend points but earn none."
            })
            .size(13),
        ]
        .spacing(4);
        if self.draft.share {
            part = part.push(
                checkbox(self.draft.keep_sharing_on_close)
                    .label(super::first_run::KEEP_SHARING_LABEL)
                    .on_toggle(Message::KeepSharing),
            );
            if self.no_tray && self.draft.keep_sharing_on_close {
                part = part.push(text(crate::tray::NO_TRAY).size(13).style(text::warning));
            }
        }
        part.into()
    }
}

/// The 0.2 / 0.5 / 1 multiplier buttons, the `current` one highlighted.
pub(super) fn choices<'a, M: Clone + 'a>(current: Limit, pick: fn(f64) -> M) -> Element<'a, M> {
    let buttons = MULTIPLIERS.iter().map(|&m| {
        let chosen = current == Limit::Multiplier(m);
        button(text(format!("{m}×")))
            .style(if chosen {
                button::primary
            } else {
                button::secondary
            })
            .on_press(pick(m))
            .into()
    });
    iced::widget::row(buttons).spacing(6).into()
}

/// The "Unlimited" and 10 / 25 / 50 Mbit/s buttons, the `current` one highlighted.
pub(super) fn download_choices<'a, M: Clone + 'a>(
    current: DownloadLimit,
    pick: fn(DownloadLimit) -> M,
) -> Element<'a, M> {
    let offered = std::iter::once(DownloadLimit::Unlimited).chain(
        DOWNLOAD_CHOICES_MBIT
            .iter()
            .map(|&mbit| DownloadLimit::Capped(mbit * 1_000_000)),
    );
    let buttons = offered.map(|limit| {
        let label = match limit {
            DownloadLimit::Unlimited => "Unlimited".to_owned(),
            capped => capped.label(),
        };
        button(text(label))
            .style(if current.bps() == limit.bps() {
                button::primary
            } else {
                button::secondary
            })
            .on_press(pick(limit))
            .into()
    });
    // Wrapped: four buttons do not fit the narrow pane on one line.
    iced::widget::row(buttons)
        .spacing(6)
        .wrap()
        .vertical_spacing(6)
        .into()
}

/// What the custom download box starts with: the limit when no button shows it.
pub(super) fn custom_download_text(limit: DownloadLimit) -> String {
    let offered = DOWNLOAD_CHOICES_MBIT.map(|mbit| mbit * 1_000_000);
    match limit.bps() {
        0 => String::new(),
        bps if offered.contains(&bps) => String::new(),
        bps => format!("{}", bps as f64 / 1e6),
    }
}

fn positive(typed: &str, what: &str) -> Result<f64, String> {
    match typed.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!(
            "The {what} must be a positive number, not {:?}.",
            typed.trim()
        )),
    }
}
