//! Catalogue screen: a grid of posters with title, length, price and bought/watched marks,
//! a search box, and buying with a confirmation that shows the balance.

use std::collections::HashMap;

use iced::widget::{button, column, container, image, row, scrollable, text, text_input};
use iced::{Element, Length, Task};
use rivulet_tracker_client::{Account, Purchase, TrackerClient, Video};

use super::{clock, describe};

#[derive(Debug)]
pub struct State {
    client: TrackerClient,
    pub account: Account,
    pub videos: Vec<Video>,
    posters: HashMap<String, image::Handle>,
    pub search: String,
    /// The movie whose purchase waits for confirmation.
    pub confirming: Option<String>,
    pub loading: bool,
    pub error: Option<String>,
    pub notice: Option<String>,
    /// Movies left part-way, newest first: the "continue watching" row.
    pub continue_watching: Vec<Resume>,
}

/// A movie left part-way.
#[derive(Clone, Debug, PartialEq)]
pub struct Resume {
    pub video: String,
    pub secs: f64,
    pub duration: f64,
}

/// Movies the "continue watching" row shows at most.
const CONTINUE_SHOWN: usize = 6;

#[derive(Clone, Debug)]
pub enum Message {
    /// The catalogue and the account, fresh from the tracker.
    Loaded(Result<(Vec<Video>, Account), String>),
    /// A poster, decoded (None when missing or broken).
    Poster(String, Option<image::Handle>),
    /// The search box changed.
    Search(String),
    /// Reload from the tracker.
    Refresh,
    /// Ask to buy a movie (shows the confirmation).
    Buy(String),
    /// Confirmed: buy it.
    ConfirmBuy,
    /// Not now.
    CancelBuy,
    /// The tracker's answer to a purchase.
    Bought(Result<Purchase, String>),
    /// Play a bought movie.
    Watch(String),
}

/// What the catalogue asks of the app.
#[derive(Clone, Debug)]
pub enum Event {
    /// Open the player on this movie.
    Watch(Video),
}

impl State {
    /// The screen for a logged-in account, and the task that fills it.
    pub fn new(client: TrackerClient, account: Account) -> (State, Task<Message>) {
        let mut state = State {
            client,
            account,
            videos: Vec::new(),
            posters: HashMap::new(),
            search: String::new(),
            confirming: None,
            loading: false,
            error: None,
            notice: None,
            continue_watching: Vec::new(),
        };
        let task = state.refresh();
        (state, task)
    }

    fn refresh(&mut self) -> Task<Message> {
        self.loading = true;
        let client = self.client.clone();
        Task::perform(
            async move {
                let videos = client.videos().await.map_err(|e| describe(&e))?;
                let account = client.me().await.map_err(|e| describe(&e))?;
                Ok((videos, account))
            },
            Message::Loaded,
        )
    }

    /// Whether the poster of `id` arrived and decoded.
    pub fn has_poster(&self, id: &str) -> bool {
        self.posters.contains_key(id)
    }

    /// The movies the search matches, in catalogue order.
    pub fn shown(&self) -> impl Iterator<Item = &Video> {
        let needle = self.search.trim().to_lowercase();
        self.videos
            .iter()
            .filter(move |v| needle.is_empty() || v.title.to_lowercase().contains(&needle))
    }

    pub fn update(&mut self, message: Message) -> (Task<Message>, Option<Event>) {
        match message {
            Message::Loaded(Ok((videos, account))) => {
                self.loading = false;
                self.error = None;
                let wanted: Vec<String> = videos
                    .iter()
                    .filter(|v| !self.posters.contains_key(&v.id))
                    .map(|v| v.id.clone())
                    .collect();
                self.videos = videos;
                self.account = account;
                let tasks = wanted.into_iter().map(|id| {
                    let client = self.client.clone();
                    Task::perform(
                        async move {
                            let poster = fetch_poster(client, id.clone()).await;
                            (id, poster)
                        },
                        |(id, poster)| Message::Poster(id, poster),
                    )
                });
                return (Task::batch(tasks), None);
            }
            Message::Loaded(Err(e)) => {
                self.loading = false;
                self.error = Some(e);
            }
            Message::Poster(id, Some(handle)) => {
                self.posters.insert(id, handle);
            }
            Message::Poster(_, None) => {}
            Message::Search(s) => self.search = s,
            Message::Refresh => return (self.refresh(), None),
            Message::Buy(id) => {
                self.notice = None;
                self.error = None;
                self.confirming = Some(id);
            }
            Message::CancelBuy => self.confirming = None,
            Message::ConfirmBuy => {
                let Some(id) = self.confirming.take() else {
                    return (Task::none(), None);
                };
                let client = self.client.clone();
                return (
                    Task::perform(
                        async move { client.buy(&id).await.map_err(|e| describe(&e)) },
                        Message::Bought,
                    ),
                    None,
                );
            }
            Message::Bought(Ok(purchase)) => {
                self.account.balance = purchase.balance;
                if !self.account.bought.contains(&purchase.video) {
                    self.account.bought.push(purchase.video.clone());
                }
                if let Some(v) = self.videos.iter_mut().find(|v| v.id == purchase.video) {
                    v.bought = true;
                    self.notice = Some(format!(
                        "Bought \"{}\" for {} points; {} left.",
                        v.title, purchase.charged, purchase.balance
                    ));
                }
            }
            Message::Bought(Err(e)) => self.error = Some(e),
            Message::Watch(id) => match self.videos.iter().find(|v| v.id == id) {
                Some(v) if v.bought => return (Task::none(), Some(Event::Watch(v.clone()))),
                Some(v) => self.error = Some(format!("Buy \"{}\" before watching it.", v.title)),
                None => self.error = Some("That movie is no longer in the catalogue.".into()),
            },
        }
        (Task::none(), None)
    }

