//! Request and response bodies of `/api/v1`, and the error body every failure carries.
//!
//! Compatibility rule: both sides ignore fields they do not know, in requests and replies
//! alike, so a newer app or node can talk to an older tracker (and the other way round) as
//! long as new fields are optional (`#[serde(default)]`). The one exception is
//! [`Credentials`], which refuses unknown fields (see there). Error codes the client does not
//! know parse as [`ErrorCode::Unknown`].

use serde::{Deserialize, Serialize};

/// Where the API lives under the tracker's address.
pub const API_PREFIX: &str = "/api/v1";

/// The body of every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable machine-readable `code` and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// What kind of failure; a string on the wire.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "not_found"))]
    pub code: ErrorCode,
    /// A sentence a person can act on.
    pub message: String,
}

/// The error codes the API uses: a stable, machine-readable name for each kind of failure,
/// on the wire as a snake_case string (`"not_found"`). A code this build does not know (a
/// newer tracker's) parses as [`ErrorCode::Unknown`] with the string kept, so an older client
/// still shows the message instead of failing to decode the error.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ErrorCode {
    /// The request is malformed: bad JSON, wrong types, values out of range.
    BadRequest,
    /// The body is larger than the API accepts.
    TooLarge,
    /// No valid session token was given, or it expired.
    Unauthorized,
    /// Wrong username or password.
    BadCredentials,
    /// Too many failed log-ins; try again later.
    LockedOut,
    /// The account may not do this (e.g. admin endpoints).
    Forbidden,
    /// No such thing (video, account, node).
    NotFound,
    /// The username is taken.
    UsernameTaken,
    /// The password does not meet the rules.
    WeakPassword,
    /// The movie costs more points than the account has.
    InsufficientPoints,
    /// The movie's manifest is only for accounts that bought it.
    NotBought,
    /// The account was disabled by the tracker's operator: it cannot log in.
    AccountDisabled,
    /// A public tracker does not accept this advertised address (loopback, private,
    /// link-local, multicast, or not where the node connects from).
    AddressRefused,
    /// The tracker failed; the message says how. Never expected.
    Internal,
    /// A code this build does not know (from a newer tracker, or an HTTP status name when
    /// the body was not the API's error shape), kept as it came.
    Unknown(String),
}

impl ErrorCode {
    /// Every code this build knows, for tests and documentation.
    pub const KNOWN: [ErrorCode; 14] = [
        ErrorCode::BadRequest,
        ErrorCode::TooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::BadCredentials,
        ErrorCode::LockedOut,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::UsernameTaken,
        ErrorCode::WeakPassword,
        ErrorCode::InsufficientPoints,
        ErrorCode::NotBought,
        ErrorCode::AccountDisabled,
        ErrorCode::AddressRefused,
        ErrorCode::Internal,
    ];

    /// The code as it travels on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::BadCredentials => "bad_credentials",
            ErrorCode::LockedOut => "locked_out",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::WeakPassword => "weak_password",
            ErrorCode::InsufficientPoints => "insufficient_points",
            ErrorCode::NotBought => "not_bought",
            ErrorCode::AccountDisabled => "account_disabled",
            ErrorCode::AddressRefused => "address_refused",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown(code) => code,
        }
    }

    /// The code for a wire string; never fails (unknown strings become [`ErrorCode::Unknown`]).
    pub fn parse(code: &str) -> ErrorCode {
        ErrorCode::KNOWN
            .into_iter()
            .find(|known| known.as_str() == code)
            .unwrap_or_else(|| ErrorCode::Unknown(code.to_owned()))
    }
}

impl From<String> for ErrorCode {
    fn from(code: String) -> ErrorCode {
        ErrorCode::parse(&code)
    }
}

impl From<ErrorCode> for String {
    fn from(code: ErrorCode) -> String {
        match code {
            ErrorCode::Unknown(code) => code,
            known => known.as_str().to_owned(),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Username and password, for registering and logging in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
// The one request that refuses unknown fields: a sign-up must not look as if it set
// more than a name and a password (`"admin": true` is answered 400, not ignored).
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// 3–32 characters: letters, digits, '.', '-', '_'.
    pub username: String,
    /// At least 8 characters, not all of one kind; at most 256.
    pub password: String,
}

/// A logged-in session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    /// Bearer token for the `Authorization` header.
    pub token: String,
    /// When the token stops working, in seconds since the Unix epoch.
    pub expires_at: u64,
    pub account: Account,
}

/// An account as its owner sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Purchase {
    pub video: String,
    /// Points taken now: the price the first time, 0 when already bought.
    pub charged: u64,
    /// The balance after the purchase.
    pub balance: u64,
}

