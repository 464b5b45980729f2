//! The tray icon on a real D-Bus session bus: a private `dbus-daemon` with a small
//! StatusNotifierWatcher on it (the part of a desktop's tray that items register with). The
//! app's icon registers, its menu (com.canonical.dbusmenu, as a tray host reads it) has Open,
//! Pause sharing and Quit; clicking "Pause sharing" stops the running cache (the tracker sees
//! it leave) and the entry becomes "Resume sharing", which starts it again; "Quit" stops the
//! engine; the icon leaves the bus with the app. Without a watcher, or without a bus, the app
//! is told there is no tray (and a watcher that comes later is used); closing then quits.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::bus::{SessionBus, click, has_owner, labels, menu, watcher};
use common::{Driver, PASSWORD};
use iced::futures::StreamExt as _;
use rivulet_app::app::{App, Message};
use rivulet_app::tray::{self, NO_TRAY, TrayEvent};
use rivulet_localnet::LocalNetwork;
use tokio::sync::mpsc;

/// The app's tray stream, run as the app's subscription would, its events on the receiver.
fn run_tray(
    app: &App,
) -> (
    tokio::task::JoinHandle<()>,
    mpsc::UnboundedReceiver<TrayEvent>,
) {
    let feed = app
        .tray_feed()
        .expect("the tray is wanted: sharing, set up, keep sharing on");
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(tray::events(&feed));
        while let Some(event) = events.next().await {
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    (task, rx)
}

async fn next_tray_event(events: &mut mpsc::UnboundedReceiver<TrayEvent>) -> TrayEvent {
    tokio::time::timeout(Duration::from_secs(15), events.recv())
        .await
        .expect("the tray said nothing within 15 s")
        .expect("the tray stream ended")
}

/// Feeds the tray's and the engine's events to the app until `done` holds, for at most 30 s.
async fn until(
    d: &mut Driver,
    tray: &mut mpsc::UnboundedReceiver<TrayEvent>,
    done: impl Fn(&App) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(&d.app) {
        let message = {
            let engine = d.events.as_mut().expect("the engine runs");
            tokio::select! {
                Some(e) = tray.recv() => Message::Tray(e),
                Some(e) = engine.recv() => Message::Node(e),
                () = tokio::time::sleep_until(deadline) => return false,
            }
        };
        d.send(message).await;
    }
    true
}

/// The bus address is the process's environment: one test at a time sets it.
static BUS_ADDRESS: Mutex<()> = Mutex::new(());

/// Runs `test` on a fresh runtime with `DBUS_SESSION_BUS_ADDRESS` set to `address`.
fn on_bus(address: &str, test: impl std::future::Future<Output = ()>) {
    let _one_at_a_time = BUS_ADDRESS.lock().unwrap_or_else(|e| e.into_inner());
    common::isolate();
    // SAFETY: set before the runtime below starts; the other test waits on the lock.
    unsafe { std::env::set_var("DBUS_SESSION_BUS_ADDRESS", address) };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(150), test)
                .await
                .expect("the test did not finish within 150 s")
        });
}

async fn caches(tracker: &rivulet_tracker_client::TrackerClient) -> usize {
    tracker
        .my_nodes()
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.kind == rivulet_tracker_client::NodeKind::Cache)
        .count()
}

