//! The one layout every page shares (header, navigation, footer), the error page, and the
//! small formatters pages use for bytes, rates, times and dates. Markup is built with maud,
//! which escapes every interpolated value.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::session::{CSRF_FIELD, Session};

/// Which navigation entry a page belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    Home,
    About,
    SignUp,
    LogIn,
    Dashboard,
    Admin,
    None,
}

/// A whole page in the shared layout.
pub fn page(title: &str, session: Option<&Session>, nav: Nav, body: Markup) -> Markup {
    let on = |n: Nav| (nav == n).then_some("active");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Rivulet" }
                link rel="stylesheet" href="/assets/style.css";
                link rel="icon" type="image/svg+xml" href="/assets/logo.svg";
                script src="/assets/live.js" defer {}
            }
            body {
                header.site {
                    a.brand href="/" {
                        img src="/assets/logo.svg" alt="" width="32" height="32";
                        span { "Rivulet" }
                    }
                    nav {
                        a class=[on(Nav::Home)] href="/" { "Home" }
                        a class=[on(Nav::About)] href="/about" { "About" }
                        @if let Some(s) = session {
                            a class=[on(Nav::Dashboard)] href="/dashboard" { "Dashboard" }
                            @if s.caller.admin {
                                a class=[on(Nav::Admin)] href="/admin" { "Admin" }
                            }
                            form.logout method="post" action="/logout" {
                                input type="hidden" name=(CSRF_FIELD) value=(s.csrf);
                                span.who { (s.username) }
                                button #logout type="submit" { "Log out" }
                            }
                        } @else {
                            a class=[on(Nav::LogIn)] href="/login" { "Log in" }
                            a.button.active[nav == Nav::SignUp] href="/signup" { "Sign up" }
                        }
                    }
                }
                main { (body) }
                footer.site {
                    "Rivulet — peer-assisted video on demand. "
                    a href="/about" { "About" } " · "
                    a href="/api/v1/openapi.json" { "API" }
                }
            }
        }
    }
}

/// A page that could not be served: its status, a heading and a sentence for the reader.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: String,
    /// The session, when known, so the navigation stays right.
    pub session: Option<Box<Session>>,
}

impl PageError {
    pub fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> PageError {
        PageError {
            status,
            title,
            message: message.into(),
            session: None,
        }
    }

    pub fn not_found() -> PageError {
        PageError::new(
            StatusCode::NOT_FOUND,
            "Page not found",
            "There is no page at this address.",
        )
    }

    pub fn bad_request(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::BAD_REQUEST, "Bad request", message)
    }

    pub fn forbidden(session: Option<&Session>) -> PageError {
        PageError {
            session: session.cloned().map(Box::new),
            ..PageError::new(
                StatusCode::FORBIDDEN,
                "Administrators only",
                "This page is for the tracker's administrators. Your account is not one.",
            )
        }
    }

    pub fn csrf() -> PageError {
        PageError::new(
            StatusCode::FORBIDDEN,
            "Form refused",
            "This form's security token is missing or does not match your session. \
             Go back, reload the page and send the form again.",
        )
    }

    pub fn internal(e: impl std::fmt::Display) -> PageError {
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The tracker failed",
            format!("The tracker could not answer: {e}"),
        )
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = html! {
            section.error {
                p.status { (self.status.as_u16()) }
                h1 { (self.title) }
                p { (self.message) }
                p { a href="/" { "Back to the start page" } }
            }
        };
        (
            self.status,
            page(self.title, self.session.as_deref(), Nav::None, body),
        )
            .into_response()
    }
}

/// Bytes in decimal units with three significant digits: `999 B`, `3.00 kB`, `1.50 GB`.
pub fn bytes(n: u64) -> String {
    rivulet_node_core::units::format_bytes(n)
}

/// A rate in bits per second: `800 bit/s`, `3.20 Mbit/s`.
pub fn rate(bits_per_second: f64) -> String {
    rivulet_node_core::units::format_rate(bits_per_second)
}

/// An exact count with thin groups: `1 234 567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// Bytes as a `<data>` element: readable text, the exact number in `value` and the title.
pub fn bytes_data(n: u64) -> Markup {
    html! { data value=(n) title={ (count(n)) " bytes" } { (bytes(n)) } }
}

/// How long ago `then` (Unix seconds) was, from `now`.
pub fn ago(then: u64, now: u64) -> String {
    let d = now.saturating_sub(then);
    match d {
        0..=59 => format!("{d} s ago"),
        60..=3599 => format!("{} min ago", d / 60),
        3600..=86399 => format!("{} h ago", d / 3600),
        _ => format!("{} days ago", d / 86400),
    }
}

/// A Unix time as a UTC date, `2026-11-25`.
pub fn date(unix: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = (unix / 86400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A playing time as `m:ss` or `h:mm:ss`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    rivulet_node_core::clock::unix_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        // bytes() and rate() are node-core's formatter, tested there.
        assert_eq!(count(1_234_567), "1\u{202f}234\u{202f}567");
        assert_eq!(count(100), "100");
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_795_651_200), "2026-11-26");
        assert_eq!(duration(62_000), "1:02");
        assert_eq!(duration(3_723_000), "1:02:03");
    }

    #[test]
    fn text_is_escaped() {
        let m = html! { p { ("<script>&\"") } };
        assert_eq!(m.into_string(), "<p>&lt;script&gt;&amp;&quot;</p>");
    }
}
