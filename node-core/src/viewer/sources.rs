//! Where a viewer's chunks come from: the origin and the caches of its peer set, each with a
//! small pool of FTP sessions fed from one queue, most urgent request first (a seek's
//! segment overtakes the look-ahead). The table follows the tracker's
//! heartbeat replies (new peers, fresh tickets); a peer that sent a bad chunk is blamed and
//! never asked again; one that fails is rested for a while.

use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rivulet_tracker_client::{HeartbeatReply, MAX_FAILED_PEERS};
use tokio::sync::{Notify, mpsc};

use crate::peer::ftp::{ChunkSession, FetchError, MAX_BATCH};

/// The origin's peer id.
pub const ORIGIN: &str = "origin";
/// FTP sessions per cache and to the origin.
const CACHE_SESSIONS: usize = 2;
const ORIGIN_SESSIONS: usize = 4;
/// A request due within this is marked urgent.
const URGENT_WITHIN: Duration = Duration::from_secs(1);
/// How long a cache that failed twice in a row is left alone.
const REST: Duration = Duration::from_secs(5);

/// The answer for a request a source could not serve without failing (its batch failed
/// once already, or it does not hold the chunk): ask elsewhere, blame no one.
fn missing(peer: &str) -> FetchError {
    FetchError::Missing {
        addr: peer.to_owned(),
    }
}

/// The outcome of one chunk request.
#[derive(Debug)]
pub struct Answer {
    pub peer: String,
    pub index: u16,
    pub result: Result<Vec<u8>, FetchError>,
}

/// One chunk wanted from one source.
#[derive(Debug)]
pub struct Request {
    /// When the answer is needed; earlier requests are served first.
    pub due: Instant,
    pub segment: u32,
    pub index: u16,
    pub max_len: usize,
    pub reply: mpsc::UnboundedSender<Answer>,
}

/// A source's pending requests, most urgent on top.
#[derive(Debug, Default)]
struct Queue {
    heap: Mutex<BinaryHeap<Queued>>,
    ready: Notify,
    closed: AtomicBool,
    /// Order of arrival, which breaks ties between equally urgent requests.
    seq: AtomicU64,
}

#[derive(Debug)]
struct Queued(Request, u64);

impl PartialEq for Queued {
    fn eq(&self, other: &Queued) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Queued) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    /// The heap pops the greatest: the earliest due, then the first queued.
    fn cmp(&self, other: &Queued) -> std::cmp::Ordering {
        (other.0.due, other.1).cmp(&(self.0.due, self.1))
    }
}

impl Queue {
    fn push(&self, request: Request) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        let order = self.seq.fetch_add(1, Ordering::Relaxed);
        self.heap
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Queued(request, order));
        self.ready.notify_one();
        true
    }

    /// The most urgent request and the other queued requests for the same segment of the
    /// same fetch (at most `max` in all), waiting for one; `None` once closed. They travel
    /// in one transfer: a data connection per chunk costs more than the chunk.
    async fn pop_batch(&self, max: usize) -> Option<Vec<Request>> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            // Registered before looking, so a close or push from now on wakes it.
            notified.as_mut().enable();
            if self.closed.load(Ordering::Relaxed) {
                return None;
            }
            {
                let mut heap = self.heap.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(Queued(first, _)) = heap.pop() {
                    let mut batch = vec![first];
                    let (mates, rest): (Vec<Queued>, Vec<Queued>) =
                        std::mem::take(&mut *heap).into_iter().partition(|q| {
                            q.0.segment == batch[0].segment
                                && q.0.reply.same_channel(&batch[0].reply)
                        });
                    *heap = rest.into();
                    let mut mates = mates;
                    mates.sort();
                    // Sorted ascending by urgency: the most urgent are at the end.
                    while batch.len() < max {
                        let Some(Queued(r, _)) = mates.pop() else {
                            break;
                        };
                        batch.push(r);
                    }
                    heap.extend(mates);
                    return Some(batch);
                }
            }
            notified.await;
        }
    }

    /// Stops the workers; requests still queued are answered at once with an error, so
    /// their segments ask elsewhere instead of waiting for a race.
    fn close(&self, peer: &str) {
        self.closed.store(true, Ordering::Relaxed);
        self.ready.notify_waiters();
        let queued = std::mem::take(&mut *self.heap.lock().unwrap_or_else(|e| e.into_inner()));
        for Queued(request, _) in queued {
            let _ = request.reply.send(Answer {
                peer: peer.to_owned(),
                index: request.index,
                result: Err(FetchError::Transfer {
                    addr: peer.to_owned(),
                    reason: "dropped from the peer set".into(),
                }),
            });
        }
    }
}

