//! A watched value as an iced subscription's input: [`Feed`] numbers each receiver it wraps,
//! so every feed made is a subscription of its own and its clones are the same one (a
//! `watch::Receiver` cannot be hashed). The viewer's status and the session's link use it.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use iced::futures::Stream;
use tokio::sync::watch;

/// A `watch::Receiver` with a number of its own.
#[derive(Debug)]
pub struct Feed<T> {
    id: u64,
    value: watch::Receiver<T>,
}

impl<T> Clone for Feed<T> {
    fn clone(&self) -> Self {
        Feed {
            id: self.id,
            value: self.value.clone(),
        }
    }
}

impl<T> Hash for Feed<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

/// Numbers the feeds made, so that each gets its own subscription.
static NEXT: AtomicU64 = AtomicU64::new(0);

impl<T: Clone + Send + Sync + 'static> Feed<T> {
    /// A new feed (a new subscription) following `value`.
    pub fn new(value: watch::Receiver<T>) -> Feed<T> {
        Feed {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            value,
        }
    }

    /// The current value, then each change, until the sender goes.
    pub fn values(&self) -> impl Stream<Item = T> + use<T> {
        self.stream(true)
    }

    /// Each change after now, until the sender goes.
    pub fn changes(&self) -> impl Stream<Item = T> + use<T> {
        let mut value = self.value.clone();
        value.mark_unchanged();
        Feed { id: self.id, value }.stream(false)
    }

    fn stream(&self, current_first: bool) -> impl Stream<Item = T> + use<T> {
        let value = self.value.clone();
        iced::futures::stream::unfold((value, current_first), |(mut value, first)| async move {
            if !first {
                value.changed().await.ok()?;
            }
            let now = value.borrow_and_update().clone();
            Some((now, (value, false)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced::futures::StreamExt as _;

    #[tokio::test]
    async fn values_start_with_the_current_one_changes_do_not() {
        let (tx, rx) = watch::channel(1);
        let feed = Feed::new(rx);
        let mut values = Box::pin(feed.values());
        let mut changes = Box::pin(feed.changes());
        assert_eq!(values.next().await, Some(1));
        tx.send(2).unwrap();
        assert_eq!(values.next().await, Some(2));
        assert_eq!(changes.next().await, Some(2));
        drop(tx);
        assert_eq!(values.next().await, None);
        assert_eq!(changes.next().await, None);
    }

    #[test]
    fn clones_are_one_subscription_new_feeds_another() {
        let hash = |f: &Feed<u8>| {
            let mut h = std::hash::DefaultHasher::new();
            f.hash(&mut h);
            h.finish()
        };
        let (_tx, rx) = watch::channel(0);
        let a = Feed::new(rx.clone());
        assert_eq!(hash(&a), hash(&a.clone()));
        assert_ne!(hash(&a), hash(&Feed::new(rx)));
    }
}
