//! First-run set-up, after the first log-in and before any cache starts: what the cache
//! does, how points are earned and spent, and the choices — share (a cache) or watch only,
//! storage and upload as 0.2 / 0.5 / 1 of 1.5 GB and 10 Mbit/s, the cache's download limit
//! (unlimited unless chosen: 10 / 25 / 50 Mbit/s or custom), the cache port, and whether
//! sharing goes on from the system tray when the window closes (on unless unticked). "Start"
//! saves them; the settings pane changes them later.

use iced::widget::{button, checkbox, column, container, row, text, text_input};
use iced::{Element, Length, Task};

use super::bytes;
use super::settings::{choices, custom_download_text, download_choices};
use crate::settings::{DownloadLimit, Limit, Settings};

/// The toggle's words, here and in the settings pane.
pub const KEEP_SHARING_LABEL: &str = "Keep sharing when the window closes";

#[derive(Debug)]
pub struct State {
    /// The choices as made so far.
    pub draft: Settings,
    /// The cache port, as typed.
    pub port_text: String,
    /// A custom download limit in Mbit/s, as typed.
    pub download_text: String,
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub enum Message {
    Share(bool),
    /// Storage as a multiplier of 1.5 GB.
    Storage(f64),
    /// Upload as a multiplier of 10 Mbit/s.
    Upload(f64),
    /// The download limit: unlimited or one of the rates offered.
    Download(DownloadLimit),
    /// A custom download limit in Mbit/s, as typed.
    DownloadCustom(String),
    ListenPort(String),
    /// Keep sharing from the system tray when the window closes.
    KeepSharing(bool),
    Start,
}

/// What the set-up asks of the app.
#[derive(Clone, Debug)]
pub enum Event {
    /// The choices are made: save them (marked set up) and start.
    Done(Box<Settings>),
}

impl State {
    pub fn new(settings: &Settings) -> State {
        State {
            draft: settings.clone(),
            port_text: settings.listen_port.to_string(),
            download_text: custom_download_text(settings.download),
            error: None,
        }
    }

    pub fn update(&mut self, message: Message) -> (Task<Message>, Option<Event>) {
        match message {
            Message::Share(on) => self.draft.share = on,
            Message::Storage(m) => self.draft.storage = Limit::Multiplier(m),
            Message::Upload(m) => self.draft.upload = Limit::Multiplier(m),
            Message::Download(limit) => {
                self.draft.download = limit;
                self.download_text.clear();
            }
            Message::DownloadCustom(typed) => self.download_text = typed,
            Message::ListenPort(p) => self.port_text = p,
            Message::KeepSharing(on) => self.draft.keep_sharing_on_close = on,
            Message::Start => match self.checked() {
                Ok(done) => return (Task::none(), Some(Event::Done(Box::new(done)))),
                Err(e) => self.error = Some(e),
            },
        }
        (Task::none(), None)
    }

    /// The choices with the typed port and download limit, marked set up; or what is wrong.
    fn checked(&self) -> Result<Settings, String> {
        let mut done = self.draft.clone();
        done.listen_port = Settings::parse_listen_port(&self.port_text)?;
        if !self.download_text.trim().is_empty() {
            done.download = DownloadLimit::parse_mbit(&self.download_text)?;
        }
        done.set_up = true;
        Ok(done)
    }

    pub fn view(&self) -> Element<'_, Message> {
        let mut page = column![
            text("Before you watch").size(24),
            text(
                "Rivulet movies come partly from other viewers. With sharing on, a cache on \
                 this computer keeps pieces of popular movies and uploads them to others while \
                 the app runs; every byte it uploads and a viewer confirms earns points, and \
                 points buy movies. With watch only, nothing is stored or uploaded and you \
                 earn no points."
            ),
            checkbox(self.draft.share)
                .label("Share: run a cache")
                .on_toggle(Message::Share),
        ]
        .spacing(12)
        .max_width(640);
        if self.draft.share {
            page = page
                .push(text(format!(
                    "Disk for the cache: {}",
                    bytes(self.draft.storage_bytes())
                )))
                .push(choices(self.draft.storage, Message::Storage))
                .push(text(format!(
                    "Upload for the cache: {:.1} Mbit/s",
                    self.draft.upload_bps() as f64 / 1e6
                )))
                .push(choices(self.draft.upload, Message::Upload))
                .push(text(format!(
                    "Download for the cache: {}",
                    self.draft.download.label()
                )))
                .push(
                    text("What the cache fetches to keep; your own viewing is not limited.")
                        .size(13),
                )
                .push(
                    row![
                        download_choices(self.draft.download, Message::Download),
                        text_input("custom Mbit/s", &self.download_text)
                            .on_input(Message::DownloadCustom)
                            .width(110)
                            .padding(6),
                    ]
                    .spacing(8),
                )
                .push(text(format!(
                    "Cache port (TCP; forward it and {}–{} on your router if you can)",
                    rivulet_node_core::net::DEFAULT_PASSIVE_PORTS.start(),
                    rivulet_node_core::net::DEFAULT_PASSIVE_PORTS.end()
                )))
                .push(
                    text_input("7880", &self.port_text)
                        .on_input(Message::ListenPort)
                        .width(90)
                        .padding(6),
                )
                .push(
                    checkbox(self.draft.keep_sharing_on_close)
                        .label(KEEP_SHARING_LABEL)
                        .on_toggle(Message::KeepSharing),
                )
                .push(
                    text(
                        "Rivulet then stays in the system tray and the cache goes on \
                         uploading; Quit in the tray's menu stops it.",
                    )
                    .size(13),
                );
        }
        page = page.push(
            row![button("Start").on_press(Message::Start)]
                .push(text("Settings change all of this later.").size(13))
                .spacing(12)
                .align_y(iced::Alignment::Center),
        );
        if let Some(e) = &self.error {
            page = page.push(text(e.clone()).style(text::danger));
        }
        container(page).center_x(Length::Fill).padding(24).into()
    }
}
