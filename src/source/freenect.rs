//! The `freenect` source: a Kinect v1 through libfreenect, loaded at run time with
//! `libloading` (no build-time dependency). Only functions that Debian's fakenect replay library
//! also exports are used, so `fakenect DUMP framerec record --source freenect` replays a dump
//! through the real libfreenect API.
//!
//! libfreenect runs on a dedicated event thread: it initialises the library, opens the device,
//! selects the 11-bit depth mode and, once the recorder starts the source, loops on
//! `freenect_process_events_timeout` until told to stop. The depth callback hands every frame
//! the device delivers to the recorder's intake ([`FrameSink`]), which numbers it, copies it
//! once into a queued buffer (libfreenect reuses its own) or counts it dropped under the
//! overflow policy. A live device never waits there: `overflow = "block"` is for a fakenect
//! replay only, which slows down instead. The device's 32-bit 60 MHz timestamp is unwrapped to
//! 64 bits. No panic crosses the FFI boundary.
//!
//! This module holds the crate's FFI and so its `unsafe`: every call is to a symbol resolved
//! from the loaded library with the C signature of Debian's `libfreenect.h` (0.5).
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use libloading::Library;

use crate::frame::{FrameFormat, StreamId, StreamInfo, host_mono_ns};

use super::{Capture, DeviceClock, FrameSink, PushSource, SourceError};

/// The library's soname; the `fakenect` wrapper puts its replay library first on the path
/// under the same name.
pub const DEFAULT_LIBRARY: &str = "libfreenect.so.0.5";

/// Settings of the libfreenect source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreenectConfig {
    /// Which Kinect, from 0.
    pub device_index: u32,
    /// The library to load; `None` = [`DEFAULT_LIBRARY`] from the loader's path.
    pub library: Option<PathBuf>,
    pub topic: String,
    pub frame_id: String,
    /// The streams to record, in stream-table order.
    pub streams: Vec<super::KinectStream>,
    /// Tilt-state polls per second for the accelerometer stream.
    pub accel_rate: u32,
    /// On a device failure mid-recording (unplugged). The recording so far stays valid either way.
    pub on_device_error: OnDeviceError,
}

/// What the freenect source does when the device fails mid-recording (config
/// `source.on-device-error`, `--on-device-error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OnDeviceError {
    /// End the recording with an error (exit 1).
    #[default]
    Stop,
    /// Reopen the device every second and record on.
    Retry,
}

/// `freenect_frame_mode` (libfreenect.h), returned and passed by value.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct FrameMode {
    reserved: u32,
    resolution: c_int,
    format: i32,
    bytes: i32,
    width: i16,
    height: i16,
    data_bits_per_pixel: i8,
    padding_bits_per_pixel: i8,
    framerate: i8,
    is_valid: i8,
}

#[repr(C)]
struct Timeval {
    tv_sec: libc::time_t,
    tv_usec: libc::suseconds_t,
}

const FREENECT_RESOLUTION_MEDIUM: c_int = 1;
const FREENECT_DEPTH_11BIT: c_int = 0;
const FREENECT_DEVICE_CAMERA: c_int = 0x02;

type Ctx = *mut c_void;
type Dev = *mut c_void;
type DepthCb = unsafe extern "C" fn(dev: Dev, depth: *mut c_void, timestamp: u32);

