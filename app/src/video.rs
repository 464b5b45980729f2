//! The embedded player: libmpv (Debian's 0.35, client API 2.0) decoding into memory through
//! its software render API. A render thread woken by mpv's update callback draws each new
//! frame into an aligned buffer and leaves it in a slot; the player screen turns the latest
//! frame into an iced image. mpv options are the ones that exist on 0.35.

use std::ffi::{c_int, c_void};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use libmpv2::Mpv;
use libmpv2_sys as sys;

/// mpv's demuxer cache ahead of and behind the playhead.
const DEMUXER_AHEAD: &str = "24MiB";
const DEMUXER_BEHIND: &str = "4MiB";

/// One decoded frame, RGBA with opaque alpha.
#[derive(Debug)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

/// An audio or subtitle track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Track {
    pub id: i64,
    pub label: String,
}

impl std::fmt::Display for Track {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
}

/// A playing mpv with its render thread. Dropping it stops the thread, frees the render
/// context and then mpv (the field order matters).
pub struct Video {
    renderer: Renderer,
    mpv: Mpv,
    slot: Arc<Mutex<Option<Frame>>>,
}

impl std::fmt::Debug for Video {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Video")
            .field("frames_rendered", &self.frames_rendered())
            .finish()
    }
}

impl Video {
    /// Starts mpv rendering `width`×`height` frames and loads `url`, playing from `start`
    /// seconds when given (where the movie was left).
    pub fn open(url: &str, width: u32, height: u32, start: Option<f64>) -> Result<Video, String> {
        let mpv = Mpv::with_initializer(|init| {
            if let Some(secs) = start {
                init.set_option("start", format!("{secs:.1}").as_str())?;
            }
            init.set_option("vo", "libmpv")?;
            let ao = rivulet_node_core::env::mpv_audio_output();
            init.set_option("ao", ao.as_str())?;
            init.set_option("hwdec", "no")?;
            init.set_option("keep-open", "yes")?;
            init.set_option("sws-fast", "yes")?;
            init.set_option("zimg-fast", "yes")?;
            init.set_option("cache", "yes")?;
            // The stream is on loopback and the viewer already buffers ahead: mpv's own
            // demuxer cache (150 MiB ahead + 50 MiB behind by default) only costs memory.
            init.set_option("demuxer-max-bytes", DEMUXER_AHEAD)?;
            init.set_option("demuxer-max-back-bytes", DEMUXER_BEHIND)?;
            Ok(())
        })
        .map_err(|e| format!("mpv could not start: {e}"))?;
        let slot = Arc::new(Mutex::new(None));
        let renderer = Renderer::start(&mpv, width, height, slot.clone())
            .map_err(|code| format!("mpv's software renderer could not start (error {code})"))?;
        mpv.command("loadfile", &[url])
            .map_err(|e| format!("mpv could not open the stream: {e}"))?;
        Ok(Video {
            renderer,
            mpv,
            slot,
        })
    }

    /// The newest frame not taken yet.
    pub fn take_frame(&self) -> Option<Frame> {
        self.slot.lock().ok()?.take()
    }

    /// Frames mpv has rendered so far.
    pub fn frames_rendered(&self) -> u64 {
        self.renderer.frames.load(Ordering::Relaxed)
    }

    pub fn set_pause(&self, paused: bool) {
        let _ = self.mpv.set_property("pause", paused);
    }

    /// Seeks to `seconds` from the start (keyframe-exact is not needed for a seek bar).
    pub fn seek(&self, seconds: f64) {
        let _ = self
            .mpv
            .command("seek", &[&format!("{seconds:.3}"), "absolute+keyframes"]);
    }

    /// Volume 0–100.
    pub fn set_volume(&self, volume: f64) {
        let _ = self.mpv.set_property("volume", volume);
    }

    pub fn set_mute(&self, muted: bool) {
        let _ = self.mpv.set_property("mute", muted);
    }

