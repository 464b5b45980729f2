//! Player screen: mpv drawing inside the window, with play/pause, a seek bar that works on
//! parts not downloaded yet, volume, fullscreen, audio and subtitle tracks, keyboard
//! shortcuts (space, ←/→ 5 s, ↑/↓ volume, f, m, Esc), and a live panel of where the bytes
//! come from (caches or origin), peers and buffer ahead.

use iced::keyboard::{self, Key, Modifiers, key::Named};
use iced::widget::{button, column, container, image, pick_list, row, slider, text};
use iced::{Element, Length, Task};
use tokio::sync::watch;

use super::{bytes, clock};
use crate::engine::ViewerStatus;
use crate::video::{Track, Video};

/// The size mpv renders at: 720p.
pub const RENDER_SIZE: (u32, u32) = (1280, 720);

/// Where the player is.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    /// Joining the network.
    Connecting,
    Playing,
    Failed(String),
}

#[derive(Debug)]
pub struct State {
    pub video_id: String,
    pub title: String,
    pub phase: Phase,
    video: Option<Video>,
    frame: Option<image::Handle>,
    /// Keeps the shown frame's texture alive while the next one uploads.
    allocation: Option<iced_runtime::image::Allocation>,
    /// An upload is in flight; newer frames wait.
    uploading: bool,
    /// Frames that reached the window.
    pub frames_shown: u64,
    /// Playback position and length in seconds.
    pub time: f64,
    pub duration: f64,
    /// Where the seek bar is held while dragged.
    seeking: Option<f64>,
    pub paused: bool,
    pub volume: f64,
    pub muted: bool,
    /// Where playback starts: where the movie was left last time.
    pub resume_at: Option<f64>,
    pub fullscreen: bool,
    audio_tracks: Vec<Track>,
    sub_tracks: Vec<Track>,
    audio: Option<Track>,
    sub: Option<Track>,
    pub viewer: ViewerStatus,
    /// The player's byte position, followed by the engine for "buffered ahead".
    playhead: watch::Sender<u64>,
}

#[derive(Clone, Debug)]
pub enum Message {
    /// The engine serves the movie at this URL.
    StreamReady {
        url: String,
        title: String,
    },
    /// Joining failed.
    Failed(String),
    /// Poll mpv for a frame and its position.
    Tick,
    TogglePause,
    /// The seek bar is dragged to seconds.
    SeekMoved(f64),
    /// The seek bar is let go.
    SeekReleased,
    /// Volume 0–100.
    Volume(f64),
    /// Seek this many seconds from where the clock is (←/→).
    SeekBy(f64),
    /// Change the volume by this much (↑/↓).
    VolumeBy(f64),
    ToggleMute,
    /// Esc: out of fullscreen, or back to the catalogue when not fullscreen.
    Escape,
    ToggleFullscreen,
    AudioPicked(Track),
    SubPicked(Track),
    /// A frame finished uploading to the renderer.
    Uploaded(Result<iced_runtime::image::Allocation, iced_runtime::image::Error>),
    /// Fresh numbers from the engine.
    Viewer(ViewerStatus),
    /// Leave the player.
    Back,
}

/// How far ←/→ seek.
pub const SEEK_STEP_SECS: f64 = 5.0;
/// How much ↑/↓ change the volume.
pub const VOLUME_STEP: f64 = 5.0;

/// The player's keyboard shortcut for `key`, if it is one. Keys held with Ctrl, Alt or the
/// logo key are left to the system.
pub fn shortcut(key: &Key, modifiers: Modifiers) -> Option<Message> {
    if modifiers.control() || modifiers.alt() || modifiers.logo() {
        return None;
    }
    match key {
        Key::Named(Named::Space) => Some(Message::TogglePause),
        Key::Named(Named::ArrowLeft) => Some(Message::SeekBy(-SEEK_STEP_SECS)),
        Key::Named(Named::ArrowRight) => Some(Message::SeekBy(SEEK_STEP_SECS)),
        Key::Named(Named::ArrowUp) => Some(Message::VolumeBy(VOLUME_STEP)),
        Key::Named(Named::ArrowDown) => Some(Message::VolumeBy(-VOLUME_STEP)),
        Key::Named(Named::Escape) => Some(Message::Escape),
        Key::Character(c) if c.eq_ignore_ascii_case("f") => Some(Message::ToggleFullscreen),
        Key::Character(c) if c.eq_ignore_ascii_case("m") => Some(Message::ToggleMute),
        _ => None,
    }
}

/// [`shortcut`] for a key press no widget took (what `iced::keyboard::listen` yields).
pub fn key_message(event: keyboard::Event) -> Option<Message> {
    match event {
        keyboard::Event::KeyPressed { key, modifiers, .. } => shortcut(&key, modifiers),
        _ => None,
    }
}