/// The libfreenect functions framerec uses, resolved from the loaded library.
struct Api {
    init: unsafe extern "C" fn(ctx: *mut Ctx, usb_ctx: *mut c_void) -> c_int,
    shutdown: unsafe extern "C" fn(ctx: Ctx) -> c_int,
    select_subdevices: unsafe extern "C" fn(ctx: Ctx, subdevs: c_int),
    num_devices: unsafe extern "C" fn(ctx: Ctx) -> c_int,
    open_device: unsafe extern "C" fn(ctx: Ctx, dev: *mut Dev, index: c_int) -> c_int,
    close_device: unsafe extern "C" fn(dev: Dev) -> c_int,
    find_depth_mode: unsafe extern "C" fn(res: c_int, fmt: c_int) -> FrameMode,
    set_depth_mode: unsafe extern "C" fn(dev: Dev, mode: FrameMode) -> c_int,
    set_depth_callback: unsafe extern "C" fn(dev: Dev, cb: DepthCb),
    start_depth: unsafe extern "C" fn(dev: Dev) -> c_int,
    stop_depth: unsafe extern "C" fn(dev: Dev) -> c_int,
    process_events_timeout: unsafe extern "C" fn(ctx: Ctx, timeout: *mut Timeval) -> c_int,
    /// Keeps the symbols above valid.
    _lib: Library,
}

impl Api {
    fn load(cfg: &FreenectConfig) -> Result<Api, SourceError> {
        let name = cfg
            .library
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LIBRARY));
        // SAFETY: loading libfreenect runs its (trivial) initialisers; nothing else.
        let lib = unsafe { Library::new(&name) }.map_err(|e| {
            let why = std::error::Error::source(&e).map_or(e.to_string(), |s| s.to_string());
            SourceError::Device(format!(
                "cannot load libfreenect ({why}); install Debian's libfreenect0.5 package \
                 (`apt install libfreenect0.5`) or set source.library to the library's path"
            ))
        })?;
        macro_rules! sym {
            ($name:literal) => {{
                // SAFETY: the field's type is the C signature of this symbol in libfreenect.h.
                let s = unsafe { lib.get($name) }.map_err(|e| {
                    SourceError::Device(format!(
                        "{} is not a usable libfreenect: {e}",
                        name.display()
                    ))
                })?;
                *s
            }};
        }
        Ok(Api {
            init: sym!(b"freenect_init\0"),
            shutdown: sym!(b"freenect_shutdown\0"),
            select_subdevices: sym!(b"freenect_select_subdevices\0"),
            num_devices: sym!(b"freenect_num_devices\0"),
            open_device: sym!(b"freenect_open_device\0"),
            close_device: sym!(b"freenect_close_device\0"),
            find_depth_mode: sym!(b"freenect_find_depth_mode\0"),
            set_depth_mode: sym!(b"freenect_set_depth_mode\0"),
            set_depth_callback: sym!(b"freenect_set_depth_callback\0"),
            start_depth: sym!(b"freenect_start_depth\0"),
            stop_depth: sym!(b"freenect_stop_depth\0"),
            process_events_timeout: sym!(b"freenect_process_events_timeout\0"),
            _lib: lib,
        })
    }
}

/// What the event thread tells the receiver thread, besides frames (those go to the sink).
enum Event {
    /// The end of a fakenect dump.
    End,
    Failed(String),
}

/// The device clock as the recording sees it: unwrapped, and continued across a reopen.
#[derive(Default)]
struct Clock {
    device: DeviceClock,
    /// Added to the device clock: a reopened Kinect's clock starts anew, so the recording's
    /// device time continues across the gap on the host's clock.
    offset_ns: i128,
    /// Device time and host monotonic stamp of the last frame, to bridge a reopen.
    last: Option<(u64, u64)>,
    /// The device was reopened: the next frame sets `offset_ns`.
    reopened: bool,
}

impl Clock {
    fn capture(&mut self, timestamp: u32, host_mono_ns: u64) -> Capture {
        let raw = self.device.unwrap_ns(timestamp) as i128;
        if std::mem::take(&mut self.reopened)
            && let Some((last_dev, last_host)) = self.last
        {
            let gap = host_mono_ns.saturating_sub(last_host) as i128;
            self.offset_ns = last_dev as i128 + gap - raw;
        }
        let device_ns = (raw + self.offset_ns).max(0) as u64;
        self.last = Some((device_ns, host_mono_ns));
        Capture {
            device_ns,
            host_mono_ns: Some(host_mono_ns),
        }
    }

