//! Points screen: balance, uploaded and credited bytes, earnings over time (a bar chart of
//! what the tracker credited, per bucket, over the last hour, day or month), and what the
//! cache is serving now.

use iced::widget::{Space, button, column, container, row, text};
use iced::{Element, Length, Task};
use rivulet_node_core::cache::CacheStatus;
use rivulet_tracker_client::{Account, Earnings, TrackerClient};

use super::{bytes, describe};

/// How far back the chart reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    Hour,
    Day,
    Month,
}

impl Span {
    /// Minutes of history and buckets to ask the tracker for.
    fn query(self) -> (u32, u32) {
        match self {
            Span::Hour => (60, 60),
            Span::Day => (24 * 60, 48),
            Span::Month => (30 * 24 * 60, 30),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Span::Hour => "the last hour",
            Span::Day => "the last day",
            Span::Month => "the last 30 days",
        }
    }
}

/// Height of the chart's tallest bar, in pixels.
const CHART_HEIGHT: f32 = 120.0;

#[derive(Debug)]
pub struct State {
    client: TrackerClient,
    pub account: Account,
    pub span: Span,
    /// Earnings over `span`, as the tracker last sent them.
    pub earnings: Option<Earnings>,
    pub cache: Option<CacheStatus>,
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub enum Message {
    /// Read the account and its earnings again.
    Refresh,
    Loaded(Result<Account, String>),
    EarningsLoaded(Result<Earnings, String>),
    /// Show another span of history.
    Span(Span),
    Back,
}

/// What the points screen asks of the app.
#[derive(Clone, Debug)]
pub enum Event {
    Back,
}

impl State {
    pub fn new(client: TrackerClient, account: Account, cache: Option<CacheStatus>) -> State {
        State {
            client,
            account,
            span: Span::Hour,
            earnings: None,
            cache,
            error: None,
        }
    }

    pub fn update(&mut self, message: Message) -> (Task<Message>, Option<Event>) {
        match message {
            Message::Refresh => return (self.refresh(), None),
            Message::Loaded(Ok(account)) => {
                self.error = None;
                self.account = account;
            }
            Message::EarningsLoaded(Ok(earnings)) => self.earnings = Some(earnings),
            Message::Loaded(Err(e)) | Message::EarningsLoaded(Err(e)) => self.error = Some(e),
            Message::Span(span) => {
                self.span = span;
                self.earnings = None;
                return (self.refresh(), None);
            }
            Message::Back => return (Task::none(), Some(Event::Back)),
        }
        (Task::none(), None)
    }

    fn refresh(&self) -> Task<Message> {
        let (client, history) = (self.client.clone(), self.client.clone());
        let (minutes, buckets) = self.span.query();
        Task::batch([
            Task::perform(
                async move { client.me().await.map_err(|e| describe(&e)) },
                Message::Loaded,
            ),
            Task::perform(
                async move {
                    history
                        .earnings(minutes, buckets)
                        .await
                        .map_err(|e| describe(&e))
                },
                Message::EarningsLoaded,
            ),
        ])
    }

    /// Points and credited bytes over the span shown.
    pub fn span_totals(&self) -> (u64, u64) {
        self.earnings.as_ref().map_or((0, 0), |e| {
            e.buckets
                .iter()
                .fold((0, 0), |(p, c), b| (p + b.points, c + b.credited_bytes))
        })
    }

    pub fn view(&self) -> Element<'_, Message> {
        let a = &self.account;
        let spans = [Span::Hour, Span::Day, Span::Month].map(|s| {
            button(text(match s {
                Span::Hour => "Hour",
                Span::Day => "Day",
                Span::Month => "30 days",
            }))
            .style(if s == self.span {
                button::primary
            } else {
                button::secondary
            })
            .on_press(Message::Span(s))
            .into()
        });
        let (points, credited) = self.span_totals();
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
            row![
                text("Earnings over time").size(18),
                iced::widget::row(spans).spacing(6)
            ]
            .spacing(16)
            .align_y(iced::Alignment::Center),
            text(format!(
                "Earned {points} points ({} credited) in {}",
                bytes(credited),
                self.span.label()
            )),
            self.chart(),
        ]
        .spacing(8)
        .padding(16);
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

    /// Credited bytes per bucket as bars, oldest on the left.
    fn chart(&self) -> Element<'_, Message> {
        let Some(e) = &self.earnings else {
            return text("Loading the earnings…").into();
        };
        let top = e
            .buckets
            .iter()
            .map(|b| b.credited_bytes)
            .max()
            .unwrap_or(0)
            .max(1);
        let bars = e.buckets.iter().map(|b| {
            let height = if b.credited_bytes == 0 {
                1.0
            } else {
                (b.credited_bytes as f32 / top as f32 * CHART_HEIGHT).max(3.0)
            };
            column![
                Space::new().height(Length::Fill),
                container(Space::new())
                    .width(Length::Fill)
                    .height(height)
                    .style(if b.credited_bytes == 0 {
                        container::secondary
                    } else {
                        container::primary
                    }),
            ]
            .width(Length::Fill)
            .height(CHART_HEIGHT)
            .into()
        });
        let span = e.bucket_secs * e.buckets.len() as u64;
        column![
            text(format!("tallest bar {}", bytes(top))).size(12),
            iced::widget::row(bars).spacing(2).height(CHART_HEIGHT),
            row![
                text(format!("{} ago", ago(span))).size(12),
                Space::new().width(Length::Fill),
                text("now").size(12),
            ],
        ]
        .spacing(4)
        .max_width(720)
        .into()
    }
}

/// A span of seconds, roughly, for the chart's axis.
fn ago(secs: u64) -> String {
    match secs {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3600 => format!("{} hours", s / 3600),
        s => format!("{} minutes", s / 60),
    }
}
