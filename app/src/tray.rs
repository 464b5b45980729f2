//! The system tray icon (a StatusNotifierItem on the D-Bus session bus, through `ksni`): Open,
//! Pause / Resume sharing and Quit, so the cache can go on serving with the window closed.
//! The icon's service runs on the app's tokio runtime; menu clicks arrive on its task and are
//! handed to the UI as [`TrayEvent`]s through [`events`], an iced subscription stream (as the
//! engine's events are). Without a session bus or a StatusNotifierWatcher the stream says
//! [`TrayEvent::Unavailable`] and the app closes as it always did.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use iced::futures::{SinkExt as _, Stream};
use ksni::TrayMethods as _;
use tokio::sync::{mpsc, watch};

/// What the app says, once, when there is no tray to keep sharing from.
pub const NO_TRAY: &str = "No system tray found: closing the window stops sharing.";

/// The icon's id on the bus (the `Id` property hosts group items by).
pub const TRAY_ID: &str = "rivulet";

/// A menu entry the user picked (or a click on the icon itself: [`TrayAction::Open`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrayAction {
    /// Bring the window back (open it again when it was closed).
    Open,
    /// Stop the cache for now (it tells the tracker it leaves).
    PauseSharing,
    /// Start the cache again.
    ResumeSharing,
    /// The app's full close: the engine stops, the tracker is told, the process exits.
    Quit,
}

/// What the tray tells the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrayEvent {
    /// A StatusNotifierWatcher took the icon: it shows in a tray.
    Shown,
    /// No tray: no session bus, no StatusNotifierWatcher, or the watcher went away; why.
    Unavailable(String),
    /// The user picked this in the menu.
    Action(TrayAction),
}

/// Whether the app can keep sharing from a tray, as the tray last said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TrayState {
    /// Not known yet: the icon is starting, or not wanted (closing quits meanwhile).
    #[default]
    Unknown,
    /// The icon shows in a tray.
    Shown,
    /// There is no tray (why, for the log); closing the window quits.
    Absent(String),
}

impl TrayState {
    /// Whether a tray shows the icon, so the window may close without the app quitting.
    pub fn is_shown(&self) -> bool {
        *self == TrayState::Shown
    }
}

/// The tray's input: whether sharing runs (the menu offers Pause or Resume). One tray per
/// app: every feed is the same subscription.
#[derive(Clone, Debug)]
pub struct TrayFeed {
    sharing: watch::Receiver<bool>,
}

impl Hash for TrayFeed {
    fn hash<H: Hasher>(&self, state: &mut H) {
        TRAY_ID.hash(state);
    }
}

impl TrayFeed {
    /// A feed following `sharing`.
    pub fn new(sharing: watch::Receiver<bool>) -> TrayFeed {
        TrayFeed { sharing }
    }
}

/// Puts the icon on the session bus and yields what happens to it: [`TrayEvent::Shown`] or
/// [`TrayEvent::Unavailable`] first, then the user's picks (and the watcher coming and going).
/// Dropping the stream takes the icon off the bus.
pub fn events(feed: &TrayFeed) -> impl Stream<Item = TrayEvent> + use<> {
    let mut sharing = feed.sharing.clone();
    iced::stream::channel(16, async move |mut out| {
        let (to_app, mut from_icon) = mpsc::unbounded_channel();
        let online = Arc::new(AtomicBool::new(true));
        let icon = StatusIcon {
            sharing: *sharing.borrow_and_update(),
            to_app,
            online: online.clone(),
            pixmaps: pixmaps(),
        };
        // A watcher missing at start is reported through `watcher_offline` (and one that
        // comes later is used), rather than failing the icon for good.
        let handle = match icon.assume_sni_available(true).spawn().await {
            Ok(handle) => handle,
            Err(e) => {
                tracing::info!("no system tray: {e}");
                let _ = out.send(TrayEvent::Unavailable(e.to_string())).await;
                return;
            }
        };
        let _off_the_bus = ShutdownOnDrop(handle.clone());
        if online.load(Ordering::Acquire) {
            tracing::info!("the tray icon is registered");
            if out.send(TrayEvent::Shown).await.is_err() {
                return;
            }
        }
        loop {
            tokio::select! {
                event = from_icon.recv() => {
                    let Some(event) = event else { return };
                    if out.send(event).await.is_err() {
                        return;
                    }
                }
                changed = sharing.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = *sharing.borrow_and_update();
                    handle.update(move |icon| icon.sharing = now).await;
                }
            }
        }
    })
}

/// The menu's words for the sharing entry.
pub fn sharing_label(sharing: bool) -> &'static str {
    if sharing {
        "Pause sharing"
    } else {
        "Resume sharing"
    }
}