    /// The device is being reopened: its clock restarts.
    fn reopen(&mut self) {
        self.device = DeviceClock::default();
        self.reopened = true;
    }
}

/// What the depth callback reaches (through the event thread's [`USER`]).
struct CallbackState {
    sink: Arc<dyn FrameSink>,
    bytes: usize,
    clock: Arc<Mutex<Clock>>,
}

unsafe extern "C" fn on_depth(dev: Dev, depth: *mut c_void, timestamp: u32) {
    let host_mono_ns = host_mono_ns();
    // No panic may unwind into C.
    let _ = std::panic::catch_unwind(|| {
        let _ = dev;
        let Some(user) = USER.with(|u| u.get()) else {
            return;
        };
        // SAFETY: `user` is the CallbackState the event thread (which runs this callback) set
        // before starting depth and clears after stopping it.
        let state = unsafe { &*(user as *const CallbackState) };
        if depth.is_null() {
            return;
        }
        // SAFETY: libfreenect passes a buffer of the depth mode's `bytes`, valid for this call.
        let src = unsafe { std::slice::from_raw_parts(depth as *const u8, state.bytes) };
        let capture = state
            .clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .capture(timestamp, host_mono_ns);
        // The one copy: into a queued buffer (or counted dropped).
        state.sink.deliver(StreamId(0), src, capture);
    });
}

thread_local! {
    /// The callback state of the event thread (the callback runs on it).
    static USER: std::cell::Cell<Option<*const c_void>> = const { std::cell::Cell::new(None) };
}

/// What the event thread is given to run a session.
struct Thread {
    api: Arc<Api>,
    cfg: FreenectConfig,
    /// Reports the depth mode once the device is open (or why it cannot open).
    started: SyncSender<Result<FrameMode, String>>,
    /// Where to deliver, once the recorder starts the source; dropped: close without starting.
    go: Receiver<Arc<dyn FrameSink>>,
    events: SyncSender<Event>,
    stop: Arc<AtomicBool>,
    clock: Arc<Mutex<Clock>>,
}

/// Runs libfreenect on this thread until `stop`: opens the device and reports its mode (or why
/// it cannot) on `started`; once given a sink on `go`, starts depth and delivers frames to it.
fn event_thread(t: Thread) {
    let Thread {
        api,
        cfg,
        started,
        go,
        events,
        stop,
        clock,
    } = t;
    let mut ctx: Ctx = std::ptr::null_mut();
    // SAFETY: plain libfreenect calls with the pointers it gave us, on one thread.
    unsafe {
        if (api.init)(&mut ctx, std::ptr::null_mut()) < 0 || ctx.is_null() {
            let _ = started.send(Err("freenect_init failed (is libusb working?)".into()));
            return;
        }
        (api.select_subdevices)(ctx, FREENECT_DEVICE_CAMERA);
        let n = (api.num_devices)(ctx);
        if n <= 0 || cfg.device_index as i64 >= n as i64 {
            let why = if n <= 0 {
                "no Kinect found; is it plugged in, and may this user open it (Debian's udev \
                 rules give the plugdev group access)?"
                    .to_string()
            } else {
                format!(
                    "device index {} is out of range: {n} Kinect(s) found (indices 0 to {})",
                    cfg.device_index,
                    n - 1
                )
            };
            let _ = started.send(Err(why));
            (api.shutdown)(ctx);
            return;
        }
        let mut dev: Dev = std::ptr::null_mut();
        if (api.open_device)(ctx, &mut dev, cfg.device_index as c_int) < 0 || dev.is_null() {
            let _ = started.send(Err(format!(
                "cannot open Kinect {} (in use by another program, or no permission?)",
                cfg.device_index
            )));
            (api.shutdown)(ctx);
            return;
        }
        let close = || {
            (api.close_device)(dev);
            (api.shutdown)(ctx);
        };
        let mode = (api.find_depth_mode)(FREENECT_RESOLUTION_MEDIUM, FREENECT_DEPTH_11BIT);
        if mode.is_valid == 0 || mode.bytes <= 0 || mode.width <= 0 || mode.height <= 0 {
            let _ = started.send(Err("libfreenect has no 640x480 11-bit depth mode".into()));
            close();
            return;
        }
        if (api.set_depth_mode)(dev, mode) < 0 {
            let _ = started.send(Err("freenect_set_depth_mode failed".into()));
            close();
            return;
        }
        let _ = started.send(Ok(mode));
        let Ok(sink) = go.recv() else {
            // Never started (the recording ended before it began).
            close();
            return;
        };
        let state = Box::new(CallbackState {
            sink,
            bytes: mode.bytes as usize,
            clock,
        });
        let user = &*state as *const CallbackState as *const c_void;
        USER.with(|u| u.set(Some(user)));
        (api.set_depth_callback)(dev, on_depth);
        let replay = std::env::var_os("FAKENECT_PATH").is_some();
        let mut end = Event::End;
        if (api.start_depth)(dev) < 0 {
            end = Event::Failed("freenect_start_depth failed".into());
        } else {
            while !stop.load(Ordering::Relaxed) {
                let mut timeout = Timeval {
                    tv_sec: 0,
                    tv_usec: 100_000,
                };
                let r = (api.process_events_timeout)(ctx, &mut timeout);
                if r < 0 {
                    if !replay {
                        end = Event::Failed(format!(
                            "libfreenect's event loop failed (error {r}): the Kinect was unplugged or stopped responding"
                        ));
                    }
                    break;
                }
            }
            (api.stop_depth)(dev);
        }
        close();
        USER.with(|u| u.set(None));
        drop(state);
        if !stop.load(Ordering::Relaxed) {
            let _ = events.send(end);
        }
    }
}