    fn card<'a>(&'a self, video: &'a Video) -> Element<'a, Message> {
        let poster: Element<'a, Message> = match self.posters.get(&video.id) {
            Some(h) => image(h.clone()).width(220).height(124).into(),
            None => container(text("…"))
                .width(220)
                .height(124)
                .center_x(220)
                .center_y(124)
                .style(container::rounded_box)
                .into(),
        };
        let mut marks = Vec::new();
        if video.bought {
            marks.push("bought");
        }
        if self.account.watched.contains(&video.id) {
            marks.push("watched");
        }
        let action = if video.bought {
            button("Watch").on_press(Message::Watch(video.id.clone()))
        } else {
            button(text(format!("Buy for {} points", video.price)))
                .on_press(Message::Buy(video.id.clone()))
                .style(button::secondary)
        };
        column![
            poster,
            text(video.title.clone()).size(16),
            text(format!(
                "{} · {} points{}",
                clock(video.duration_ms),
                video.price,
                if marks.is_empty() {
                    String::new()
                } else {
                    format!(" · {}", marks.join(", "))
                }
            ))
            .size(13),
            action,
        ]
        .spacing(4)
        .width(230)
        .into()
    }

    pub fn view(&self) -> Element<'_, Message> {
        let header = row![
            text(format!(
                "{} · {} points",
                self.account.username, self.account.balance
            ))
            .size(18)
            .width(Length::Fill),
            text_input("Search titles", &self.search)
                .on_input(Message::Search)
                .width(260)
                .padding(6),
            button("Refresh")
                .on_press(Message::Refresh)
                .style(button::secondary),
        ]
        .spacing(10)
        .align_y(iced::Alignment::Center);
        let mut page = column![header].spacing(12);
        if let Some(id) = &self.confirming
            && let Some(v) = self.videos.iter().find(|v| &v.id == id)
        {
            let after = self.account.balance.checked_sub(v.price);
            let line = match after {
                Some(left) => format!(
                    "Buy \"{}\" for {} points? You have {}; {} would be left.",
                    v.title, v.price, self.account.balance, left
                ),
                None => format!(
                    "\"{}\" costs {} points and you have {}: not enough yet.",
                    v.title, v.price, self.account.balance
                ),
            };
            page = page.push(
                container(
                    row![
                        text(line).width(Length::Fill),
                        button("Confirm").on_press(Message::ConfirmBuy),
                        button("Cancel")
                            .on_press(Message::CancelBuy)
                            .style(button::secondary),
                    ]
                    .spacing(10)
                    .align_y(iced::Alignment::Center),
                )
                .padding(10)
                .style(container::rounded_box),
            );
        }
        if let Some(e) = &self.error {
            page = page.push(text(e.clone()).style(text::danger));
        }
        if let Some(n) = &self.notice {
            page = page.push(text(n.clone()).style(text::success));
        }
        let resumable: Vec<Element<'_, Message>> = self
            .continue_watching
            .iter()
            .filter_map(|r| {
                let v = self.videos.iter().find(|v| v.id == r.video && v.bought)?;
                let at = super::clock((r.secs * 1000.0) as u64);
                let label = if r.duration > 0.0 {
                    format!(
                        "{} · {at} of {}",
                        v.title,
                        super::clock((r.duration * 1000.0) as u64)
                    )
                } else {
                    format!("{} · {at}", v.title)
                };
                Some(
                    button(text(label))
                        .on_press(Message::Watch(v.id.clone()))
                        .style(button::secondary)
                        .into(),
                )
            })
            .take(CONTINUE_SHOWN)
            .collect();
        if !resumable.is_empty() {
            page = page.push(text("Continue watching").size(16));
            page = page.push(iced::widget::row(resumable).spacing(8).wrap());
        }
        let cards: Vec<Element<'_, Message>> = self.shown().map(|v| self.card(v)).collect();
        if cards.is_empty() {
            page = page.push(text(if self.loading {
                "Loading the catalogue…"
            } else if self.videos.is_empty() {
                "The catalogue is empty."
            } else {
                "No title matches the search."
            }));
        } else {
            page = page.push(scrollable(
                iced::widget::row(cards)
                    .spacing(16)
                    .wrap()
                    .vertical_spacing(16),
            ));
        }
        page.padding(16).into()
    }
}

async fn fetch_poster(client: TrackerClient, id: String) -> Option<image::Handle> {
    let jpeg = client.poster(&id).await.ok()?;
    tokio::task::spawn_blocking(move || {
        let decoded = ::image::load_from_memory(&jpeg).ok()?.to_rgba8();
        let (w, h) = decoded.dimensions();
        Some(image::Handle::from_rgba(w, h, decoded.into_raw()))
    })
    .await
    .ok()
    .flatten()
}
