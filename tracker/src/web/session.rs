//! Cookie sessions and CSRF tokens for the web app.
//!
//! A log-in starts a session in the same `sessions` table the API uses; its token travels
//! only in the `rivulet_session` cookie (HttpOnly, SameSite=Lax, Path=/, Max-Age = the
//! session's lifetime), so a page session expires like an API token and ends at log-out.
//! Forms carry a CSRF token:
//! - for a signed-in visitor, a hash of the session token (a page can only know it if it was
//!   served to the cookie's holder);
//! - before log-in (log-in and sign-up forms), a signed double submit: a random nonce in the
//!   `rivulet_form` cookie and, in the form, an HMAC of that nonce under a key that lives
//!   only in this process.

use std::sync::OnceLock;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::layout::PageError;
use crate::accounts::Caller;
use crate::api::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "rivulet_session";
/// The pre-log-in form cookie's name.
pub const FORM_COOKIE: &str = "rivulet_form";
/// The hidden form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// How long a pre-log-in form nonce lasts.
const FORM_COOKIE_SECONDS: i64 = 2 * 3600;

/// A signed-in visitor.
#[derive(Clone, Debug)]
pub struct Session {
    /// The session token from the cookie.
    pub token: String,
    pub caller: Caller,
    pub username: String,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
}

/// Whoever asks for a page: maybe signed in; `stale` when a session cookie came that no
/// longer names a live session (expired, or ended elsewhere).
#[derive(Clone, Debug)]
pub struct Visitor {
    pub session: Option<Session>,
    pub stale: bool,
    /// Whether the request came over HTTPS (through a proxy that says so), so cookies get
    /// the `Secure` attribute.
    pub https: bool,
}

/// The value of cookie `name`, if the request sent it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

fn is_hex_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// A `Set-Cookie` value with the attributes every cookie of ours has.
fn set_cookie(name: &str, value: &str, max_age: i64, same_site: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("rivulet_invalid=; Max-Age=0"))
}

/// The cookie that carries a new session for `max_age` seconds.
pub fn session_cookie(token: &str, max_age: i64, secure: bool) -> HeaderValue {
    set_cookie(SESSION_COOKIE, token, max_age.max(0), "Lax", secure)
}

/// The cookie that removes the session cookie.
pub fn clear_session_cookie(secure: bool) -> HeaderValue {
    set_cookie(SESSION_COOKIE, "", 0, "Lax", secure)
}

/// The CSRF token of a session: a hash of its token.
pub fn session_csrf(token: &str) -> String {
    hex::encode(Sha256::digest(
        format!("rivulet web csrf\0{token}").as_bytes(),
    ))
}

/// The key that signs pre-log-in form nonces: random, once per process.
fn form_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        key
    })
}

