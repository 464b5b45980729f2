//! The pages for everyone: landing, about, sign-up, log-in, log-out, and a signed-in
//! account's own dashboard (points, uploaded and credited bytes, running nodes, bought and
//! watched movies).

use std::net::SocketAddr;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use rivulet_tracker_client::{NodeInfo, NodeKind};
use serde::Deserialize;

use super::layout::{self, Nav, PageError, bytes_data, page};
use super::session::{
    self, CSRF_FIELD, FormToken, SignedIn, Visitor, check_form_csrf, check_session_csrf,
};
use crate::accounts::{self, AccountError};
use crate::api::{AppState, client_ip};

/// Turns a form that could not be read into its error page.
pub fn form_rejection(rejection: FormRejection) -> PageError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return PageError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Form too large",
            format!(
                "The form sent more than {} bytes; nothing was saved.",
                super::MAX_FORM_BYTES
            ),
        );
    }
    PageError::bad_request(format!(
        "The form could not be read: {}",
        rejection.body_text()
    ))
}

/// `GET /`.
pub async fn landing(visitor: Visitor) -> Markup {
    let s = visitor.session.as_ref();
    page(
        "Movies from the people watching them",
        s,
        Nav::Home,
        html! {
            section.hero {
                h1 { "Movies streamed by the people watching them" }
                p.lead {
                    "Rivulet is video on demand where viewers help each other. Every movie is cut "
                    "into segments and each segment is coded into many chunks, any "
                    em { "k" } " of which rebuild it. Caches on people's machines keep a "
                    "different share of the popular movies and upload chunks to viewers; the "
                    "origin only fills in what the caches cannot."
                }
                @if let Some(s) = s {
                    p { "You are logged in as " strong { (s.username) } "." }
                    p.actions { a.button href="/dashboard" { "Go to your dashboard" } }
                } @else {
                    p.actions {
                        a.button href="/signup" { "Create an account" }
                        a.button.secondary href="/login" { "Log in" }
                    }
                }
            }
            section.cards {
                div.card {
                    h2 { "Watch" }
                    p { "Install the desktop app, log in, and buy a movie with points. Chunks "
                        "come from several caches at once and from the origin for the rest." }
                }
                div.card {
                    h2 { "Share" }
                    p { "The app also runs a cache in the background. Every byte it uploads "
                        "that a viewer verifies earns your account points." }
                }
                div.card {
                    h2 { "Save" }
                    p { "The more the caches send, the less the origin has to: in the report's "
                        "test the origin sent 40% less than plain client–server streaming." }
                }
            }
        },
    )
}

/// `GET /about`.
pub async fn about(visitor: Visitor) -> Markup {
    page(
        "About",
        visitor.session.as_ref(),
        Nav::About,
        html! {
            section.prose {
                h1 { "About Rivulet" }
                p { "Rivulet is a peer-assisted video-on-demand system. A central tracker keeps "
                    "accounts, the catalogue, incentive points and the live map of the network, "
                    "and runs the origin that holds every movie. Viewers run the desktop app, "
                    "which plays movies and, in the background, runs a cache that stores coded "
                    "chunks of popular movies and uploads them to other viewers." }
                h2 { "How a movie travels" }
                ol {
                    li { "The tracker ingests a movie into segments; each segment is coded with "
                         "a Reed–Solomon code so that any k of its n chunks rebuild it." }
                    li { "Caches are told which chunks to keep, distinct across caches, so that "
                         "chunks from different caches are always useful together." }
                    li { "A viewer asks a few caches for chunks of the segments ahead of the "
                         "playhead and the origin for the rest, verifies every chunk and rebuilds "
                         "the movie byte for byte." }
                }
                h2 { "Points" }
                p { "A cache's account is credited for the bytes its viewers confirm as verified "
                    "chunks. Credited bytes become points; points buy movies, and a bought movie "
                    "can be watched again for free." }
                h2 { "Where it comes from" }
                p { "Rivulet follows a capstone report on a distributed video-on-demand system "
                    "and the papers it builds on: Lee, Zhang, Shao, Chen, Parekh and Ramchandran, "
                    em { "An optimized distributed video-on-demand streaming system: theory and design" }
                    " (Allerton 2012), and Pawar et al., "
                    em { "Codes for a distributed caching based video-on-demand system" } "." }
                p { "Programs talk to the tracker through its HTTP API; its description is at "
                    a href="/api/v1/openapi.json" { "/api/v1/openapi.json" } "." }
            }
        },
    )
}

/// The fields of the sign-up form. Missing fields read as empty and are reported next to
/// their input.
#[derive(Debug, Default, Deserialize)]
pub struct SignUpForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
    csrf: Option<String>,
}