/// What a node does in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// The tracker's own origin server, which holds every movie.
    Origin,
    /// Stores chunks and uploads them to viewers.
    Cache,
    /// Fetches chunks to play a movie.
    Viewer,
}

/// A node's id as the tracker hands it out: its kind, a dash, and random hex
/// (`cache-1f2e…`), or `origin` for the origin. On the wire a plain string; the wire structs
/// keep `String` fields so that every crate reads them as before.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(String);

impl NodeId {
    /// Wraps an id as it came from the tracker or a client (not checked).
    pub fn new(id: impl Into<String>) -> NodeId {
        NodeId(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The kind the id names, read from its prefix; `None` for an id of no known shape.
    pub fn kind(&self) -> Option<NodeKind> {
        NodeId::kind_of(&self.0)
    }

    /// The kind a node id given as text names (as [`NodeId::kind`], without a copy).
    pub fn kind_of(id: &str) -> Option<NodeKind> {
        if id == "origin" {
            return Some(NodeKind::Origin);
        }
        match id.split_once('-')?.0 {
            "cache" => Some(NodeKind::Cache),
            "viewer" => Some(NodeKind::Viewer),
            _ => None,
        }
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for NodeId {
    fn from(id: String) -> NodeId {
        NodeId(id)
    }
}

impl From<&str> for NodeId {
    fn from(id: &str) -> NodeId {
        NodeId(id.to_owned())
    }
}

/// A movie's id in the catalogue (lowercase letters, digits, '-', '_'). On the wire a plain
/// string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VideoId(String);

impl VideoId {
    /// Wraps an id (not checked).
    pub fn new(id: impl Into<String>) -> VideoId {
        VideoId(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for VideoId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for VideoId {
    fn from(id: String) -> VideoId {
        VideoId(id)
    }
}

impl From<&str> for VideoId {
    fn from(id: &str) -> VideoId {
        VideoId(id.to_owned())
    }
}

/// A node announcing itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeRegistration {
    /// `cache` or `viewer` (the origin is the tracker's own).
    pub kind: NodeKind,
    /// Where the node's FTP server listens (`ip:port`); empty for a viewer.
    #[serde(default)]
    pub bind: String,
    /// Where other nodes reach it (`host:port`), which may differ from `bind` (NAT, cloud).
    #[serde(default)]
    pub advertise: String,
    /// Upload cap, bits per second.
    #[serde(default)]
    pub upload_bps: u64,
    /// Storage budget, bytes.
    #[serde(default)]
    pub storage_bytes: u64,
    /// More addresses it serves on (`host:port`, e.g. its global IPv6 beside a mapped IPv4),
    /// tried after `advertise`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<String>,
    /// SHA-256 of its FTPS certificate (lowercase hex), which the tracker publishes with it so
    /// that viewers pin it; `None` when it serves plain FTP (loopback, demo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl NodeRegistration {
    /// A viewer: no server, no upload, no storage.
    pub fn viewer() -> NodeRegistration {
        NodeRegistration {
            kind: NodeKind::Viewer,
            bind: String::new(),
            advertise: String::new(),
            upload_bps: 0,
            storage_bytes: 0,
            addrs: Vec::new(),
            fingerprint: None,
        }
    }

    /// A cache listening on `bind`, reached at `advertise`, with these limits.
    pub fn cache(
        bind: impl Into<String>,
        advertise: impl Into<String>,
        upload_bps: u64,
        storage_bytes: u64,
    ) -> NodeRegistration {
        NodeRegistration {
            kind: NodeKind::Cache,
            bind: bind.into(),
            advertise: advertise.into(),
            upload_bps,
            storage_bytes,
            addrs: Vec::new(),
            fingerprint: None,
        }
    }

    /// Every address it serves on: `advertise` first, then `addrs`.
    pub fn all_addrs(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.advertise.as_str())
            .chain(self.addrs.iter().map(String::as_str))
            .filter(|a| !a.is_empty())
    }
}

/// The tracker's answer to a registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeRegistered {
    /// The node's id for heartbeats and tickets.
    pub node_id: String,
    /// How often to send a heartbeat, seconds.
    pub heartbeat_secs: u64,
    /// Silence after which the node is dropped, seconds.
    pub timeout_secs: u64,
    /// The IP address the tracker saw this registration come from: a node behind NAT learns
    /// its public IPv4 here. Empty from an older tracker.
    #[serde(default)]
    pub seen_from: String,
    /// For a cache: whether the tracker could reach it, as far as it has checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reach: Option<Reach>,
}

/// Whether the tracker could connect back to a cache at its advertised addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reach {
    pub state: ReachState,
    /// The address of the last probe (`host:port`), the one that worked when reachable.
    pub addr: String,
    /// Why it failed, when unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReachFailure>,
    /// The failure in words (the error the probe got), empty when reachable.
    #[serde(default)]
    pub detail: String,
    /// When the last probe ended, seconds since the Unix epoch (0 before the first).
    pub checked_at: u64,
}

/// Where a cache stands with the tracker's reachability probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReachState {
    /// Not probed yet: it is neither placed nor given to viewers until it is.
    Unchecked,
    /// The FTP greeting and a ticketed log-in worked.
    Reachable,
    /// The probe failed; `reason` says how.
    Unreachable,
}

/// How a reachability probe failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReachFailure {
    /// The connection was refused: nothing listens there (port not forwarded).
    Refused,
    /// No answer in time: a firewall or NAT drops it.
    TimedOut,
    /// No route to that address.
    NoRoute,
    /// Something answered that is not a Rivulet cache.
    WrongGreeting,
    /// A Rivulet cache answered but refused the tracker's ticket (another node's address?).
    LoginRefused,
    /// The TLS handshake failed or the certificate is not the fingerprint it registered.
    Tls,
}

/// Chunk indices of one movie a cache holds (for every segment).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Holding {
    pub video: String,
    pub indices: Vec<u16>,
}