/// A source's address and this node's ticket for it, refreshed by heartbeats, with the node
/// id the ticket was issued to (the FTP user), which changes when the viewer registers again.
#[derive(Clone, Debug)]
struct Endpoint {
    addr: String,
    ticket: String,
    holder: String,
    /// The certificate fingerprint the tracker named for it: FTPS pinned to it, never
    /// plain, when set.
    pin: Option<String>,
}

/// One source: its endpoint, what it holds, its queue.
#[derive(Debug)]
pub struct Source {
    pub peer: String,
    /// Chunk indices it holds (the origin: none listed, it has them all); changes as the
    /// cache completes more.
    indices: Mutex<Vec<u16>>,
    /// Bytes/s the tracker expects from it (the origin: 0, it fills the rest).
    rate: AtomicU64,
    endpoint: Arc<Mutex<Endpoint>>,
    queue: Arc<Queue>,
    /// Requests queued or running.
    pub busy: Arc<AtomicUsize>,
}

impl Drop for Source {
    /// Its workers end with it.
    fn drop(&mut self) {
        self.queue.close(&self.peer);
    }
}

impl Source {
    /// The chunk indices it holds now.
    pub fn indices(&self) -> Vec<u16> {
        self.indices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The rate the tracker asks of it, bytes/s.
    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// Queues a request; false if the source's workers are gone.
    pub fn ask(&self, request: Request) -> bool {
        self.busy.fetch_add(1, Ordering::Relaxed);
        if !self.queue.push(request) {
            self.busy.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }
}

#[derive(Debug, Default)]
struct Table {
    origin: Option<Arc<Source>>,
    caches: HashMap<String, Arc<Source>>,
    /// Peers that sent a bad chunk.
    blamed: BTreeSet<String>,
    /// Consecutive failures, and when a rested peer may be asked again.
    failures: HashMap<String, (u32, Option<Instant>)>,
    /// Caches that could not be connected to since the last report.
    unreachable: BTreeSet<String>,
}

/// The viewer's sources for one movie.
#[derive(Debug)]
pub struct Sources {
    video: String,
    /// This viewer's node id now: the FTP user of every new session.
    node_id: Mutex<String>,
    origin_addr: String,
    origin_pin: Option<String>,
    timeout: Duration,
    table: Mutex<Table>,
    /// Woken when a cache is newly suspected dead: the next report goes out soon.
    suspected: Notify,
}

impl Sources {
    pub fn new(video: &str, node_id: &str, origin_addr: &str, timeout: Duration) -> Sources {
        Sources {
            video: video.to_owned(),
            node_id: Mutex::new(node_id.to_owned()),
            origin_addr: origin_addr.to_owned(),
            origin_pin: None,
            timeout,
            table: Mutex::default(),
            suspected: Notify::new(),
        }
    }

    /// The origin's certificate fingerprint (from the tracker): its sessions are FTPS
    /// pinned to it.
    pub fn origin_pin(mut self, fingerprint: Option<String>) -> Sources {
        self.origin_pin = fingerprint;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This viewer's node id now.
    pub fn node_id(&self) -> String {
        self.node_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The viewer registered again as `node_id`: new sessions log in as it, with the
    /// tickets of `reply` (its first heartbeat's answer), which replaces the peer set.
    /// Sessions already open go on as they are.
    pub fn rebind(&self, node_id: &str, reply: &HeartbeatReply) {
        // Under the table's lock: no session starts with the new id and an old ticket.
        let table = self.lock();
        *self.node_id.lock().unwrap_or_else(|e| e.into_inner()) = node_id.to_owned();
        self.update_locked(table, reply);
    }

    /// Takes in a heartbeat reply: the origin ticket and the current peer set.
    pub fn update(&self, reply: &HeartbeatReply) {
        self.update_locked(self.lock(), reply);
    }

    fn update_locked(&self, mut table: std::sync::MutexGuard<'_, Table>, reply: &HeartbeatReply) {
        let holder = self.node_id();
        if let Some(t) = reply.origin.iter().find(|t| t.video == self.video) {
            match &table.origin {
                Some(origin) => {
                    let mut endpoint = origin.endpoint.lock().unwrap_or_else(|e| e.into_inner());
                    endpoint.ticket = t.ticket.clone();
                    endpoint.holder = holder.clone();
                }
                None => {
                    let endpoint = Endpoint {
                        addr: self.origin_addr.clone(),
                        ticket: t.ticket.clone(),
                        holder: holder.clone(),
                        pin: self.origin_pin.clone(),
                    };
                    table.origin =
                        Some(self.spawn(ORIGIN, Vec::new(), 0, endpoint, ORIGIN_SESSIONS));
                }
            }
        }
        let mut keep = BTreeSet::new();
        for peer in reply.peers.iter().filter(|p| p.video == self.video) {
            if table.blamed.contains(&peer.node_id) {
                continue;
            }
            keep.insert(peer.node_id.clone());
            let endpoint = Endpoint {
                addr: peer.addr.clone(),
                ticket: peer.ticket.clone(),
                holder: holder.clone(),
                pin: peer.fingerprint.clone(),
            };
            // A known peer keeps its sessions and queue; only what it offers changes.
            if let Some(s) = table.caches.get(&peer.node_id) {
                *s.endpoint.lock().unwrap_or_else(|e| e.into_inner()) = endpoint;
                *s.indices.lock().unwrap_or_else(|e| e.into_inner()) = peer.indices.clone();
                s.rate.store(peer.rate, Ordering::Relaxed);
                continue;
            }
            let source = self.spawn(
                &peer.node_id,
                peer.indices.clone(),
                peer.rate,
                endpoint,
                CACHE_SESSIONS,
            );
            table.caches.insert(peer.node_id.clone(), source);
        }
        table.caches.retain(|id, _| keep.contains(id));
    }

    /// Starts a source's session workers.
    fn spawn(
        &self,
        peer: &str,
        indices: Vec<u16>,
        rate: u64,
        endpoint: Endpoint,
        sessions: usize,
    ) -> Arc<Source> {
        let queue = Arc::new(Queue::default());
        let endpoint = Arc::new(Mutex::new(endpoint));
        let busy = Arc::new(AtomicUsize::new(0));
        for _ in 0..sessions {
            let (queue, endpoint, busy) = (queue.clone(), endpoint.clone(), busy.clone());
            let (peer, video, timeout) = (peer.to_owned(), self.video.clone(), self.timeout);
            tokio::spawn(async move {
                let mut session: Option<ChunkSession> = None;
                loop {
                    let Some(batch) = queue.pop_batch(MAX_BATCH).await else {
                        break;
                    };
                    // Nobody waits for them any more (the segment is complete).
                    let (batch, gone): (Vec<Request>, Vec<Request>) =
                        batch.into_iter().partition(|r| !r.reply.is_closed());
                    busy.fetch_sub(gone.len(), Ordering::Relaxed);
                    let Some(first) = batch.first() else { continue };
                    let answer = |request: &Request, result| {
                        let _ = request.reply.send(Answer {
                            peer: peer.clone(),
                            index: request.index,
                            result,
                        });
                    };
                    let connected = match session.take() {
                        Some(s) => Ok(s),
                        None => {
                            let Endpoint {
                                addr,
                                ticket,
                                holder,
                                pin,
                            } = endpoint.lock().unwrap_or_else(|e| e.into_inner()).clone();
                            ChunkSession::connect_pinned(
                                &addr,
                                &holder,
                                &ticket,
                                &video,
                                timeout,
                                pin.as_deref(),
                            )
                            .await
                        }
                    };
                    let indices: Vec<u16> = batch.iter().map(|r| r.index).collect();
                    // Due soon (a start, a seek, or a deadline near): the cache sends it
                    // before its other transfers.
                    let urgent = first.due <= Instant::now() + URGENT_WITHIN;
                    let result = match connected {
                        Ok(mut s) => {
                            let got = s
                                .fetch_batch(first.segment, &indices, first.max_len, urgent)
                                .await;
                            // A session that failed is not used again.
                            if got.is_ok() {
                                session = Some(s);
                            }
                            got
                        }
                        Err(e) => Err(e),
                    };
                    busy.fetch_sub(batch.len(), Ordering::Relaxed);
                    match result {
                        Ok(mut got) => {
                            for request in &batch {
                                match got.iter().position(|(i, _)| *i == request.index) {
                                    Some(at) => answer(request, Ok(got.swap_remove(at).1)),
                                    None => answer(request, Err(missing(&peer))),
                                }
                            }
                        }
                        Err(e) => {
                            // One failure for the batch; the rest ask elsewhere quietly.
                            answer(first, Err(e));
                            for request in &batch[1..] {
                                answer(request, Err(missing(&peer)));
                            }
                        }
                    }
                }
                if let Some(s) = session {
                    s.close().await;
                }
            });
        }
        Arc::new(Source {
            peer: peer.to_owned(),
            indices: Mutex::new(indices),
            rate: AtomicU64::new(rate),
            endpoint,
            queue,
            busy,
        })
    }

    /// The origin, once the tracker has given a ticket for it.
    pub fn origin(&self) -> Option<Arc<Source>> {
        self.lock().origin.clone()
    }

    /// Caches that may be asked now, in a stable order.
    pub fn caches(&self) -> Vec<Arc<Source>> {
        let table = self.lock();
        let now = Instant::now();
        let mut out: Vec<Arc<Source>> = table
            .caches
            .values()
            .filter(|s| {
                !table.blamed.contains(&s.peer)
                    && table
                        .failures
                        .get(&s.peer)
                        .and_then(|f| f.1)
                        .is_none_or(|until| until <= now)
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| a.peer.cmp(&b.peer));
        out
    }

    /// A cache sent a chunk that failed verification: never use it again.
    pub fn blame(&self, peer: &str) {
        if peer == ORIGIN {
            return;
        }
        let mut table = self.lock();
        table.blamed.insert(peer.to_owned());
        table.caches.remove(peer);
    }

    /// A request to `peer` failed (not for a bad chunk); `dead`: it could not be connected
    /// to or its connection broke (reported to the tracker, which checks it itself).
    pub fn failed(&self, peer: &str, dead: bool) {
        let mut table = self.lock();
        if dead
            && peer != ORIGIN
            && table.unreachable.len() < MAX_FAILED_PEERS
            && table.unreachable.insert(peer.to_owned())
        {
            self.suspected.notify_one();
        }
        let entry = table.failures.entry(peer.to_owned()).or_default();
        entry.0 += 1;
        if entry.0 >= 2 {
            entry.0 = 0;
            entry.1 = Some(Instant::now() + REST);
        }
    }

    /// Waits until a cache is newly suspected dead (see [`Sources::failed`]).
    pub async fn suspected(&self) {
        self.suspected.notified().await;
    }

    /// The caches that could not be connected to since the last call, for the next report.
    pub fn take_unreachable(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().unreachable)
            .into_iter()
            .collect()
    }

    /// A request to `peer` worked.
    pub fn worked(&self, peer: &str) {
        if let Some(entry) = self.lock().failures.get_mut(peer) {
            entry.0 = 0;
        }
    }

    /// Peers blamed so far.
    pub fn blamed(&self) -> Vec<String> {
        self.lock().blamed.iter().cloned().collect()
    }

    /// How many caches are in the peer set now.
    pub fn peer_count(&self) -> usize {
        self.lock().caches.len()
    }
}
