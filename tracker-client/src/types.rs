//! Request and response bodies of `/api/v1`, and the error body every failure carries.

use serde::{Deserialize, Serialize};

/// Where the API lives under the tracker's address.
pub const API_PREFIX: &str = "/api/v1";

/// The body of every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable machine-readable `code` and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// One of [`codes`].
    pub code: String,
    /// A sentence a person can act on.
    pub message: String,
}

/// The error codes the API uses.
pub mod codes {
    /// The request is malformed: bad JSON, wrong types, values out of range.
    pub const BAD_REQUEST: &str = "bad_request";
    /// The body is larger than the API accepts.
    pub const TOO_LARGE: &str = "too_large";
    /// No valid session token was given, or it expired.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// Wrong username or password.
    pub const BAD_CREDENTIALS: &str = "bad_credentials";
    /// Too many failed log-ins; try again later.
    pub const LOCKED_OUT: &str = "locked_out";
    /// The account may not do this (e.g. admin endpoints).
    pub const FORBIDDEN: &str = "forbidden";
    /// No such thing (video, account, node).
    pub const NOT_FOUND: &str = "not_found";
    /// The username is taken.
    pub const USERNAME_TAKEN: &str = "username_taken";
    /// The password does not meet the rules.
    pub const WEAK_PASSWORD: &str = "weak_password";
    /// The movie costs more points than the account has.
    pub const INSUFFICIENT_POINTS: &str = "insufficient_points";
    /// The movie's manifest is only for accounts that bought it.
    pub const NOT_BOUGHT: &str = "not_bought";
    /// The tracker failed; the message says how. Never expected.
    pub const INTERNAL: &str = "internal";
}

/// Username and password, for registering and logging in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// 3–32 characters: letters, digits, '.', '-', '_'.
    pub username: String,
    /// At least 8 characters, not all of one kind; at most 256.
    pub password: String,
}

/// A logged-in session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Bearer token for the `Authorization` header.
    pub token: String,
    /// When the token stops working, in seconds since the Unix epoch.
    pub expires_at: u64,
    pub account: Account,
}

/// An account as its owner sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub username: String,
    pub admin: bool,
    /// Points to spend.
    pub balance: u64,
    /// Bytes this account's cache reported uploading.
    pub uploaded_bytes: u64,
    /// Bytes viewers confirmed receiving from this account's cache, verified.
    pub credited_bytes: u64,
    /// Ids of the movies bought.
    pub bought: Vec<String>,
    /// Ids of the movies watched.
    pub watched: Vec<String>,
}

/// A catalogue entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Video {
    pub id: String,
    pub title: String,
    pub duration_ms: u64,
    /// Bytes of the stream file.
    pub bytes: u64,
    pub segments: u32,
    pub k: u16,
    pub n: u16,
    /// Price in points.
    pub price: u64,
    /// Whether the asking account owns it (false without a session).
    pub bought: bool,
}

/// The outcome of a purchase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchase {
    pub video: String,
    /// Points taken now: the price the first time, 0 when already bought.
    pub charged: u64,
    /// The balance after the purchase.
    pub balance: u64,
}