/// One chunk of a movie: (segment, chunk index), as `[segment, index]` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChunkRef(pub u32, pub u16);

/// Bytes moved between this node and one peer for one movie since the last heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeerBytes {
    /// The peer's node id (`origin` for the origin).
    pub peer: String,
    pub video: String,
    pub bytes: u64,
    /// In a viewer's `received`: the receipts, every chunk it verified from this peer since
    /// the last heartbeat. Caches are credited from receipts only (see `docs/trust.md`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkRef>,
}

impl PeerBytes {
    /// `bytes` of `video` moved to or from `peer`, without receipts.
    pub fn new(peer: impl Into<String>, video: impl Into<String>, bytes: u64) -> PeerBytes {
        PeerBytes {
            peer: peer.into(),
            video: video.into(),
            bytes,
            chunks: Vec::new(),
        }
    }
}

/// A node's periodic report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Heartbeat {
    /// This report's number, counting from 1 per node id: a report sent again after a lost
    /// reply keeps its number, and the tracker counts its bytes once. 0: no bytes count.
    #[serde(default)]
    pub seq: u64,
    /// The movie a viewer is watching.
    #[serde(default)]
    pub watching: Option<String>,
    /// Everything a cache holds now (replaces the last report).
    #[serde(default)]
    pub holdings: Vec<Holding>,
    /// Bytes sent to each peer since the last heartbeat.
    #[serde(default)]
    pub sent: Vec<PeerBytes>,
    /// Verified bytes received from each peer since the last heartbeat.
    #[serde(default)]
    pub received: Vec<PeerBytes>,
    /// New upload cap, if it changed.
    #[serde(default)]
    pub upload_bps: Option<u64>,
    /// New storage budget, if it changed.
    #[serde(default)]
    pub storage_bytes: Option<u64>,
    /// Caches this node could not connect to since its last report (node ids, at most
    /// [`MAX_FAILED_PEERS`]): the tracker checks them itself and stops handing out the
    /// ones it cannot reach either.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

/// Most peers one heartbeat may report as unreachable.
pub const MAX_FAILED_PEERS: usize = 64;

/// A node as the admin views list it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeInfo {
    pub node_id: String,
    pub account: String,
    pub kind: NodeKind,
    pub bind: String,
    pub advertise: String,
    pub upload_bps: u64,
    pub storage_bytes: u64,
    pub watching: Option<String>,
    pub holdings: Vec<Holding>,
    /// Seconds since the Unix epoch.
    pub last_seen: u64,
    /// More addresses it serves on, after `advertise`.
    #[serde(default)]
    pub addrs: Vec<String>,
    /// SHA-256 of its FTPS certificate, when it serves FTPS.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// For a cache: what the reachability probe found.
    #[serde(default)]
    pub reach: Option<Reach>,
}

