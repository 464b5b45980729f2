//! Log-in screen: tracker address, user name, password, "remember me", and sign-up against
//! the tracker's API. Failures are said plainly (wrong password, unreachable, locked out).

use iced::widget::{button, checkbox, column, container, row, text, text_input};
use iced::{Element, Length, Task};
use rivulet_tracker_client::{Account, Credentials, TrackerClient};

use super::describe;

/// A successful log-in: everything the rest of the app needs.
#[derive(Clone, Debug)]
pub struct LoggedIn {
    /// The tracker's address as typed.
    pub tracker: String,
    pub client: TrackerClient,
    pub account: Account,
    /// Kept in memory for the app's cache, which logs in on its own.
    pub password: String,
    /// The user asked to be remembered.
    pub remember: bool,
}

#[derive(Debug, Default)]
pub struct State {
    pub tracker: String,
    pub username: String,
    pub password: String,
    pub remember: bool,
    /// A call is in flight.
    pub busy: bool,
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub enum Message {
    /// The tracker address field changed.
    Tracker(String),
    /// The user name field changed.
    Username(String),
    /// The password field changed.
    Password(String),
    /// "Remember me" toggled.
    Remember(bool),
    /// Log in with the fields.
    LogIn,
    /// Create the account, then log in.
    SignUp,
    /// The tracker answered.
    Done(Result<LoggedIn, String>),
}

/// What the log-in screen asks of the app.
#[derive(Clone, Debug)]
pub enum Event {
    LoggedIn(Box<LoggedIn>),
}

impl State {
    pub fn new(tracker: &str, username: &str, remember: bool) -> State {
        State {
            tracker: tracker.to_owned(),
            username: username.to_owned(),
            remember,
            ..State::default()
        }
    }

    pub fn update(&mut self, message: Message) -> (Task<Message>, Option<Event>) {
        match message {
            Message::Tracker(t) => self.tracker = t,
            Message::Username(u) => self.username = u,
            Message::Password(p) => self.password = p,
            Message::Remember(r) => self.remember = r,
            Message::LogIn => return (self.submit(false), None),
            Message::SignUp => return (self.submit(true), None),
            Message::Done(Ok(logged_in)) => {
                self.busy = false;
                self.error = None;
                return (Task::none(), Some(Event::LoggedIn(Box::new(logged_in))));
            }
            Message::Done(Err(e)) => {
                self.busy = false;
                self.error = Some(e);
            }
        }
        (Task::none(), None)
    }

    fn submit(&mut self, sign_up: bool) -> Task<Message> {
        if self.busy {
            return Task::none();
        }
        let tracker = self.tracker.trim().to_owned();
        if !(tracker.starts_with("http://") || tracker.starts_with("https://")) {
            self.error = Some(
                "The tracker address must start with http:// or https:// (for example http://127.0.0.1:7878)."
                    .into(),
            );
            return Task::none();
        }
        if self.username.trim().is_empty() || self.password.is_empty() {
            self.error = Some("Enter a user name and a password.".into());
            return Task::none();
        }
        self.busy = true;
        self.error = None;
        let credentials = Credentials {
            username: self.username.trim().to_owned(),
            password: self.password.clone(),
        };
        let remember = self.remember;
        Task::perform(
            log_in(tracker, credentials, sign_up, remember),
            Message::Done,
        )
    }

    pub fn view(&self) -> Element<'_, Message> {
        let mut log_in = button("Log in").padding([8, 16]);
        let mut sign_up = button("Sign up").padding([8, 16]).style(button::secondary);
        if !self.busy {
            log_in = log_in.on_press(Message::LogIn);
            sign_up = sign_up.on_press(Message::SignUp);
        }
        let mut form = column![
            text("Rivulet").size(36),
            text("Peer-assisted movies: watch, and earn points by sharing.").size(14),
            text("Tracker"),
            text_input("http://127.0.0.1:7878", &self.tracker)
                .padding(8)
                .on_input(Message::Tracker),
            text("User name"),
            text_input("user name", &self.username)
                .padding(8)
                .on_input(Message::Username)
                .on_submit(Message::LogIn),
            text("Password"),
            text_input("password", &self.password)
                .padding(8)
                .secure(true)
                .on_input(Message::Password)
                .on_submit(Message::LogIn),
            checkbox(self.remember)
                .label("Remember me (in the OS keyring)")
                .on_toggle(Message::Remember),
            row![log_in, sign_up].spacing(10),
        ]
        .spacing(8)
        .max_width(420);
        if self.busy {
            form = form.push(text("Talking to the tracker…"));
        }
        if let Some(e) = &self.error {
            form = form.push(text(e.clone()).style(text::danger));
        }
        container(form).center(Length::Fill).padding(20).into()
    }
}

async fn log_in(
    tracker: String,
    credentials: Credentials,
    sign_up: bool,
    remember: bool,
) -> Result<LoggedIn, String> {
    let anon = rivulet_node_core::env::tracker_client(&tracker).map_err(|e| describe(&e))?;
    if sign_up {
        anon.register(&credentials)
            .await
            .map_err(|e| describe(&e))?;
    }
    // The session is kept: logged in again before it expires and on a 401, so an app left
    // open for days keeps working without asking for the password again.
    let password = credentials.password.clone();
    let (client, account) = anon
        .login_kept_as(credentials)
        .await
        .map_err(|e| describe(&e))?;
    Ok(LoggedIn {
        tracker,
        client,
        account,
        password,
        remember,
    })
}