/// What went wrong with a sign-up, field by field.
#[derive(Debug, Default)]
struct SignUpErrors {
    username: Option<String>,
    password: Option<String>,
    confirm: Option<String>,
    form: Option<String>,
}

fn signup_page(token: &FormToken, username: &str, errors: &SignUpErrors) -> Markup {
    let field_error = |e: &Option<String>, id: &str| {
        html! { @if let Some(e) = e { p.field-error id=(id) role="alert" { (e) } } }
    };
    page(
        "Sign up",
        None,
        Nav::SignUp,
        html! {
            section.form-page {
                h1 { "Create an account" }
                p { "New accounts start with points to buy their first movies." }
                @if let Some(e) = &errors.form { p.form-error #form-error role="alert" { (e) } }
                form #signup method="post" action="/signup" novalidate {
                    input type="hidden" name=(CSRF_FIELD) value=(token.csrf);
                    label for="username" { "Username" }
                    input #username .invalid[errors.username.is_some()] type="text" name="username"
                        value=(username) autocomplete="username" maxlength="64" autofocus;
                    p.hint { "3–32 letters, digits, '.', '-' or '_'." }
                    (field_error(&errors.username, "username-error"))
                    label for="password" { "Password" }
                    input #password .invalid[errors.password.is_some()] type="password"
                        name="password" autocomplete="new-password" maxlength="300";
                    p.hint { "At least 8 characters, letters mixed with digits or symbols, "
                             "and not your username." }
                    (field_error(&errors.password, "password-error"))
                    label for="confirm" { "Password again" }
                    input #confirm .invalid[errors.confirm.is_some()] type="password"
                        name="confirm" autocomplete="new-password" maxlength="300";
                    (field_error(&errors.confirm, "confirm-error"))
                    button #submit type="submit" { "Sign up" }
                }
                p { "Already have an account? " a href="/login" { "Log in" } "." }
            }
        },
    )
}

/// `GET /signup`.
pub async fn signup_form(visitor: Visitor, headers: HeaderMap) -> Response {
    if visitor.session.is_some() {
        return Redirect::to("/dashboard").into_response();
    }
    let token = FormToken::for_request(&headers);
    token.attach(signup_page(&token, "", &SignUpErrors::default()).into_response())
}

/// `POST /signup`: checks the form, creates the account, logs it in.
pub async fn signup(
    State(state): State<AppState>,
    info: ConnectInfo<SocketAddr>,
    visitor: Visitor,
    headers: HeaderMap,
    form: Result<Form<SignUpForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(form_rejection)?;
    check_form_csrf(&headers, form.csrf.as_deref())?;
    let token = FormToken::for_request(&headers);
    let mut errors = SignUpErrors::default();
    let username = form.username.trim();
    if username.is_empty() {
        errors.username = Some("Choose a username.".into());
    } else if let Err(e) = accounts::check_username(username) {
        errors.username = Some(sentence(&e));
    }
    if form.password.is_empty() {
        errors.password = Some("Choose a password.".into());
    } else if let Err(e) = accounts::check_password(username, &form.password) {
        errors.password = Some(sentence(&e));
    }
    if errors.password.is_none() && form.confirm != form.password {
        errors.confirm = Some("The two passwords differ.".into());
    }
    let refuse = |status: StatusCode, errors: &SignUpErrors| {
        Ok((status, signup_page(&token, username, errors)).into_response())
    };
    if errors.username.is_some() || errors.password.is_some() || errors.confirm.is_some() {
        return refuse(StatusCode::BAD_REQUEST, &errors);
    }
    if let Err(wait) = state.signup_limiter.attempt("", client_ip(&info)) {
        errors.form = Some(format!(
            "Too many new accounts from this address; try again in {} s.",
            wait.as_secs().max(1)
        ));
        return refuse(StatusCode::TOO_MANY_REQUESTS, &errors);
    }
    let hash = accounts::hash_password_async(form.password.clone())
        .await
        .map_err(PageError::internal)?;
    let id = match accounts::create(
        &state.db.write,
        username,
        &hash,
        false,
        state.settings.signup_points(),
    )
    .await
    {
        Ok(id) => id,
        Err(e @ AccountError::UsernameTaken(_)) => {
            errors.username = Some(sentence(&e));
            return refuse(StatusCode::CONFLICT, &errors);
        }
        Err(e) => return Err(PageError::internal(e)),
    };
    // Whoever was logged in on this browser is not any more.
    if let Some(old) = &visitor.session {
        state
            .sessions
            .end(&state.db.write, &old.token)
            .await
            .map_err(PageError::internal)?;
    }
    start(&state, id, visitor.https, "/dashboard").await
}

