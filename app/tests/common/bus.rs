//! A private D-Bus session bus for the tray tests, and the smallest StatusNotifierWatcher to
//! put on it (what a desktop's tray runs for items to register with).

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// A private session bus, stopped when dropped.
pub struct SessionBus {
    daemon: Child,
    /// Where to connect (`DBUS_SESSION_BUS_ADDRESS`).
    pub address: String,
    _dir: tempfile::TempDir,
}

impl SessionBus {
    /// Starts `dbus-daemon --session` on a socket of its own; fails naming the tool when it
    /// is missing.
    pub fn start() -> SessionBus {
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address"])
            .arg(format!("--address=unix:path={}", dir.path().join("bus").display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("dbus-daemon cannot run ({e}): installer/deps.sh installs it (Debian package dbus)")
            });
        let mut address = String::new();
        std::io::BufReader::new(daemon.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let address = address.trim().to_owned();
        assert!(address.starts_with("unix:"), "dbus-daemon said {address:?}");
        SessionBus {
            daemon,
            address,
            _dir: dir,
        }
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// The smallest StatusNotifierWatcher: it takes registrations and says a host is there.
#[derive(Debug)]
struct Watcher {
    items: Arc<Mutex<Vec<String>>>,
    registered: mpsc::UnboundedSender<String>,
}

#[zbus::interface(name = "org.kde.StatusNotifierWatcher")]
impl Watcher {
    async fn register_status_notifier_item(&self, service: String) {
        self.items.lock().unwrap().push(service.clone());
        let _ = self.registered.send(service);
    }

    async fn register_status_notifier_host(&self, _service: String) {}

    #[zbus(property)]
    async fn registered_status_notifier_items(&self) -> Vec<String> {
        self.items.lock().unwrap().clone()
    }

    #[zbus(property)]
    async fn is_status_notifier_host_registered(&self) -> bool {
        true
    }

    #[zbus(property)]
    async fn protocol_version(&self) -> i32 {
        0
    }
}

/// Runs a watcher on `bus`; the bus names of the items that register come on the receiver.
pub async fn watcher(bus: &SessionBus) -> (zbus::Connection, mpsc::UnboundedReceiver<String>) {
    let (registered, registrations) = mpsc::unbounded_channel();
    let watcher = Watcher {
        items: Arc::default(),
        registered,
    };
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .name("org.kde.StatusNotifierWatcher")
        .unwrap()
        .serve_at("/StatusNotifierWatcher", watcher)
        .unwrap()
        .build()
        .await
        .unwrap();
    (conn, registrations)
}