/// The CSRF token for a pre-log-in form nonce.
fn form_csrf(nonce: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(form_key()).expect("HMAC takes any key size");
    mac.update(nonce.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Compares secrets in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The pre-log-in form token for this request, and the cookie to set if the request had
/// no usable nonce yet.
#[derive(Debug)]
pub struct FormToken {
    pub csrf: String,
    pub set_cookie: Option<HeaderValue>,
}

impl FormToken {
    pub fn for_request(headers: &HeaderMap) -> FormToken {
        if let Some(nonce) = cookie(headers, FORM_COOKIE).filter(|n| is_hex_token(n)) {
            return FormToken {
                csrf: form_csrf(nonce),
                set_cookie: None,
            };
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let nonce = hex::encode(bytes);
        FormToken {
            csrf: form_csrf(&nonce),
            set_cookie: Some(set_cookie(
                FORM_COOKIE,
                &nonce,
                FORM_COOKIE_SECONDS,
                "Strict",
                https(headers),
            )),
        }
    }

    /// Adds the nonce cookie (if new) to a response.
    pub fn attach(&self, mut response: Response) -> Response {
        if let Some(c) = &self.set_cookie {
            response.headers_mut().append(header::SET_COOKIE, c.clone());
        }
        response
    }
}

/// Checks a pre-log-in form's token against the request's nonce cookie.
pub fn check_form_csrf(headers: &HeaderMap, sent: Option<&str>) -> Result<(), PageError> {
    let ok = match (cookie(headers, FORM_COOKIE), sent) {
        (Some(nonce), Some(sent)) if is_hex_token(nonce) => same_secret(&form_csrf(nonce), sent),
        _ => false,
    };
    if ok { Ok(()) } else { Err(PageError::csrf()) }
}

/// Checks a signed-in form's token against the session.
pub fn check_session_csrf(session: &Session, sent: Option<&str>) -> Result<(), PageError> {
    match sent {
        Some(sent) if same_secret(&session.csrf, sent) => Ok(()),
        _ => Err(PageError::csrf()),
    }
}

async fn username(state: &AppState, account_id: i64) -> Result<String, sqlx::Error> {
    Ok(sqlx::query("SELECT username FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_one(&state.db.read)
        .await?
        .get("username"))
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let https = https(&parts.headers);
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).filter(|t| !t.is_empty()) else {
            return Ok(Visitor {
                session: None,
                stale: false,
                https,
            });
        };
        let token = token.to_owned();
        let caller = if is_hex_token(&token) {
            state
                .sessions
                .caller(&state.db.read, &token)
                .await
                .map_err(PageError::internal)?
        } else {
            None
        };
        let Some(caller) = caller else {
            return Ok(Visitor {
                session: None,
                stale: true,
                https,
            });
        };
        let username = username(state, caller.account_id)
            .await
            .map_err(PageError::internal)?;
        Ok(Visitor {
            session: Some(Session {
                csrf: session_csrf(&token),
                token,
                caller,
                username,
            }),
            stale: false,
            https,
        })
    }
}

/// Where the log-in page should send the visitor back to: a path of this site only.
pub fn safe_next(next: Option<&str>) -> Option<String> {
    let next = next?;
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 200
        && next
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'"');
    ok.then(|| next.to_owned())
}

/// The way to the log-in page for a visitor who must sign in first; a stale cookie is
/// cleared on the way and the page says the session ended.
fn to_login(visitor: &Visitor, parts: &Parts) -> Response {
    let mut query = Vec::new();
    if visitor.stale {
        query.push("expired=1".to_owned());
    }
    if let Some(next) = safe_next(parts.uri.path_and_query().map(|p| p.as_str())) {
        query.push(format!("next={}", encode_query(&next)));
    }
    let to = if query.is_empty() {
        "/login".to_owned()
    } else {
        format!("/login?{}", query.join("&"))
    };
    let mut response = Redirect::to(&to).into_response();
    if visitor.stale {
        response
            .headers_mut()
            .append(header::SET_COOKIE, clear_session_cookie(visitor.https));
    }
    response
}

/// Percent-encodes a query value.
pub fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A request from a signed-in visitor; anyone else is sent to the log-in page.
#[derive(Clone, Debug)]
pub struct SignedIn(pub Session);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let visitor = Visitor::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        match visitor.session {
            Some(session) => Ok(SignedIn(session)),
            None => Err(to_login(&visitor, parts)),
        }
    }
}

/// A request from a signed-in administrator; other signed-in visitors get the 403 page.
#[derive(Clone, Debug)]
pub struct AdminSignedIn(pub Session);

impl FromRequestParts<AppState> for AdminSignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let SignedIn(session) = SignedIn::from_request_parts(parts, state).await?;
        if !session.caller.admin {
            return Err(PageError::forbidden(Some(&session)).into_response());
        }
        Ok(AdminSignedIn(session))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; rivulet_session=xyz"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn form_tokens_match_only_their_nonce() {
        let nonce = "ab".repeat(32);
        let other = "cd".repeat(32);
        assert!(same_secret(&form_csrf(&nonce), &form_csrf(&nonce)));
        assert!(!same_secret(&form_csrf(&nonce), &form_csrf(&other)));
        assert!(!same_secret("abc", "ab"));
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            safe_next(Some("/admin?minutes=5")).as_deref(),
            Some("/admin?minutes=5")
        );
        for bad in ["//evil.example", "https://evil.example", "/\\evil", "admin"] {
            assert_eq!(safe_next(Some(bad)), None, "{bad}");
        }
    }
}