/// An account error as a sentence.
fn sentence(e: &AccountError) -> String {
    let s = e.to_string();
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => s,
    }
}

/// Starts a session for `account_id` and sends the visitor on to `to` with its cookie.
async fn start(
    state: &AppState,
    account_id: i64,
    https: bool,
    to: &str,
) -> Result<Response, PageError> {
    let (token, expires_at) = accounts::start_session(&state.db.write, account_id)
        .await
        .map_err(PageError::internal)?;
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session::session_cookie(
            &token,
            expires_at - rivulet_node_core::clock::unix_secs() as i64,
            https,
        ),
    );
    Ok(response)
}

/// What the log-in page is told in its address.
#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    expired: Option<String>,
    next: Option<String>,
}

/// The fields of the log-in form.
#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
    csrf: Option<String>,
}

fn login_page(
    token: &FormToken,
    username: &str,
    next: Option<&str>,
    notice: Option<&str>,
    error: Option<&str>,
) -> Markup {
    page(
        "Log in",
        None,
        Nav::LogIn,
        html! {
            section.form-page {
                h1 { "Log in" }
                @if let Some(n) = notice { p.notice #notice role="status" { (n) } }
                @if let Some(e) = error { p.form-error #form-error role="alert" { (e) } }
                form #login method="post" action="/login" novalidate {
                    input type="hidden" name=(CSRF_FIELD) value=(token.csrf);
                    @if let Some(next) = next { input type="hidden" name="next" value=(next); }
                    label for="username" { "Username" }
                    input #username type="text" name="username" value=(username)
                        autocomplete="username" maxlength="64" autofocus[username.is_empty()];
                    label for="password" { "Password" }
                    input #password type="password" name="password"
                        autocomplete="current-password" maxlength="300"
                        autofocus[!username.is_empty()];
                    button #submit type="submit" { "Log in" }
                }
                p { "No account yet? " a href="/signup" { "Sign up" } "." }
            }
        },
    )
}

/// `GET /login`.
pub async fn login_form(
    visitor: Visitor,
    headers: HeaderMap,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let next = session::safe_next(query.next.as_deref());
    if visitor.session.is_some() {
        return Redirect::to(next.as_deref().unwrap_or("/dashboard")).into_response();
    }
    let token = FormToken::for_request(&headers);
    let notice = (visitor.stale || query.expired.is_some())
        .then_some("Your session has ended. Log in again to go on.");
    let mut response =
        token.attach(login_page(&token, "", next.as_deref(), notice, None).into_response());
    if visitor.stale {
        response.headers_mut().append(
            header::SET_COOKIE,
            session::clear_session_cookie(visitor.https),
        );
    }
    response
}

/// `POST /login`: checks the password within the failed-log-in limits.
pub async fn login(
    State(state): State<AppState>,
    info: ConnectInfo<SocketAddr>,
    visitor: Visitor,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(form_rejection)?;
    check_form_csrf(&headers, form.csrf.as_deref())?;
    let token = FormToken::for_request(&headers);
    let next = session::safe_next(form.next.as_deref());
    let username = form.username.trim();
    let refuse = |status: StatusCode, message: String| {
        Ok((
            status,
            login_page(&token, username, next.as_deref(), None, Some(&message)),
        )
            .into_response())
    };
    if username.is_empty() || form.password.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Enter your username and your password.".into(),
        );
    }
    if accounts::check_username(username).is_err() {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Wrong username or password.".into(),
        );
    }
    let ip = client_ip(&info);
    if let Err(wait) = state.login_limiter.attempt(username, ip) {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed log-ins: this account is locked for now. Try again in {} s.",
                wait.as_secs().max(1)
            ),
        );
    }
    let id = match accounts::verify_login(&state.db.read, username, &form.password).await {
        Ok(id) => id,
        Err(AccountError::BadCredentials) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "Wrong username or password.".into(),
            );
        }
        Err(AccountError::Disabled(_)) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "This account is disabled; ask the tracker's operator.".into(),
            );
        }
        Err(e) => return Err(PageError::internal(e)),
    };
    state.login_limiter.succeeded(username, ip);
    start(
        &state,
        id,
        visitor.https,
        next.as_deref().unwrap_or("/dashboard"),
    )
    .await
}

/// The fields of a form that only carries its CSRF token.
#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    csrf: Option<String>,
}

