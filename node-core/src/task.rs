//! Accountable background tasks: every task Rivulet starts has a name, is traced when it
//! starts and ends, logs the error it ends with instead of dropping it, and belongs to a
//! [`Tasks`] group whose owner can cancel it and wait until all of it has stopped.

use std::fmt::Display;
use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

/// Spawns `fut` as a task named `name`: traced in a span of that name, its error (if any)
/// logged with the name. For a task that is nobody's to wait for; prefer [`Tasks::spawn`].
pub fn spawn<F, E>(name: &'static str, fut: F) -> JoinHandle<()>
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    tokio::spawn(run_named(name, fut))
}

async fn run_named<F, E>(name: &'static str, fut: F)
where
    F: Future<Output = Result<(), E>>,
    E: Display,
{
    let span = tracing::debug_span!("task", name);
    async move {
        tracing::trace!("started");
        match fut.await {
            Ok(()) => tracing::trace!("finished"),
            Err(e) => tracing::warn!(task = name, "stopped with an error: {e}"),
        }
    }
    .instrument(span)
    .await
}

/// A periodic tick for a background loop that ends when its stop signal is cancelled:
/// `while every.tick(&stop).await { … }`. The first tick is immediate; ticks missed while the
/// loop body ran are not made up (the next comes a full period later). Periods below 50 ms
/// are raised to 50 ms.
#[derive(Debug)]
pub struct Every {
    interval: tokio::time::Interval,
}

impl Every {
    /// Ticks every `period`.
    pub fn new(period: std::time::Duration) -> Every {
        let mut interval = tokio::time::interval(period.max(std::time::Duration::from_millis(50)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Every { interval }
    }

    /// Waits for the next tick: `true`, or `false` once `stop` is cancelled.
    pub async fn tick(&mut self, stop: &CancellationToken) -> bool {
        tokio::select! {
            _ = self.interval.tick() => !stop.is_cancelled(),
            () = stop.cancelled() => false,
        }
    }
}

/// A group of named tasks with one stop signal: a server or a node role owns one, hands
/// [`Tasks::token`] to its loops, and on shutdown cancels it and waits for every task.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Tasks {
    /// An empty group.
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// The group's stop signal: loops select on `token.cancelled()`.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Whether the group has been told to stop.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Spawns a named task into the group (see [`spawn`]).
    pub fn spawn<F, E>(&self, name: &'static str, fut: F) -> JoinHandle<()>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        self.tracker.spawn(run_named(name, fut))
    }

    /// Spawns a named task that ends when the group is cancelled, if it has not ended first.
    pub fn spawn_until_cancelled<F, E>(&self, name: &'static str, fut: F) -> JoinHandle<()>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let token = self.token.clone();
        self.spawn(name, async move {
            tokio::select! {
                r = fut => r,
                () = token.cancelled() => Ok(()),
            }
        })
    }

    /// Cancels the group and waits until every task in it has ended.
    pub async fn shutdown(&self) {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Tasks still running in the group.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no task of the group is running.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn shutdown_waits_for_every_task() {
        let tasks = Tasks::new();
        let done = Arc::new(AtomicBool::new(false));
        let (token, flag) = (tasks.token(), done.clone());
        tasks.spawn("slow-to-stop", async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            flag.store(true, Ordering::SeqCst);
            Ok::<_, String>(())
        });
        tasks.spawn_until_cancelled("forever", std::future::pending::<Result<(), String>>());
        assert_eq!(tasks.len(), 2);
        tasks.shutdown().await;
        assert!(
            done.load(Ordering::SeqCst),
            "shutdown returned before the task ended"
        );
        assert!(tasks.is_empty());
    }

    #[tokio::test]
    async fn a_failing_task_ends_without_taking_others_down() {
        let tasks = Tasks::new();
        tasks.spawn("fails", async { Err::<(), _>("disk full") });
        let ok = tasks.spawn("succeeds", async { Ok::<_, String>(()) });
        ok.await.unwrap();
        tasks.shutdown().await;
    }
}