/// The icon as `ksni` serves it.
struct StatusIcon {
    /// Whether the cache runs (Pause) or is paused (Resume).
    sharing: bool,
    to_app: mpsc::UnboundedSender<TrayEvent>,
    /// Whether a watcher has the icon (false after `watcher_offline`).
    online: Arc<AtomicBool>,
    pixmaps: Vec<ksni::Icon>,
}

impl StatusIcon {
    fn tell(&self, event: TrayEvent) {
        let _ = self.to_app.send(event);
    }
}

impl ksni::Tray for StatusIcon {
    fn id(&self) -> String {
        TRAY_ID.into()
    }

    fn title(&self) -> String {
        "Rivulet".into()
    }

    fn icon_name(&self) -> String {
        // The installed icon (the package puts it in hicolor); the pixmaps otherwise.
        "rivulet".into()
    }

    fn icon_pixmap(&self) -> Vec<ksni::Icon> {
        self.pixmaps.clone()
    }

    fn tool_tip(&self) -> ksni::ToolTip {
        ksni::ToolTip {
            title: "Rivulet".into(),
            description: if self.sharing {
                "Sharing: your cache serves other viewers".into()
            } else {
                "Sharing is paused".into()
            },
            ..ksni::ToolTip::default()
        }
    }

    fn activate(&mut self, _x: i32, _y: i32) {
        self.tell(TrayEvent::Action(TrayAction::Open));
    }

    fn menu(&self) -> Vec<ksni::MenuItem<Self>> {
        use ksni::menu::StandardItem;
        let pick = |label: &str, action: fn(&StatusIcon) -> TrayAction| -> ksni::MenuItem<Self> {
            StandardItem {
                label: label.into(),
                activate: Box::new(move |icon: &mut StatusIcon| {
                    icon.tell(TrayEvent::Action(action(icon)))
                }),
                ..StandardItem::default()
            }
            .into()
        };
        vec![
            pick("Open", |_| TrayAction::Open),
            pick(sharing_label(self.sharing), |icon| {
                if icon.sharing {
                    TrayAction::PauseSharing
                } else {
                    TrayAction::ResumeSharing
                }
            }),
            ksni::MenuItem::Separator,
            pick("Quit", |_| TrayAction::Quit),
        ]
    }

    fn watcher_online(&self) {
        tracing::info!("a system tray is back");
        self.online.store(true, Ordering::Release);
        self.tell(TrayEvent::Shown);
    }

    fn watcher_offline(&self, reason: ksni::OfflineReason) -> bool {
        let why = match reason {
            ksni::OfflineReason::Error(e) => e.to_string(),
            _ => "the StatusNotifierWatcher left the session bus".to_owned(),
        };
        tracing::info!("no system tray: {why}");
        self.online.store(false, Ordering::Release);
        self.tell(TrayEvent::Unavailable(why));
        // Keep the icon's service: it registers again when a watcher comes.
        true
    }
}

/// Takes the icon off the bus when the subscription ends.
struct ShutdownOnDrop(ksni::Handle<StatusIcon>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        // Sends the request at once; the service closes its connection on its own task.
        drop(self.0.shutdown());
    }
}

/// The app icon at 32 and 64 px as ARGB32 pixmaps, for hosts without the installed icon.
fn pixmaps() -> Vec<ksni::Icon> {
    [
        &include_bytes!("../../icons/png/32x32/rivulet.png")[..],
        &include_bytes!("../../icons/png/64x64/rivulet.png")[..],
    ]
    .into_iter()
    .filter_map(|png| {
        let rgba = image::load_from_memory(png).ok()?.to_rgba8();
        let (w, h) = rgba.dimensions();
        let data = rgba
            .pixels()
            .flat_map(|p| {
                let [r, g, b, a] = p.0;
                [a, r, g, b]
            })
            .collect();
        Some(ksni::Icon {
            width: i32::try_from(w).ok()?,
            height: i32::try_from(h).ok()?,
            data,
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pixmaps_are_argb_at_two_sizes() {
        let icons = pixmaps();
        let sizes: Vec<_> = icons.iter().map(|i| (i.width, i.height)).collect();
        assert_eq!(sizes, [(32, 32), (64, 64)]);
        for icon in &icons {
            assert_eq!(icon.data.len(), (icon.width * icon.height * 4) as usize);
        }
        // Some pixel is opaque: alpha comes first.
        assert!(icons[1].data.chunks(4).any(|p| p[0] == 255));
    }

    #[test]
    fn the_sharing_entry_says_what_it_will_do() {
        assert_eq!(sharing_label(true), "Pause sharing");
        assert_eq!(sharing_label(false), "Resume sharing");
    }
}