/// Where and how to reach the origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OriginInfo {
    /// The origin's FTP address (`host:port`) as nodes should dial it.
    pub ftp: String,
    /// The tracker's Ed25519 public key (hex) that signs FTP tickets; fetch once, verify
    /// offline.
    pub ticket_key: String,
    /// SHA-256 of the origin's FTPS certificate (lowercase hex), to pin; `None` when the
    /// origin serves plain FTP (loopback, demo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The IP address this request came from, as the tracker saw it (a node behind NAT
    /// learns its public IPv4 here before it registers). Empty from an older tracker.
    #[serde(default)]
    pub seen_from: String,
    /// Whether the tracker is public: it refuses loopback, private and foreign addresses.
    #[serde(default)]
    pub public: bool,
}

/// A request for an FTP ticket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TicketRequest {
    /// The caller's node that will fetch.
    pub holder: String,
    /// The node it will fetch from (`origin` for the origin).
    pub server: String,
    /// The movie.
    pub video: String,
}

impl TicketRequest {
    /// A ticket for `holder` to fetch `video` from `server` (a node id, or `origin`).
    pub fn new(
        holder: impl Into<String>,
        server: impl Into<String>,
        video: impl Into<String>,
    ) -> TicketRequest {
        TicketRequest {
            holder: holder.into(),
            server: server.into(),
            video: video.into(),
        }
    }
}

/// A signed FTP ticket: log in with the holder's node id as user and this as password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ticket {
    pub ticket: String,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
}

/// An account as administrators see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountSummary {
    pub username: String,
    pub admin: bool,
    pub balance: u64,
    pub uploaded_bytes: u64,
    pub credited_bytes: u64,
    /// Movies bought.
    pub purchases: u64,
    /// Live nodes.
    pub nodes: u64,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// The account whose viewers confirmed most of this account's credited bytes, when
    /// any were: a pair that earns mostly from each other is worth a look.
    #[serde(default)]
    pub top_counterpart: Option<Counterpart>,
}

/// Who confirmed an account's credited bytes most.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counterpart {
    pub username: String,
    /// Bytes its viewers confirmed for this account's caches.
    pub credited_bytes: u64,
    /// Share of this account's credited bytes, percent (0–100).
    pub percent: u8,
}

/// A movie as administrators see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VideoStats {
    pub video: Video,
    /// Viewers watching it now.
    pub viewers_now: u64,
    /// Caches holding some of its chunks now.
    pub caches_holding: u64,
    /// Accounts that bought it: its popularity.
    pub purchases: u64,
}

/// The caller's earnings over time (`GET /me/earnings`): what its caches were credited,
/// bucket by bucket, oldest first, empty buckets included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Earnings {
    /// Length of each bucket, seconds.
    pub bucket_secs: u64,
    pub buckets: Vec<EarningsBucket>,
}

/// One bucket of [`Earnings`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EarningsBucket {
    /// Start of the bucket, seconds since the Unix epoch.
    pub start: u64,
    /// Bytes the account's caches reported sending.
    pub uploaded_bytes: u64,
    /// Bytes newly credited (confirmed by the receiving viewers).
    pub credited_bytes: u64,
    /// Points those bytes earned.
    pub points: u64,
}

/// Bytes moved in one time bucket, by flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoadPoint {
    /// Start of the bucket, seconds since the Unix epoch.
    pub at: u64,
    /// Length of the bucket, seconds.
    pub secs: u64,
    pub origin_to_viewers: u64,
    pub origin_to_caches: u64,
    pub caches_to_viewers: u64,
    /// Everything viewers received: what they demanded and got.
    pub demand: u64,
}

/// Bytes between one node and one peer, for the flow views.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Flow {
    /// The other end.
    pub peer: String,
    pub peer_kind: String,
    pub video: String,
    /// Bytes confirmed by the receiver (or reported by the sender when the receiver has not
    /// confirmed).
    pub bytes: u64,
}

/// A node's flows: what it received from whom, and what it sent to whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeFlows {
    pub node: String,
    pub received: Vec<Flow>,
    pub sent: Vec<Flow>,
}