/// One opened device: its event thread and the channels to it.
struct Session {
    events: Receiver<Event>,
    /// Taken when the session starts delivering.
    go: Option<SyncSender<Arc<dyn FrameSink>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    mode: FrameMode,
}

impl Session {
    /// Opens the device on a new event thread; depth starts with [`Session::go`].
    fn open(
        api: &Arc<Api>,
        cfg: &FreenectConfig,
        clock: &Arc<Mutex<Clock>>,
    ) -> Result<Session, SourceError> {
        let (events_tx, events) = sync_channel(1);
        let (go, go_rx) = sync_channel(1);
        let (started, started_rx) = sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let t = Thread {
            api: api.clone(),
            cfg: cfg.clone(),
            started,
            go: go_rx,
            events: events_tx,
            stop: stop.clone(),
            clock: clock.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("framerec-freenect".into())
            .spawn(move || event_thread(t))
            .map_err(SourceError::Io)?;
        let mode = match started_rx.recv() {
            Ok(Ok(mode)) => mode,
            Ok(Err(why)) => {
                let _ = thread.join();
                return Err(SourceError::Device(why));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(SourceError::Device(
                    "the libfreenect event thread ended before starting".into(),
                ));
            }
        };
        Ok(Session {
            events,
            go: Some(go),
            stop,
            thread: Some(thread),
            mode,
        })
    }

    /// Starts depth: frames go to `sink` from now on.
    fn go(&mut self, sink: Arc<dyn FrameSink>) {
        if let Some(go) = self.go.take() {
            let _ = go.send(sink);
        }
    }

    /// Stops depth and ends the event thread: no frame is delivered after it returns.
    fn shut(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.go.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shut();
    }
}

pub struct FreenectSource {
    cfg: FreenectConfig,
    /// The library, loaded once (a reopen uses it again).
    api: Arc<Api>,
    stream: StreamInfo,
    /// The device, while it is open.
    session: Option<Session>,
    /// Where frames go, once started (a reopened device delivers there too).
    sink: Option<Arc<dyn FrameSink>>,
    clock: Arc<Mutex<Clock>>,
    /// Replaying a dump through Debian's fakenect library, which can wait.
    replay: bool,
}

impl FreenectSource {
    /// Loads libfreenect and opens the device; errors say what to do. Depth starts with
    /// [`PushSource::start`].
    pub fn open(cfg: FreenectConfig) -> Result<FreenectSource, SourceError> {
        let api = Arc::new(Api::load(&cfg)?);
        let clock = Arc::new(Mutex::new(Clock::default()));
        let session = Session::open(&api, &cfg, &clock)?;
        let mode = session.mode;
        tracing::info!(
            device = cfg.device_index,
            width = mode.width,
            height = mode.height,
            "Kinect opened (11-bit depth)"
        );
        Ok(FreenectSource {
            stream: StreamInfo {
                name: "depth".into(),
                topic: cfg.topic.clone(),
                frame_id: cfg.frame_id.clone(),
                width: mode.width as u32,
                height: mode.height as u32,
                format: FrameFormat::Depth16,
            },
            cfg,
            api,
            session: Some(session),
            sink: None,
            clock,
            replay: std::env::var_os("FAKENECT_PATH").is_some(),
        })
    }

