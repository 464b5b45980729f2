//! The tracker as one facade: every operation the HTTP API offers, taking the caller (an
//! authenticated account) and returning `tracker-client` types. Handlers extract, make one
//! call here and respond (the shape of rqbit's `Api`); ownership checks, ticket signing,
//! heartbeat replies and the admin queries live here, not in the handlers.

use std::net::IpAddr;
use std::sync::Arc;

use rivulet_node_core::clock::{unix_ms, unix_secs};
use rivulet_tracker_client::{
    Account, AccountSummary, Credentials, Earnings, Heartbeat, HeartbeatReply, LoadPoint,
    MAX_FAILED_PEERS, NodeFlows, NodeId, NodeInfo, NodeKind, NodeRegistered, NodeRegistration,
    OriginInfo, Peer, Purchase, Session, Ticket, TicketRequest, Video, VideoStats, VideoTicket,
};
use thiserror::Error;

use crate::accounts::{self, AccountError, BuyOutcome, Caller};
use crate::api::AppState;
use crate::catalogue::{self, StoredVideo};
use crate::nodes::{self, NodeError};
use crate::tickets::{self, TicketRefusal};
use crate::{admin, earnings};

/// Why a tracker operation was refused or failed; `api/error.rs` turns each into a status
/// and a wire code.
#[derive(Debug, Error)]
pub enum TrackerError {
    /// The request is malformed or out of range.
    #[error("{0}")]
    BadRequest(String),
    /// No such movie, node or poster.
    #[error("{0}")]
    NotFound(String),
    /// The caller is not an administrator.
    #[error("administrators only")]
    AdminOnly,
    /// The movie is only for accounts that bought it.
    #[error("{0}")]
    NotBought(String),
    /// The movie costs more than the balance.
    #[error("{title:?} costs {price} points; the balance is {balance}")]
    InsufficientPoints {
        title: String,
        price: u64,
        balance: u64,
    },
    /// Too many attempts from this address or for this account.
    #[error("{0}")]
    LockedOut(String),
    /// An account rule or log-in failed.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// A node report was refused or the node is unknown.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A ticket was refused.
    #[error(transparent)]
    Ticket(#[from] TicketRefusal),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// What a tracker operation returns.
pub type TrackerResult<T> = Result<T, TrackerError>;

/// The tracker's operations over its shared state (borrowed from the HTTP state, so a
/// handler's call costs nothing to set up).
#[derive(Clone, Copy, Debug)]
pub struct Tracker<'a> {
    state: &'a AppState,
}

impl AppState {
    /// The facade over this state.
    pub fn tracker(&self) -> Tracker<'_> {
        Tracker { state: self }
    }
}

/// A movie as the catalogue shows it.
pub fn to_video(v: &StoredVideo, bought: bool) -> Video {
    let e = v.entry();
    Video {
        id: e.id,
        title: e.title,
        duration_ms: e.duration_ms,
        bytes: e.bytes,
        segments: e.segments,
        k: e.k,
        n: e.n,
        price: e.price,
        bought,
    }
}

fn no_video(id: &str) -> TrackerError {
    TrackerError::NotFound(format!("no video with id {id:?}"))
}