/// A cache a viewer should fetch from, as the tracker's topology step picked it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Peer {
    pub node_id: String,
    /// Its FTP address (`host:port`) as it advertised it.
    pub addr: String,
    /// More addresses it serves on (the other IP family), tried after `addr`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<String>,
    /// SHA-256 of its FTPS certificate (lowercase hex): the viewer refuses any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    pub video: String,
    /// The chunk indices it holds complete, for every segment.
    pub indices: Vec<u16>,
    /// The rate the tracker expects it to give this viewer, bytes per second.
    pub rate: u64,
    /// This viewer's FTP ticket for it.
    pub ticket: String,
    /// When the ticket expires, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// A ticket for the origin for one movie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VideoTicket {
    pub video: String,
    pub ticket: String,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
}

/// What the tracker tells a node in answer to its heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatReply {
    /// For a cache: the chunk indices of each movie to hold (everything else may go), when
    /// `placed`.
    pub hold: Vec<Holding>,
    /// For a cache: whether `hold` is the tracker's decision. False until a placement round
    /// has seen the cache (it just registered): it keeps what it has until then, which the
    /// round takes into account.
    #[serde(default)]
    pub placed: bool,
    /// For a viewer: the caches to fetch its movie from, best first.
    pub peers: Vec<Peer>,
    /// Tickets for the origin: the watched movie (viewer) or each movie to fetch (cache).
    pub origin: Vec<VideoTicket>,
    /// For a cache: reported holdings the tracker does not accept (a movie it no longer
    /// has, chunks that failed its spot-check); the cache drops them and goes on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Holding>,
    /// For a cache: whether the tracker could reach it, as far as it has checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reach: Option<Reach>,
    /// For a cache: other caches that hold indices it is placed with and lacks, each with
    /// those indices and a ticket for them: it fetches them there before the origin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Peer>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_travel_as_snake_case_strings() {
        for code in ErrorCode::KNOWN {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        assert_eq!(ErrorCode::NotBought.to_string(), "not_bought");
    }

    #[test]
    fn an_unknown_code_from_the_wire_parses_as_unknown() {
        let body: ErrorBody = serde_json::from_str(
            r#"{"error": {"code": "quota_exceeded", "message": "later", "hint": "new"}}"#,
        )
        .unwrap();
        assert_eq!(body.error.code, ErrorCode::Unknown("quota_exceeded".into()));
        assert_eq!(
            serde_json::to_string(&body.error.code).unwrap(),
            "\"quota_exceeded\""
        );
    }

    #[test]
    fn requests_and_replies_accept_fields_from_a_newer_version() {
        let heartbeat: Heartbeat =
            serde_json::from_str(r#"{"watching": "v1", "battery": 80}"#).unwrap();
        assert_eq!(heartbeat.watching.as_deref(), Some("v1"));
        let ticket: TicketRequest = serde_json::from_str(
            r#"{"holder": "n1", "server": "origin", "video": "v1", "indices": [1]}"#,
        )
        .unwrap();
        assert_eq!(ticket.server, "origin");
        let registration: NodeRegistration =
            serde_json::from_str(r#"{"kind": "cache", "tls": true}"#).unwrap();
        assert_eq!(registration.kind, NodeKind::Cache);
        let reply: HeartbeatReply =
            serde_json::from_str(r#"{"hold": [], "peers": [], "origin": [], "spot_check": {}}"#)
                .unwrap();
        assert!(!reply.placed);
    }

    #[test]
    fn node_ids_name_their_kind_and_travel_as_strings() {
        assert_eq!(NodeId::new("cache-0a1b").kind(), Some(NodeKind::Cache));
        assert_eq!(NodeId::new("viewer-0a1b").kind(), Some(NodeKind::Viewer));
        assert_eq!(NodeId::new("origin").kind(), Some(NodeKind::Origin));
        assert_eq!(NodeId::new("cachex").kind(), None);
        assert_eq!(NodeId::new("peer-1").kind(), None);
        let id: NodeId = serde_json::from_str("\"cache-1\"").unwrap();
        assert_eq!(id.as_str(), "cache-1");
        assert_eq!(
            serde_json::to_string(&VideoId::new("v1")).unwrap(),
            "\"v1\""
        );
        assert_eq!(VideoId::from("v1").to_string(), "v1");
    }

    #[test]
    fn credentials_refuse_unknown_fields() {
        let err = serde_json::from_str::<Credentials>(
            r#"{"username": "a", "password": "b", "admin": true}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