    /// What mpv itself says of a property (for tests and the status panel), e.g. "pause",
    /// "mute", "volume".
    pub fn property(&self, name: &str) -> Option<String> {
        self.mpv.get_property::<String>(name).ok()
    }

    pub fn time_pos(&self) -> Option<f64> {
        self.mpv.get_property::<f64>("time-pos").ok()
    }

    pub fn duration(&self) -> Option<f64> {
        self.mpv.get_property::<f64>("duration").ok()
    }

    /// Byte position mpv's demuxer reads at, for "buffered ahead".
    pub fn stream_pos(&self) -> Option<u64> {
        self.mpv
            .get_property::<i64>("stream-pos")
            .ok()
            .and_then(|p| u64::try_from(p).ok())
    }

    /// The tracks of `kind` (`audio` or `sub`).
    pub fn tracks(&self, kind: &str) -> Vec<Track> {
        let count = self
            .mpv
            .get_property::<i64>("track-list/count")
            .unwrap_or(0);
        (0..count)
            .filter_map(|i| {
                let get = |field: &str| {
                    self.mpv
                        .get_property::<String>(&format!("track-list/{i}/{field}"))
                        .ok()
                };
                if get("type")? != kind {
                    return None;
                }
                let id = self
                    .mpv
                    .get_property::<i64>(&format!("track-list/{i}/id"))
                    .ok()?;
                let mut label = format!("#{id}");
                for part in [get("lang"), get("title"), get("codec")]
                    .into_iter()
                    .flatten()
                {
                    label.push(' ');
                    label.push_str(&part);
                }
                Some(Track { id, label })
            })
            .collect()
    }

    /// The track mpv plays for `property` (`aid`, `sid`): its id, or `no`.
    pub fn selected_track(&self, property: &str) -> Option<String> {
        self.mpv.get_property::<String>(property).ok()
    }

    /// Picks the audio (`aid`) or subtitle (`sid`) track; `None` turns it off.
    pub fn set_track(&self, property: &str, id: Option<i64>) {
        let _ = match id {
            Some(id) => self.mpv.set_property(property, id),
            None => self.mpv.set_property(property, "no"),
        };
    }
}

struct Wake {
    pending: Mutex<bool>,
    signal: Condvar,
}

unsafe extern "C" fn on_update(ctx: *mut c_void) {
    // mpv forbids calling its API from here: only wake the render thread.
    let wake = unsafe { &*(ctx as *const Wake) };
    if let Ok(mut pending) = wake.pending.lock() {
        *pending = true;
        wake.signal.notify_one();
    }
}

/// A raw pointer the render thread owns.
struct Owned(*mut sys::mpv_render_context);
// SAFETY: the render context is used by the render thread alone after creation.
unsafe impl Send for Owned {}

/// 64-byte aligned storage, as mpv's software renderer prefers.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