    fn shut(&mut self) {
        if let Some(mut s) = self.session.take() {
            s.shut();
        }
    }

    /// After a device failure: stop, or (`on-device-error = "retry"`) reopen it every second
    /// until it is back (`Ok(true)`) or `stop` is set (`Ok(false)`).
    fn recover(&mut self, why: String, stop: &AtomicBool) -> Result<bool, SourceError> {
        self.shut();
        if self.cfg.on_device_error == OnDeviceError::Stop {
            return Err(SourceError::Device(why));
        }
        tracing::warn!(%why, "reopening the Kinect every second (source.on-device-error = \"retry\")");
        loop {
            for _ in 0..20 {
                if stop.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            match Session::open(&self.api, &self.cfg, &self.clock) {
                Ok(mut s)
                    if (s.mode.width as u32, s.mode.height as u32)
                        == (self.stream.width, self.stream.height) =>
                {
                    tracing::info!(
                        device = self.cfg.device_index,
                        "the Kinect is back; recording on (its clock restarts: device time continues from the host clock across the gap)"
                    );
                    self.clock
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .reopen();
                    if let Some(sink) = &self.sink {
                        s.go(sink.clone());
                    }
                    self.session = Some(s);
                    return Ok(true);
                }
                Ok(_) => {
                    return Err(SourceError::Device(
                        "the reopened Kinect delivers a different frame size".into(),
                    ));
                }
                Err(e) => tracing::debug!(error = %e, "the Kinect is not back yet"),
            }
        }
    }
}

impl Drop for FreenectSource {
    fn drop(&mut self) {
        self.shut();
    }
}

impl PushSource for FreenectSource {
    fn streams(&self) -> &[StreamInfo] {
        std::slice::from_ref(&self.stream)
    }

    fn can_wait(&self) -> bool {
        self.replay
    }

    fn start(&mut self, sink: Arc<dyn FrameSink>) -> Result<(), SourceError> {
        self.sink = Some(sink.clone());
        match self.session.as_mut() {
            Some(s) => {
                s.go(sink);
                Ok(())
            }
            None => Err(SourceError::Device("the Kinect is closed".into())),
        }
    }

    fn wait(&mut self, timeout: Duration, stop: &AtomicBool) -> Result<bool, SourceError> {
        let Some(session) = self.session.as_ref() else {
            return Ok(false);
        };
        match session.events.recv_timeout(timeout) {
            Err(RecvTimeoutError::Timeout) => Ok(true),
            Ok(Event::End) => {
                tracing::info!("the fakenect dump ended");
                self.shut();
                Ok(false)
            }
            Ok(Event::Failed(why)) => self.recover(why, stop),
            Err(RecvTimeoutError::Disconnected) => {
                self.recover("the libfreenect event thread ended".into(), stop)
            }
        }
    }

    fn stop(&mut self) {
        self.shut();
    }
}
