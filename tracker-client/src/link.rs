//! How a client's calls to its tracker are going, for a user interface to show: answered,
//! unreachable since when, or a kept session the tracker will not renew. Clones of a client
//! share one [`Link`]; [`TrackerClient::link`](crate::TrackerClient::link) watches it.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;

use crate::ErrorCode;

/// The state of a client's connection to its tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// The last call got an answer (a refusal is an answer too).
    Up,
    /// Calls have not reached the tracker since `since`; `error` is the latest reason.
    Unreachable { since: SystemTime, error: String },
    /// The kept session ended and logging in again was refused (password changed, account
    /// disabled): only the user can log in again.
    SessionEnded { code: ErrorCode, message: String },
}

/// The shared, watched [`Link`] of a client and its clones.
#[derive(Clone, Debug)]
pub(crate) struct LinkState(Arc<watch::Sender<Link>>);

impl Default for LinkState {
    fn default() -> LinkState {
        LinkState(Arc::new(watch::channel(Link::Up).0))
    }
}

impl LinkState {
    pub(crate) fn watch(&self) -> watch::Receiver<Link> {
        self.0.subscribe()
    }

    /// A call was answered: the tracker is reachable (a session already ended stays so
    /// until the user logs in again, which makes a new client).
    pub(crate) fn answered(&self) {
        self.0.send_if_modified(|link| {
            let was_down = matches!(link, Link::Unreachable { .. });
            if was_down {
                *link = Link::Up;
            }
            was_down
        });
    }

    /// A call did not reach the tracker.
    pub(crate) fn unreachable(&self, error: &str) {
        self.0.send_if_modified(|link| match link {
            Link::Up => {
                *link = Link::Unreachable {
                    since: SystemTime::now(),
                    error: error.to_owned(),
                };
                true
            }
            Link::Unreachable { error: e, .. } if e != error => {
                *e = error.to_owned();
                true
            }
            _ => false,
        });
    }

    /// The tracker refused to log the kept session in again.
    pub(crate) fn ended(&self, code: &ErrorCode, message: &str) {
        self.0.send_replace(Link::SessionEnded {
            code: code.clone(),
            message: message.to_owned(),
        });
    }

    /// A log-in of the kept session succeeded.
    pub(crate) fn renewed(&self) {
        self.0.send_replace(Link::Up);
    }
}