/// What the player asks of the app.
#[derive(Clone, Debug)]
pub enum Event {
    Back,
    Fullscreen(bool),
}

/// Whether iced draws in software (`ICED_BACKEND=tiny-skia`).
fn software_renderer() -> bool {
    static SOFTWARE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SOFTWARE.get_or_init(|| {
        std::env::var("ICED_BACKEND").is_ok_and(|b| b.trim().starts_with("tiny-skia"))
    })
}

impl State {
    pub fn new(video_id: &str, title: &str, duration_ms: u64) -> State {
        State {
            video_id: video_id.to_owned(),
            title: title.to_owned(),
            phase: Phase::Connecting,
            video: None,
            frame: None,
            allocation: None,
            uploading: false,
            frames_shown: 0,
            time: 0.0,
            duration: duration_ms as f64 / 1000.0,
            seeking: None,
            paused: false,
            volume: 100.0,
            muted: false,
            resume_at: None,
            fullscreen: false,
            audio_tracks: Vec::new(),
            sub_tracks: Vec::new(),
            audio: None,
            sub: None,
            viewer: ViewerStatus::default(),
            playhead: watch::Sender::new(0),
        }
    }

    /// The byte position the engine follows for "buffered ahead".
    pub fn playhead(&self) -> watch::Receiver<u64> {
        self.playhead.subscribe()
    }

    /// The audio tracks mpv found.
    pub fn audio_tracks(&self) -> &[Track] {
        &self.audio_tracks
    }

    /// The subtitle choices: "no subtitles" first, then the tracks mpv found.
    pub fn sub_tracks(&self) -> &[Track] {
        &self.sub_tracks
    }

    /// The track mpv plays for `property` (`aid` or `sid`), as mpv says it: an id or `no`.
    pub fn playing_track(&self, property: &str) -> Option<String> {
        self.video.as_ref()?.selected_track(property)
    }

    /// Starts playback at `secs` (where the movie was left) instead of the beginning.
    pub fn resuming_at(mut self, secs: Option<f64>) -> State {
        self.resume_at = secs;
        self
    }

    /// What mpv itself says of property `name` ("pause", "mute", "volume", "time-pos").
    pub fn mpv_property(&self, name: &str) -> Option<String> {
        self.video.as_ref()?.property(name)
    }

    /// Frames mpv has decoded and rendered.
    pub fn frames_rendered(&self) -> u64 {
        self.video.as_ref().map_or(0, Video::frames_rendered)
    }

    pub fn update(&mut self, message: Message) -> (Task<Message>, Option<Event>) {
        match message {
            Message::StreamReady { url, title } => {
                self.title = title;
                let (w, h) = RENDER_SIZE;
                match Video::open(&url, w, h, self.resume_at) {
                    Ok(video) => {
                        video.set_volume(self.volume);
                        if let Some(secs) = self.resume_at {
                            self.time = secs;
                        }
                        self.video = Some(video);
                        self.phase = Phase::Playing;
                    }
                    Err(e) => self.phase = Phase::Failed(e),
                }
            }
            Message::Failed(e) => self.phase = Phase::Failed(e),
            Message::Tick => return (self.tick(), None),
            Message::TogglePause => {
                self.paused = !self.paused;
                if let Some(v) = &self.video {
                    v.set_pause(self.paused);
                }
            }
            Message::SeekMoved(t) => self.seeking = Some(t),
            Message::SeekReleased => {
                if let (Some(t), Some(v)) = (self.seeking.take(), &self.video) {
                    v.seek(t);
                    self.time = t;
                }
            }
            Message::Volume(v) => {
                self.volume = v;
                if let Some(video) = &self.video {
                    video.set_volume(v);
                }
            }
            Message::SeekBy(step) => {
                let end = if self.duration > 0.0 {
                    self.duration
                } else {
                    f64::MAX
                };
                let to = (self.time + step).clamp(0.0, end);
                if let Some(v) = &self.video {
                    v.seek(to);
                }
                self.time = to;
            }
            Message::VolumeBy(step) => {
                return self.update(Message::Volume((self.volume + step).clamp(0.0, 100.0)));
            }
            Message::ToggleMute => {
                self.muted = !self.muted;
                if let Some(v) = &self.video {
                    v.set_mute(self.muted);
                }
            }
            Message::Escape if self.fullscreen => return self.update(Message::ToggleFullscreen),
            Message::Escape => return (Task::none(), Some(Event::Back)),
            Message::ToggleFullscreen => {
                self.fullscreen = !self.fullscreen;
                return (Task::none(), Some(Event::Fullscreen(self.fullscreen)));
            }
            Message::AudioPicked(t) => {
                if let Some(v) = &self.video {
                    v.set_track("aid", Some(t.id));
                }
                self.audio = Some(t);
            }
            Message::SubPicked(t) => {
                if let Some(v) = &self.video {
                    v.set_track("sid", (t.id >= 0).then_some(t.id));
                }
                self.sub = Some(t);
            }
            Message::Uploaded(result) => {
                self.uploading = false;
                if let Ok(allocation) = result {
                    self.frames_shown += 1;
                    self.frame = Some(allocation.handle().clone());
                    self.allocation = Some(allocation);
                }
            }
            Message::Viewer(status) => self.viewer = status,
            Message::Back => return (Task::none(), Some(Event::Back)),
        }
        (Task::none(), None)
    }