impl Tracker<'_> {
    // ---- accounts ----

    /// Creates an account with the configured starting balance (sign-ups limited per
    /// address `ip`).
    pub async fn register(&self, creds: &Credentials, ip: IpAddr) -> TrackerResult<Account> {
        let state = self.state;
        accounts::check_username(&creds.username)?;
        accounts::check_password(&creds.username, &creds.password)?;
        if let Err(wait) = state.signup_limiter.attempt("", ip) {
            return Err(TrackerError::LockedOut(format!(
                "too many new accounts from this address; try again in {} s",
                wait.as_secs().max(1)
            )));
        }
        let hash = accounts::hash_password_async(creds.password.clone()).await?;
        let id = accounts::create(
            &state.db.write,
            &creds.username,
            &hash,
            false,
            state.settings.signup_points(),
        )
        .await?;
        Ok(accounts::account(&state.db.read, id).await?)
    }

    /// Logs in, within the per-account and per-address failure limits.
    pub async fn login(&self, creds: &Credentials, ip: IpAddr) -> TrackerResult<Session> {
        let state = self.state;
        if accounts::check_username(&creds.username).is_err() {
            return Err(AccountError::BadCredentials.into());
        }
        if let Err(wait) = state.login_limiter.attempt(&creds.username, ip) {
            return Err(TrackerError::LockedOut(format!(
                "too many failed log-ins; try again in {} s",
                wait.as_secs().max(1)
            )));
        }
        let id = accounts::verify_login(&state.db.read, &creds.username, &creds.password).await?;
        state.login_limiter.succeeded(&creds.username, ip);
        let (token, expires_at) = accounts::start_session(&state.db.write, id).await?;
        Ok(Session {
            token,
            expires_at: u64::try_from(expires_at).unwrap_or(0),
            account: accounts::account(&state.db.read, id).await?,
        })
    }

    /// Ends the session `token`.
    pub async fn logout(&self, token: &str) -> TrackerResult<()> {
        Ok(self.state.sessions.end(&self.state.db.write, token).await?)
    }

    /// The caller's account.
    pub async fn me(&self, caller: &Caller) -> TrackerResult<Account> {
        Ok(accounts::account(&self.state.db.read, caller.account_id).await?)
    }

    /// The caller's credited bytes and points over the last `minutes` (default 60) in
    /// `buckets` (default 60) buckets.
    pub async fn earnings(
        &self,
        caller: &Caller,
        minutes: Option<u32>,
        buckets: Option<u32>,
    ) -> TrackerResult<Earnings> {
        let minutes = minutes.unwrap_or(60);
        if !(1..=earnings::MAX_MINUTES).contains(&minutes) {
            return Err(TrackerError::BadRequest(format!(
                "minutes must be from 1 to {}",
                earnings::MAX_MINUTES
            )));
        }
        let buckets = buckets.unwrap_or(60);
        let most = earnings::MAX_BUCKETS.min(minutes);
        if !(1..=most).contains(&buckets) {
            return Err(TrackerError::BadRequest(format!(
                "buckets must be from 1 to {most} (a bucket is at least a minute)"
            )));
        }
        Ok(earnings::history(
            &self.state.db.read,
            caller.account_id,
            unix_ms(),
            minutes,
            buckets,
        )
        .await?)
    }

    // ---- catalogue ----

    /// A movie by id.
    pub async fn find(&self, id: &str) -> TrackerResult<Arc<StoredVideo>> {
        if catalogue::check_id(id).is_err() {
            return Err(no_video(id));
        }
        self.state
            .catalogue
            .get(id)
            .await
            .ok_or_else(|| no_video(id))
    }

    /// Whether the caller (if any) owns `id`.
    pub async fn owns(&self, caller: Option<&Caller>, id: &str) -> TrackerResult<bool> {
        match caller {
            Some(c) => Ok(accounts::owns(&self.state.db.read, c.account_id, id).await?),
            None => Ok(false),
        }
    }

    /// Every movie, with `bought` for the caller.
    pub async fn videos(&self, caller: Option<&Caller>) -> TrackerResult<Vec<Video>> {
        let bought = match caller {
            Some(c) => {
                accounts::account(&self.state.db.read, c.account_id)
                    .await?
                    .bought
            }
            None => Vec::new(),
        };
        let videos = self.state.catalogue.all().await;
        Ok(videos
            .iter()
            .map(|v| to_video(v, bought.contains(&v.record.id)))
            .collect())
    }

    /// One movie, with `bought` for the caller.
    pub async fn video(&self, caller: Option<&Caller>, id: &str) -> TrackerResult<Video> {
        let video = self.find(id).await?;
        let bought = self.owns(caller, id).await?;
        Ok(to_video(&video, bought))
    }

    /// The JPEG poster of `id`.
    pub async fn poster(&self, id: &str) -> TrackerResult<Vec<u8>> {
        let video = self.find(id).await?;
        self.state
            .catalogue
            .poster(&video)
            .await
            .map_err(|_| TrackerError::NotFound(format!("{id:?} has no poster")))
    }

    /// Whether one of the account's live caches is placed with some of `video`.
    async fn placed_with_callers_cache(&self, caller: &Caller, video: &str) -> TrackerResult<bool> {
        let mine = nodes::list(&self.state.db.read, Some(caller.account_id)).await?;
        Ok(mine
            .iter()
            .any(|n| self.state.network.is_placed(&n.node_id, video)))
    }

    /// The manifest (node-core's JSON) of `id`: only for accounts that bought the movie,
    /// or whose cache is placed with it.
    pub async fn manifest(&self, caller: &Caller, id: &str) -> TrackerResult<Vec<u8>> {
        let video = self.find(id).await?;
        if !self.owns(Some(caller), id).await?
            && !self.placed_with_callers_cache(caller, id).await?
        {
            return Err(TrackerError::NotBought(format!(
                "buy {id:?} first: its manifest is for accounts that own it"
            )));
        }
        Ok(video.manifest.to_json())
    }

    /// Buys `id`: takes the price once; buying again is free.
    pub async fn buy(&self, caller: &Caller, id: &str) -> TrackerResult<Purchase> {
        let video = self.find(id).await?;
        let price = video.record.price;
        match accounts::buy(&self.state.db.write, caller.account_id, id, price).await? {
            BuyOutcome::Bought { charged, balance } => Ok(Purchase {
                video: id.to_owned(),
                charged,
                balance,
            }),
            BuyOutcome::AlreadyOwned { balance } => Ok(Purchase {
                video: id.to_owned(),
                charged: 0,
                balance,
            }),
            BuyOutcome::TooExpensive { balance } => Err(TrackerError::InsufficientPoints {
                title: video.record.title.clone(),
                price,
                balance,
            }),
        }
    }

    // ---- nodes ----

    /// Registers one of the caller's nodes, whose request came from `seen_from`. A public
    /// tracker refuses a cache's addresses that are not public or (IPv4) not `seen_from`.
    pub async fn register_node(
        &self,
        caller: &Caller,
        reg: &NodeRegistration,
        seen_from: IpAddr,
    ) -> TrackerResult<NodeRegistered> {
        if self.state.public && reg.kind == NodeKind::Cache {
            crate::reach::check_public_addrs(reg.all_addrs(), seen_from)?;
        }
        let node_id = nodes::register(&self.state.db.write, caller.account_id, reg).await?;
        let reach = (reg.kind == NodeKind::Cache).then(|| {
            self.state.reach.registered(&node_id);
            self.state.reach.reach(&node_id)
        });
        let timeout_secs = self.state.node_timeout.as_secs().max(1);
        Ok(NodeRegistered {
            node_id,
            heartbeat_secs: (timeout_secs / 3).max(1),
            timeout_secs,
            seen_from: seen_from.to_canonical().to_string(),
            reach: reach.flatten(),
        })
    }

    /// Records node `id`'s report and answers a cache with what to hold and a viewer with
    /// whom to fetch from, tickets included.
    pub async fn heartbeat(
        &self,
        caller: &Caller,
        id: &NodeId,
        mut hb: Heartbeat,
    ) -> TrackerResult<HeartbeatReply> {
        let state = self.state;
        let suspects = std::mem::take(&mut hb.unreachable);
        if suspects.len() > MAX_FAILED_PEERS
            || suspects.iter().any(|p| p.is_empty() || p.len() > 64)
        {
            return Err(NodeError::Invalid(format!(
                "at most {MAX_FAILED_PEERS} unreachable peers, each a node id"
            ))
            .into());
        }
        let (refused, owned_watching) = state
            .heartbeats
            .record(&state.catalogue, caller.account_id, id.as_str(), hb)
            .await?;
        let mut reply = HeartbeatReply {
            refused,
            ..HeartbeatReply::default()
        };
        // A node names caches it could not reach: only those the tracker gave it count, and
        // the tracker checks them itself before it stops handing them out (reach.rs).
        let suspects: Vec<String> = suspects
            .into_iter()
            .filter(|peer| state.network.gave(id.as_str(), peer))
            .collect();
        for peer in &suspects {
            state.reach.suspect(peer);
        }
        // Node ids carry their kind, and `record` checked that this one is the caller's.
        if id.kind() == Some(NodeKind::Cache) {
            reply.refused.extend(state.proofs.refused(id.as_str()));
            if let Some(hold) = state.network.hold(id.as_str()) {
                reply.hold = hold;
                reply.placed = true;
            }
            reply.reach = state.reach.reach(id.as_str());
            // A cache fetches from the origin only the indices it is to hold, and only once
            // the tracker could reach it (reach.rs).
            if state.reach.allows(id.as_str()) {
                reply.origin = reply
                    .hold
                    .iter()
                    .map(|h| self.origin_ticket(id, &h.video, Some(h.indices.clone())))
                    .collect();
                reply.sources = self.warm_sources(id);
            }
        } else if let Some(video) = owned_watching {
            state
                .network
                .replace_suspects(id.as_str(), &video, &suspects);
            reply.peers = self.peers(id, &video);
            reply.origin = vec![self.origin_ticket(id, &video, None)];
        }
        Ok(reply)
    }

    /// A ticket for `holder` to fetch `video` from `server`, signed now.
    fn sign(
        &self,
        holder: &NodeId,
        server: &str,
        video: &str,
        indices: Option<Vec<u16>>,
    ) -> (String, u64) {
        let claims = tickets::claims(holder.as_str(), server, video, unix_secs(), indices);
        (self.state.signer.issue(&claims), claims.expires_at)
    }

    fn origin_ticket(
        &self,
        holder: &NodeId,
        video: &str,
        indices: Option<Vec<u16>>,
    ) -> VideoTicket {
        let (ticket, expires_at) = self.sign(holder, nodes::ORIGIN, video, indices);
        VideoTicket {
            video: video.to_owned(),
            ticket,
            expires_at,
        }
    }

    /// Other caches cache `id` fetches its placed, missing indices from, each with a ticket
    /// for just those indices.
    fn warm_sources(&self, id: &NodeId) -> Vec<Peer> {
        self.state
            .network
            .sources_for(id.as_str())
            .into_iter()
            .filter(|(_, source, _)| self.state.reach.allows(&source.node_id))
            .map(|(video, source, indices)| {
                let (ticket, expires_at) =
                    self.sign(id, &source.node_id, &video, Some(indices.clone()));
                Peer {
                    node_id: source.node_id,
                    addr: source.advertise,
                    addrs: source.addrs,
                    fingerprint: source.fingerprint,
                    video,
                    indices,
                    rate: 0,
                    ticket,
                    expires_at,
                }
            })
            .collect()
    }

    /// The viewer's peer set for `video`, each with its ticket.
    fn peers(&self, viewer: &NodeId, video: &str) -> Vec<Peer> {
        self.state
            .network
            .peers(viewer.as_str(), video)
            .into_iter()
            .filter(|(cache, _, _)| self.state.reach.allows(&cache.node_id))
            .map(|(cache, indices, rate)| {
                let (ticket, expires_at) = self.sign(viewer, &cache.node_id, video, None);
                Peer {
                    node_id: cache.node_id,
                    addr: cache.advertise,
                    addrs: cache.addrs,
                    fingerprint: cache.fingerprint,
                    video: video.to_owned(),
                    indices,
                    rate: rate as u64,
                    ticket,
                    expires_at,
                }
            })
            .collect()
    }

    /// Removes one of the caller's nodes.
    pub async fn leave(&self, caller: &Caller, id: &NodeId) -> TrackerResult<()> {
        Ok(nodes::leave(&self.state.db.write, caller.account_id, id.as_str()).await?)
    }

    /// The caller's live nodes.
    pub async fn my_nodes(&self, caller: &Caller) -> TrackerResult<Vec<NodeInfo>> {
        let mut mine = nodes::list(&self.state.db.read, Some(caller.account_id)).await?;
        self.state.reach.fill(&mut mine);
        Ok(mine)
    }

    /// The origin's FTP address and the ticket key, with the address the request came
    /// from (`seen_from`: a node behind NAT learns its public IPv4 here).
    pub fn origin(&self, seen_from: IpAddr) -> OriginInfo {
        OriginInfo {
            ftp: self.state.origin_ftp.clone(),
            ticket_key: self.state.signer.public_key().to_hex(),
            fingerprint: self.state.origin_fingerprint.clone(),
            seen_from: seen_from.to_canonical().to_string(),
            public: self.state.public,
        }
    }

    /// A signed, short-lived FTP ticket for one of the caller's nodes.
    pub async fn ticket(&self, caller: &Caller, req: &TicketRequest) -> TrackerResult<Ticket> {
        let state = self.state;
        if state.catalogue.get(&req.video).await.is_none() {
            return Err(no_video(&req.video));
        }
        let claims = tickets::claims_for(
            &state.db.read,
            &state.network,
            caller.account_id,
            &req.holder,
            &req.server,
            &req.video,
            unix_secs(),
        )
        .await?;
        Ok(Ticket {
            ticket: state.signer.issue(&claims),
            expires_at: claims.expires_at,
        })
    }

    // ---- administration ----

    fn admin_only(caller: &Caller) -> TrackerResult<()> {
        if caller.admin {
            Ok(())
        } else {
            Err(TrackerError::AdminOnly)
        }
    }

    /// Every account (administrators only).
    pub async fn admin_accounts(&self, caller: &Caller) -> TrackerResult<Vec<AccountSummary>> {
        Self::admin_only(caller)?;
        Ok(admin::accounts(&self.state.db.read).await?)
    }

    /// Every live node (administrators only).
    pub async fn admin_nodes(&self, caller: &Caller) -> TrackerResult<Vec<NodeInfo>> {
        Self::admin_only(caller)?;
        let mut live = nodes::list(&self.state.db.read, None).await?;
        self.state.reach.fill(&mut live);
        Ok(live)
    }

    /// Every movie with its viewers, holders and purchases now (administrators only).
    pub async fn admin_videos(&self, caller: &Caller) -> TrackerResult<Vec<VideoStats>> {
        Self::admin_only(caller)?;
        let live = nodes::list(&self.state.db.read, None).await?;
        let purchases = admin::purchases_by_video(&self.state.db.read).await?;
        let videos = self.state.catalogue.all().await;
        Ok(videos
            .iter()
            .map(|v| video_stats(v, &live, purchases.get(&v.record.id).copied()))
            .collect())
    }

    /// The load timeline of the last `minutes` (default 60; administrators only).
    pub async fn admin_load(
        &self,
        caller: &Caller,
        minutes: Option<u32>,
    ) -> TrackerResult<Vec<LoadPoint>> {
        Self::admin_only(caller)?;
        let minutes = minutes.unwrap_or(60);
        if !(1..=1440).contains(&minutes) {
            return Err(TrackerError::BadRequest(
                "minutes must be from 1 to 1440".into(),
            ));
        }
        Ok(admin::load(&self.state.db.read, i64::from(minutes) * 60).await?)
    }

    /// What node `node` received and sent (administrators only).
    pub async fn admin_flows(&self, caller: &Caller, node: &NodeId) -> TrackerResult<NodeFlows> {
        Self::admin_only(caller)?;
        if node.as_str().is_empty() || node.as_str().len() > 64 {
            return Err(TrackerError::BadRequest("node id is malformed".into()));
        }
        Ok(admin::flows(&self.state.db.read, node.as_str()).await?)
    }
}

/// One movie's live numbers out of the live node list.
fn video_stats(v: &StoredVideo, live: &[NodeInfo], purchases: Option<u64>) -> VideoStats {
    let id = &v.record.id;
    VideoStats {
        video: to_video(v, false),
        viewers_now: live
            .iter()
            .filter(|n| n.kind == NodeKind::Viewer && n.watching.as_ref() == Some(id))
            .count() as u64,
        caches_holding: live
            .iter()
            .filter(|n| {
                n.kind == NodeKind::Cache
                    && n.holdings
                        .iter()
                        .any(|h| &h.video == id && !h.indices.is_empty())
            })
            .count() as u64,
        purchases: purchases.unwrap_or(0),
    }
}