#[test]
fn the_tray_icon_registers_and_its_menu_pauses_resumes_and_quits() {
    let bus = SessionBus::start();
    on_bus(&bus.address, async {
        let (_watcher, mut registrations) = watcher(&bus).await;
        let net = LocalNetwork::temp().start().await.unwrap();
        net.register("tia", PASSWORD).await.unwrap();
        let tracker = net.login("tia", PASSWORD).await.unwrap();
        let mut d = Driver::new(true).await;
        d.log_in(&net.url(), "tia", PASSWORD).await;
        let cache_up = |app: &App| app.cache.as_ref().is_some_and(|c| !c.node_id.is_empty());
        let caches_are = |n: usize| {
            let tracker = &tracker;
            rivulet_e2e::eventually(Duration::from_secs(15), move || async move {
                caches(tracker).await == n
            })
        };

        // The icon registers with the watcher and the app learns it shows.
        let (tray_task, mut tray) = run_tray(&d.app);
        assert!(until(&mut d, &mut tray, |app| app.tray.is_shown()).await);
        let item = tokio::time::timeout(Duration::from_secs(5), registrations.recv())
            .await
            .expect("the icon did not register with the watcher")
            .unwrap();
        assert!(item.starts_with("org.kde.StatusNotifierItem-"), "{item}");
        let host = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        let sni = zbus::Proxy::new(
            &host,
            item.as_str(),
            "/StatusNotifierItem",
            "org.kde.StatusNotifierItem",
        )
        .await
        .unwrap();
        assert_eq!(sni.get_property::<String>("Id").await.unwrap(), "rivulet");
        assert_eq!(
            sni.get_property::<String>("Title").await.unwrap(),
            "Rivulet"
        );
        assert_eq!(
            labels(&menu(&host, &item).await),
            ["Open", "Pause sharing", "Quit"]
        );

        // "Pause sharing" stops the cache: the tracker sees it leave, the menu offers Resume.
        assert!(until(&mut d, &mut tray, cache_up).await, "no cache");
        assert_eq!(caches(&tracker).await, 1);
        click(&host, &item, "Pause sharing").await;
        assert!(
            until(&mut d, &mut tray, |app| app.sharing_paused
                && app.cache.is_none())
            .await,
            "the click did not pause sharing"
        );
        assert!(caches_are(0).await, "the paused cache is still listed");
        let (host_ref, item_ref) = (&host, item.as_str());
        assert!(
            rivulet_e2e::eventually(Duration::from_secs(10), move || async move {
                labels(&menu(host_ref, item_ref).await) == ["Open", "Resume sharing", "Quit"]
            })
            .await,
            "the menu still says {:?}",
            labels(&menu(&host, &item).await)
        );

        // "Resume sharing" starts it again.
        click(&host, &item, "Resume sharing").await;
        assert!(
            until(&mut d, &mut tray, cache_up).await,
            "sharing did not resume"
        );
        assert!(caches_are(1).await, "the resumed cache is not listed");

        // "Quit" is the full close: the engine stops, the cache leaves the tracker.
        click(&host, &item, "Quit").await;
        assert!(
            until(&mut d, &mut tray, |app| app.closing && app.node.is_none()).await,
            "Quit did not stop the engine"
        );
        assert!(d.app.tray_feed().is_none(), "the tray outlives the close");
        assert!(caches_are(0).await, "the cache did not leave the tracker");
        // The subscription ends with the app: the icon leaves the bus.
        tray_task.abort();
        let _ = tray_task.await;
        assert!(
            rivulet_e2e::eventually(Duration::from_secs(10), move || async move {
                !has_owner(host_ref, item_ref).await
            })
            .await,
            "the icon is still on the bus"
        );
    });
}

#[test]
fn without_a_tray_the_app_is_told_and_closing_quits() {
    // No session bus at all.
    let nowhere = tempfile::tempdir().unwrap();
    let address = format!("unix:path={}", nowhere.path().join("no-bus").display());
    on_bus(&address, async {
        let d = Driver::new(false).await;
        let (_task, mut tray) = run_tray(&d.app);
        match next_tray_event(&mut tray).await {
            TrayEvent::Unavailable(why) => assert!(why.contains("D-Bus"), "{why}"),
            other => panic!("a tray without a bus: {other:?}"),
        }
    });

    // A bus without a StatusNotifierWatcher: said; a watcher that comes later is used.
    let bus = SessionBus::start();
    on_bus(&bus.address, async {
        let net = LocalNetwork::temp().start().await.unwrap();
        net.register("nia", PASSWORD).await.unwrap();
        let mut d = Driver::new(true).await;
        d.log_in(&net.url(), "nia", PASSWORD).await;
        let (_task, mut tray) = run_tray(&d.app);
        let event = next_tray_event(&mut tray).await;
        let TrayEvent::Unavailable(why) = &event else {
            panic!("a tray without a watcher: {event:?}");
        };
        assert!(why.contains("StatusNotifierWatcher"), "{why}");
        d.send(Message::Tray(event)).await;
        assert_eq!(d.app.notice.as_deref(), Some(NO_TRAY));
        assert!(
            until(&mut d, &mut tray, |app| app.cache.is_some()).await,
            "no cache"
        );

        // Closing the window with sharing on and no tray quits, as it always did.
        d.send(Message::CloseRequested).await;
        assert!(d.app.closing && !d.app.in_tray);
        assert!(
            until(&mut d, &mut tray, |app| app.node.is_none()).await,
            "the engine did not stop"
        );

        // A watcher that starts later gets the icon after all.
        let (_watcher, mut registrations) = watcher(&bus).await;
        assert_eq!(next_tray_event(&mut tray).await, TrayEvent::Shown);
        tokio::time::timeout(Duration::from_secs(5), registrations.recv())
            .await
            .expect("the icon did not register with the late watcher");
    });
}
