//! A private D-Bus session bus for the tray tests, and the smallest StatusNotifierWatcher to
//! put on it (what a desktop's tray runs for items to register with).

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use zbus::zvariant::Value;

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

/// The icon's menu as a tray host reads it (`GetLayout` of the whole tree): id and label of
/// each entry that has one, in order.
pub async fn menu(conn: &zbus::Connection, item: &str) -> Vec<(i32, String)> {
    let reply = conn
        .call_method(
            Some(item),
            "/MenuBar",
            Some("com.canonical.dbusmenu"),
            "GetLayout",
            &(0i32, -1i32, Vec::<String>::new()),
        )
        .await
        .unwrap();
    let body = reply.body();
    let fields: zbus::zvariant::Structure<'_> = body.deserialize().unwrap();
    let mut entries = Vec::new();
    if let Some(root) = fields.fields().get(1) {
        entries_of(root, &mut entries);
    }
    entries
}

fn entries_of(node: &Value<'_>, out: &mut Vec<(i32, String)>) {
    let node = match node {
        Value::Value(inner) => inner.as_ref(),
        other => other,
    };
    let Value::Structure(s) = node else { return };
    let [Value::I32(id), Value::Dict(props), Value::Array(children)] = s.fields() else {
        return;
    };
    for (key, value) in props.iter() {
        let value = match value {
            Value::Value(inner) => inner.as_ref(),
            other => other,
        };
        if let (Value::Str(key), Value::Str(label)) = (key, value)
            && key.as_str() == "label"
        {
            out.push((*id, label.to_string()));
        }
    }
    for child in children.iter() {
        entries_of(child, out);
    }
}

pub fn labels(entries: &[(i32, String)]) -> Vec<&str> {
    entries.iter().map(|(_, label)| label.as_str()).collect()
}

/// Clicks the menu entry labelled `label`, as a tray host does.
pub async fn click(conn: &zbus::Connection, item: &str, label: &str) {
    let entries = menu(conn, item).await;
    let (id, _) = entries
        .iter()
        .find(|(_, l)| l == label)
        .unwrap_or_else(|| panic!("no {label:?} in the menu: {entries:?}"));
    conn.call_method(
        Some(item),
        "/MenuBar",
        Some("com.canonical.dbusmenu"),
        "Event",
        &(*id, "clicked", Value::from(0i32), 0u32),
    )
    .await
    .unwrap();
}

pub async fn has_owner(conn: &zbus::Connection, name: &str) -> bool {
    zbus::fdo::DBusProxy::new(conn)
        .await
        .unwrap()
        .name_has_owner(name.try_into().unwrap())
        .await
        .unwrap()
}