/// `POST /logout`: ends the session and clears its cookie.
pub async fn logout(
    State(state): State<AppState>,
    visitor: Visitor,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(form_rejection)?;
    if let Some(session) = &visitor.session {
        check_session_csrf(session, form.csrf.as_deref())?;
        state
            .sessions
            .end(&state.db.write, &session.token)
            .await
            .map_err(PageError::internal)?;
    }
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session::clear_session_cookie(visitor.https),
    );
    Ok(response)
}

/// A movie's title from the catalogue, or its id when it is gone.
async fn titles(state: &AppState, ids: &[String]) -> Vec<(String, String)> {
    let videos = state.catalogue.all().await;
    ids.iter()
        .map(|id| {
            let title = videos
                .iter()
                .find(|v| &v.record.id == id)
                .map_or_else(|| id.clone(), |v| v.record.title.clone());
            (id.clone(), title)
        })
        .collect()
}

/// A node's kind as a word.
pub fn kind(k: NodeKind) -> &'static str {
    match k {
        NodeKind::Origin => "origin",
        NodeKind::Cache => "cache",
        NodeKind::Viewer => "viewer",
    }
}

/// A node's capacity: upload cap and storage for caches.
pub fn capacity(n: &NodeInfo) -> Markup {
    html! {
        @if n.kind == NodeKind::Cache {
            (layout::rate(n.upload_bps as f64)) " up · " (bytes_data(n.storage_bytes))
        } @else { "—" }
    }
}

/// What a node holds, movie by movie.
pub fn holdings(n: &NodeInfo) -> Markup {
    html! {
        @if n.holdings.iter().all(|h| h.indices.is_empty()) { "—" }
        @for h in n.holdings.iter().filter(|h| !h.indices.is_empty()) {
            span.chip title={ "chunk indices " (format!("{:?}", h.indices)) } {
                (h.video) ": " (h.indices.len()) " chunks"
            }
            " "
        }
    }
}

/// `GET /dashboard`: the signed-in account's points, bytes, nodes and movies.
pub async fn dashboard(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
) -> Result<Markup, PageError> {
    let account = state
        .tracker()
        .me(&session.caller)
        .await
        .map_err(PageError::internal)?;
    let running = state
        .tracker()
        .my_nodes(&session.caller)
        .await
        .map_err(PageError::internal)?;
    let bought = titles(&state, &account.bought).await;
    let watched = titles(&state, &account.watched).await;
    let watching: Vec<String> = running.iter().filter_map(|n| n.watching.clone()).collect();
    let watching = titles(&state, &watching).await;
    let title_of = |id: &str| {
        watching
            .iter()
            .find(|(i, _)| i == id)
            .map_or(id.to_owned(), |(_, t)| t.clone())
    };
    let now = layout::now_secs();
    Ok(page(
        "Dashboard",
        Some(&session),
        Nav::Dashboard,
        html! {
            h1 { "Hello, " (account.username) }
            section.stats {
                div.stat {
                    p.label { "Points" }
                    p.value #points { (account.balance) }
                }
                div.stat {
                    p.label { "Uploaded by your caches" }
                    p.value #uploaded { (bytes_data(account.uploaded_bytes)) }
                }
                div.stat {
                    p.label { "Credited (confirmed by viewers)" }
                    p.value #credited { (bytes_data(account.credited_bytes)) }
                }
            }
            section {
                h2 { "Your running nodes" }
                @if running.is_empty() {
                    p.empty #no-nodes { "No node of yours is running. Start the desktop app to "
                                        "run a cache and earn points." }
                } @else {
                    table #my-nodes {
                        thead { tr { th { "Node" } th { "Kind" } th { "Address" } th { "Capacity" }
                                     th { "Holds" } th { "Watching" } th { "Last seen" } } }
                        tbody {
                            @for n in &running {
                                tr data-node=(n.node_id) {
                                    td { code { (n.node_id) } }
                                    td { (kind(n.kind)) }
                                    td { @if n.advertise.is_empty() { "—" } @else { (n.advertise) } }
                                    td { (capacity(n)) }
                                    td { (holdings(n)) }
                                    td.watching {
                                        @if let Some(w) = &n.watching { (title_of(w)) } @else { "—" }
                                    }
                                    td { (layout::ago(n.last_seen, now)) }
                                }
                            }
                        }
                    }
                }
            }
            section.two {
                div {
                    h2 { "Bought" }
                    @if bought.is_empty() { p.empty { "Nothing yet." } }
                    ul #bought { @for (id, title) in &bought { li data-video=(id) { (title) } } }
                }
                div {
                    h2 { "Watched" }
                    @if watched.is_empty() { p.empty { "Nothing yet." } }
                    ul #watched { @for (id, title) in &watched { li data-video=(id) { (title) } } }
                }
            }
        },
    ))
}