    fn tick(&mut self) -> Task<Message> {
        let Some(video) = &self.video else {
            return Task::none();
        };
        if let Some(t) = video.time_pos() {
            self.time = t;
        }
        if let Some(d) = video.duration() {
            self.duration = d;
        }
        if let Some(pos) = video.stream_pos() {
            self.playhead
                .send_if_modified(|at| std::mem::replace(at, pos) != pos);
        }
        if self.audio_tracks.is_empty() {
            self.audio_tracks = video.tracks("audio");
            self.audio = self.audio_tracks.first().cloned();
            let mut subs = vec![Track {
                id: -1,
                label: "no subtitles".into(),
            }];
            subs.extend(video.tracks("sub"));
            self.sub = subs.first().cloned();
            self.sub_tracks = subs;
        }
        if self.uploading {
            return Task::none();
        }
        let Some(frame) = video.take_frame() else {
            return Task::none();
        };
        let handle = image::Handle::from_rgba(frame.width, frame.height, frame.rgba);
        if software_renderer() {
            // tiny-skia draws from memory at once: no upload to wait for.
            self.frames_shown += 1;
            self.frame = Some(handle);
            return Task::none();
        }
        self.uploading = true;
        // wgpu uploads big images in the background: upload first and swap the frame in
        // when ready, so the view never shows a blank.
        iced_runtime::image::allocate(handle).map(Message::Uploaded)
    }

    pub fn view(&self) -> Element<'_, Message> {
        let picture: Element<'_, Message> = match (&self.phase, &self.frame) {
            (_, Some(h)) => image(h.clone())
                .width(Length::Fill)
                .height(Length::Fill)
                .filter_method(image::FilterMethod::Nearest)
                .into(),
            (Phase::Failed(e), None) => container(text(e.clone()).style(text::danger))
                .center(Length::Fill)
                .into(),
            (_, None) => container(text("Joining the network…"))
                .center(Length::Fill)
                .into(),
        };
        let at = self.seeking.unwrap_or(self.time);
        let controls = row![
            button("Back")
                .on_press(Message::Back)
                .style(button::secondary),
            button(if self.paused { "Play" } else { "Pause" }).on_press(Message::TogglePause),
            text(format!(
                "{} / {}",
                clock((at * 1000.0) as u64),
                clock((self.duration * 1000.0) as u64)
            )),
            slider(0.0..=self.duration.max(0.1), at, Message::SeekMoved)
                .on_release(Message::SeekReleased)
                .step(0.5)
                .width(Length::Fill),
            text("Volume"),
            slider(0.0..=100.0, self.volume, Message::Volume).width(100),
            pick_list(
                self.audio_tracks.as_slice(),
                self.audio.clone(),
                Message::AudioPicked
            )
            .placeholder("audio"),
            pick_list(
                self.sub_tracks.as_slice(),
                self.sub.clone(),
                Message::SubPicked
            )
            .placeholder("subtitles"),
            button(if self.fullscreen {
                "Window"
            } else {
                "Fullscreen"
            })
            .on_press(Message::ToggleFullscreen)
            .style(button::secondary),
        ]
        .spacing(10)
        .align_y(iced::Alignment::Center);
        let v = &self.viewer;
        let total = (v.from_caches_bytes + v.from_origin_bytes).max(1);
        let panel = text(format!(
            "{} · from caches {} ({:.0}%) · from origin {} · {} peers · {} buffered ahead · {}/{} segments",
            self.title,
            bytes(v.from_caches_bytes),
            v.from_caches_bytes as f64 * 100.0 / total as f64,
            bytes(v.from_origin_bytes),
            v.peers,
            bytes(v.buffered_ahead_bytes),
            v.complete_segments,
            v.segments,
        ))
        .size(13);
        column![picture, controls, panel]
            .spacing(8)
            .padding(8)
            .into()
    }
}
