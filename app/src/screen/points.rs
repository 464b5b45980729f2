//! Points screen: balance, uploaded and credited bytes, earnings over time (sampled while the
//! app runs), and what the cache is serving now.

use std::time::{Duration, Instant};

use iced::widget::{button, column, row, text};
use iced::{Element, Task};
use rivulet_node_core::cache::CacheStatus;
use rivulet_tracker_client::{Account, TrackerClient};

use super::{bytes, describe};

/// How many samples of the balance are kept.
const HISTORY: usize = 120;

/// One reading of the account.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Since the screen's clock started.
    pub at: Duration,
    pub balance: u64,
    pub credited_bytes: u64,
}

#[derive(Debug)]
pub struct State {
    client: TrackerClient,
    pub account: Account,
    pub history: Vec<Sample>,
    started: Instant,
    pub cache: Option<CacheStatus>,
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub enum Message {
    /// Read the account again.
    Refresh,
    Loaded(Result<Account, String>),
    Back,
}

/// What the points screen asks of the app.
#[derive(Clone, Debug)]
pub enum Event {
    Back,
}

impl State {
    pub fn new(client: TrackerClient, account: Account, cache: Option<CacheStatus>) -> State {
        let mut state = State {
            client,
            account: account.clone(),
            history: Vec::new(),
            started: Instant::now(),
            cache,
            error: None,
        };
        state.record(&account);
        state
    }

    fn record(&mut self, account: &Account) {
        let sample = Sample {
            at: self.started.elapsed(),
            balance: account.balance,
            credited_bytes: account.credited_bytes,
        };
        if self.history.last().map(|s| (s.balance, s.credited_bytes))
            != Some((sample.balance, sample.credited_bytes))
        {
            self.history.push(sample);
            if self.history.len() > HISTORY {
                self.history.remove(0);
            }
        }
    }

    pub fn update(&mut self, message: Message) -> (Task<Message>, Option<Event>) {
        match message {
            Message::Refresh => {
                let client = self.client.clone();
                return (
                    Task::perform(
                        async move { client.me().await.map_err(|e| describe(&e)) },
                        Message::Loaded,
                    ),
                    None,
                );
            }
            Message::Loaded(Ok(account)) => {
                self.error = None;
                self.record(&account);
                self.account = account;
            }
            Message::Loaded(Err(e)) => self.error = Some(e),
            Message::Back => return (Task::none(), Some(Event::Back)),
        }
        (Task::none(), None)
    }

    pub fn view(&self) -> Element<'_, Message> {
        let a = &self.account;
        let mut page = column![
            row![
                button("Back")
                    .on_press(Message::Back)
                    .style(button::secondary),
                button("Refresh").on_press(Message::Refresh),
            ]
            .spacing(8),
            text(format!("{} points", a.balance)).size(32),
            text(format!(
                "Uploaded {} · credited {} (bytes viewers confirmed)",
                bytes(a.uploaded_bytes),
                bytes(a.credited_bytes)
            )),
            text("Earnings over time").size(18),
        ]
        .spacing(8)
        .padding(16);
        let top = self
            .history
            .iter()
            .map(|s| s.balance)
            .max()
            .unwrap_or(1)
            .max(1);
        for s in self.history.iter().rev().take(12) {
            let bar = "█".repeat(((s.balance as f64 / top as f64) * 30.0).round() as usize);
            page = page.push(
                text(format!(
                    "{:>5}s  {:>6} pts  {}  {}",
                    s.at.as_secs(),
                    s.balance,
                    bar,
                    bytes(s.credited_bytes)
                ))
                .font(iced::Font::MONOSPACE)
                .size(13),
            );
        }
        page = page.push(text("Serving now").size(18));
        match &self.cache {
            None => page = page.push(text("The cache is not running.")),
            Some(c) => {
                page = page.push(text(format!(
                    "Sent {} to viewers · fetched {} from the origin · {} of {} stored",
                    bytes(c.sent_bytes),
                    bytes(c.fetched_bytes),
                    bytes(c.used_bytes),
                    bytes(c.storage_bytes)
                )));
                for h in &c.holdings {
                    page = page.push(
                        text(format!(
                            "{}: {} chunks per segment",
                            h.video,
                            h.indices.len()
                        ))
                        .size(13),
                    );
                }
            }
        }
        if let Some(e) = &self.error {
            page = page.push(text(e.clone()).style(text::danger));
        }
        page.into()
    }
}