struct Renderer {
    stop: Arc<AtomicBool>,
    frames: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Renderer {
    fn start(
        mpv: &Mpv,
        width: u32,
        height: u32,
        slot: Arc<Mutex<Option<Frame>>>,
    ) -> Result<Renderer, i32> {
        let mut ctx: *mut sys::mpv_render_context = null_mut();
        let mut params = [
            sys::mpv_render_param {
                type_: sys::mpv_render_param_type_MPV_RENDER_PARAM_API_TYPE,
                data: sys::MPV_RENDER_API_TYPE_SW.as_ptr() as *mut c_void,
            },
            sys::mpv_render_param {
                type_: 0,
                data: null_mut(),
            },
        ];
        // SAFETY: mpv's handle is valid for the call; the params list is 0-terminated.
        let err = unsafe {
            sys::mpv_render_context_create(&mut ctx, mpv.ctx.as_ptr(), params.as_mut_ptr())
        };
        if err < 0 {
            return Err(err);
        }
        let wake = Arc::new(Wake {
            pending: Mutex::new(true),
            signal: Condvar::new(),
        });
        // SAFETY: `wake` outlives the context: the thread frees the context before it drops
        // its clone of `wake`.
        unsafe {
            sys::mpv_render_context_set_update_callback(
                ctx,
                Some(on_update),
                Arc::as_ptr(&wake) as *mut c_void,
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(AtomicU64::new(0));
        let owned = Owned(ctx);
        let (stop_t, frames_t) = (stop.clone(), frames.clone());
        let thread = std::thread::Builder::new()
            .name("mpv-render".into())
            .spawn(move || {
                let owned = owned;
                render_loop(owned.0, &wake, &stop_t, &frames_t, width, height, &slot);
                // SAFETY: the context was created above and is freed once, here.
                unsafe { sys::mpv_render_context_free(owned.0) };
                drop(wake);
            })
            .map_err(|_| -1)?;
        Ok(Renderer {
            stop,
            frames,
            thread: Some(thread),
        })
    }
}

fn render_loop(
    ctx: *mut sys::mpv_render_context,
    wake: &Wake,
    stop: &AtomicBool,
    frames: &AtomicU64,
    width: u32,
    height: u32,
    slot: &Mutex<Option<Frame>>,
) {
    let stride = width as usize * 4;
    let len = stride * height as usize;
    let mut buffer = vec![Line([0; 64]); len.div_ceil(64)];
    while !stop.load(Ordering::Relaxed) {
        {
            let Ok(mut pending) = wake.pending.lock() else {
                return;
            };
            while !*pending && !stop.load(Ordering::Relaxed) {
                pending = match wake
                    .signal
                    .wait_timeout(pending, Duration::from_millis(100))
                {
                    Ok((p, _)) => p,
                    Err(_) => return,
                };
            }
            *pending = false;
        }
        // SAFETY: ctx is valid until this thread frees it.
        let flags = unsafe { sys::mpv_render_context_update(ctx) };
        if flags & u64::from(sys::mpv_render_update_flag_MPV_RENDER_UPDATE_FRAME) == 0 {
            continue;
        }
        let mut size: [c_int; 2] = [width as c_int, height as c_int];
        let mut stride_arg = stride;
        let format = c"rgb0";
        let mut params = [
            sys::mpv_render_param {
                type_: sys::mpv_render_param_type_MPV_RENDER_PARAM_SW_SIZE,
                data: size.as_mut_ptr() as *mut c_void,
            },
            sys::mpv_render_param {
                type_: sys::mpv_render_param_type_MPV_RENDER_PARAM_SW_FORMAT,
                data: format.as_ptr() as *mut c_void,
            },
            sys::mpv_render_param {
                type_: sys::mpv_render_param_type_MPV_RENDER_PARAM_SW_STRIDE,
                data: &mut stride_arg as *mut usize as *mut c_void,
            },
            sys::mpv_render_param {
                type_: sys::mpv_render_param_type_MPV_RENDER_PARAM_SW_POINTER,
                data: buffer.as_mut_ptr() as *mut c_void,
            },
            sys::mpv_render_param {
                type_: 0,
                data: null_mut(),
            },
        ];
        // SAFETY: every pointer in params lives across the call; the buffer holds
        // stride × height bytes.
        if unsafe { sys::mpv_render_context_render(ctx, params.as_mut_ptr()) } < 0 {
            continue;
        }
        // SAFETY: the buffer is `len` initialised bytes or more.
        let bytes = unsafe { std::slice::from_raw_parts(buffer.as_ptr() as *const u8, len) };
        let mut rgba = bytes.to_vec();
        // "rgb0" leaves the fourth byte undefined: make every pixel opaque.
        for pixel in rgba.chunks_exact_mut(4) {
            pixel[3] = 255;
        }
        frames.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = slot.lock() {
            *s = Some(Frame {
                width,
                height,
                rgba,
            });
        }
    }
}

impl Drop for Renderer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
