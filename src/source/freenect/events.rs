//! libfreenect's event thread: opens the device, selects the modes of the streams asked for,
//! and once started loops on `freenect_process_events_timeout`, polling the tilt state between
//! events at the accelerometer rate. Callbacks run on this thread and hand each frame to the
//! recorder's intake; no panic crosses the FFI boundary.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::frame::{StreamId, host_mono_ns};
use crate::segment::accel::RawTilt;

use super::super::{Capture, DeviceClock, FrameSink, KinectStream};
use super::FreenectConfig;
use super::api::*;

/// What the event thread tells the receiver thread, besides frames (those go to the sink).
pub(super) enum Event {
    /// The end of a fakenect dump.
    End,
    Failed(String),
}

/// The modes of the image streams asked for, once the device is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Modes {
    pub depth: Option<FrameMode>,
    pub video: Option<FrameMode>,
}

/// One stream's device clock as the recording sees it: unwrapped, and continued across a
/// reopen.
#[derive(Default)]
pub(super) struct Clock {
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
    pub fn reopen(&mut self) {
        self.device = DeviceClock::default();
        self.reopened = true;
    }
}

/// The device clocks of the depth and the video stream (their timestamps are unwrapped
/// apart: one may lag the other).
#[derive(Default)]
pub(super) struct Clocks {
    pub depth: Clock,
    pub video: Clock,
}

/// What the callbacks reach (through the event thread's [`USER`]).
struct CallbackState {
    sink: Arc<dyn FrameSink>,
    depth: Option<(StreamId, usize)>,
    video: Option<(StreamId, usize)>,
    clocks: Arc<Mutex<Clocks>>,
    /// Device time of the latest image frame: the accelerometer's, which has no clock of its
    /// own (fakenect-record names its `a-` files the same way).
    last_image_ns: AtomicU64,
}

impl CallbackState {
    fn image(&self, video: bool, data: *mut c_void, timestamp: u32) {
        let host_mono_ns = host_mono_ns();
        let Some((stream, bytes)) = (if video { self.video } else { self.depth }) else {
            return;
        };
        if data.is_null() {
            return;
        }
        // SAFETY: libfreenect passes a buffer of the current mode's `bytes`, valid for this call.
        let src = unsafe { std::slice::from_raw_parts(data as *const u8, bytes) };
        let capture = {
            let mut c = self.clocks.lock().unwrap_or_else(|p| p.into_inner());
            let clock = if video { &mut c.video } else { &mut c.depth };
            clock.capture(timestamp, host_mono_ns)
        };
        self.last_image_ns
            .store(capture.device_ns, Ordering::Relaxed);
        // The one copy: into a queued buffer (or counted dropped).
        self.sink.deliver(stream, src, capture);
    }
}

/// The callback state of this thread, if set.
fn user() -> Option<&'static CallbackState> {
    let user = USER.with(|u| u.get())?;
    // SAFETY: `user` is the CallbackState the event thread (which runs the callbacks) set
    // before starting any stream and clears after stopping them all.
    Some(unsafe { &*(user as *const CallbackState) })
}

unsafe extern "C" fn on_depth(_dev: Dev, depth: *mut c_void, timestamp: u32) {
    // No panic may unwind into C.
    let _ = std::panic::catch_unwind(|| {
        if let Some(state) = user() {
            state.image(false, depth, timestamp);
        }
    });
}

unsafe extern "C" fn on_video(_dev: Dev, rgb: *mut c_void, timestamp: u32) {
    let _ = std::panic::catch_unwind(|| {
        if let Some(state) = user() {
            state.image(true, rgb, timestamp);
        }
    });
}

thread_local! {
    /// The callback state of the event thread (the callbacks run on it).
    static USER: std::cell::Cell<Option<*const c_void>> = const { std::cell::Cell::new(None) };
}

/// What the event thread is given to run a session.
pub(super) struct Thread {
    pub api: Arc<Api>,
    pub cfg: FreenectConfig,
    /// Reports the modes once the device is open (or why it cannot open).
    pub started: SyncSender<Result<Modes, String>>,
    /// Where to deliver, once the recorder starts the source; dropped: close without starting.
    pub go: Receiver<Arc<dyn FrameSink>>,
    pub events: SyncSender<Event>,
    pub stop: Arc<AtomicBool>,
    pub clocks: Arc<Mutex<Clocks>>,
}

/// Finds and sets an image stream's mode: `bpp` bytes per pixel expected.
///
/// # Safety
/// `dev` is an open device of the library `img` comes from.
unsafe fn set_mode(
    img: &ImageApi,
    dev: Dev,
    fmt: c_int,
    bpp: i32,
    what: &str,
) -> Result<FrameMode, String> {
    // SAFETY: per this function's contract.
    let mode = unsafe { (img.find_mode)(FREENECT_RESOLUTION_MEDIUM, fmt) };
    let (w, h) = (mode.width as i32, mode.height as i32);
    if mode.is_valid == 0 || w <= 0 || h <= 0 || mode.bytes != w * h * bpp {
        return Err(format!("libfreenect has no 640x480 {what} mode"));
    }
    // SAFETY: per this function's contract.
    if unsafe { (img.set_mode)(dev, mode) } < 0 {
        return Err(format!("setting the {what} mode failed"));
    }
    Ok(mode)
}

/// Opens device `cfg.device_index` and sets the modes of the streams asked for.
///
/// # Safety
/// `ctx` is an initialised context of `api`'s library, used on this thread only.
unsafe fn open(api: &Api, ctx: Ctx, cfg: &FreenectConfig) -> Result<(Dev, Modes), String> {
    // SAFETY: plain libfreenect calls with the pointers it gave us, on one thread.
    unsafe {
        let motor = if api.tilt.is_some() {
            FREENECT_DEVICE_MOTOR
        } else {
            0
        };
        (api.select_subdevices)(ctx, FREENECT_DEVICE_CAMERA | motor);
        let n = (api.num_devices)(ctx);
        if n <= 0 {
            return Err(
                "no Kinect found; is it plugged in, and may this user open it (Debian's \
                        udev rules give the plugdev group access)?"
                    .into(),
            );
        }
        if cfg.device_index as i64 >= n as i64 {
            return Err(format!(
                "device index {} is out of range: {n} Kinect(s) found (indices 0 to {})",
                cfg.device_index,
                n - 1
            ));
        }
        let mut dev: Dev = std::ptr::null_mut();
        if (api.open_device)(ctx, &mut dev, cfg.device_index as c_int) < 0 || dev.is_null() {
            return Err(format!(
                "cannot open Kinect {} (in use by another program, or no permission?)",
                cfg.device_index
            ));
        }
        let mut modes = Modes::default();
        let set = (|| {
            if let Some(d) = &api.depth {
                modes.depth = Some(set_mode(d, dev, FREENECT_DEPTH_11BIT, 2, "11-bit depth")?);
            }
            if let Some(v) = &api.video {
                modes.video = Some(set_mode(v, dev, FREENECT_VIDEO_RGB, 3, "RGB video")?);
            }
            Ok(())
        })();
        match set {
            Ok(()) => Ok((dev, modes)),
            Err(e) => {
                (api.close_device)(dev);
                Err(e)
            }
        }
    }
}

/// Runs libfreenect on this thread until `stop`: opens the device and reports its modes (or
/// why it cannot) on `started`; once given a sink on `go`, starts the streams and delivers
/// their frames to it.
pub(super) fn event_thread(t: Thread) {
    let mut ctx: Ctx = std::ptr::null_mut();
    let api = &*t.api;
    // SAFETY: plain libfreenect calls with the pointers it gave us, on one thread.
    unsafe {
        if (api.init)(&mut ctx, std::ptr::null_mut()) < 0 || ctx.is_null() {
            let _ = t
                .started
                .send(Err("freenect_init failed (is libusb working?)".into()));
            return;
        }
        let (dev, modes) = match open(api, ctx, &t.cfg) {
            Ok(d) => d,
            Err(why) => {
                let _ = t.started.send(Err(why));
                (api.shutdown)(ctx);
                return;
            }
        };
        let _ = t.started.send(Ok(modes));
        let end = match t.go.recv() {
            Ok(sink) => Some(run(&t, dev, ctx, modes, sink)),
            // Never started (the recording ended before it began).
            Err(_) => None,
        };
        (api.close_device)(dev);
        (api.shutdown)(ctx);
        if let Some(end) = end
            && !t.stop.load(Ordering::Relaxed)
        {
            let _ = t.events.send(end);
        }
    }
}

/// Starts the streams, loops on the device's events until `stop` or its end, stops them.
///
/// # Safety
/// `dev` and `ctx` are open, of `t.api`'s library, used on this thread only.
unsafe fn run(t: &Thread, dev: Dev, ctx: Ctx, modes: Modes, sink: Arc<dyn FrameSink>) -> Event {
    let api = &*t.api;
    let id = |k| {
        t.cfg
            .streams
            .iter()
            .position(|s| *s == k)
            .map(|i| StreamId(i as u16))
    };
    let state = Box::new(CallbackState {
        sink,
        depth: id(KinectStream::Depth).zip(modes.depth.map(|m| m.bytes as usize)),
        video: id(KinectStream::Color).zip(modes.video.map(|m| m.bytes as usize)),
        clocks: t.clocks.clone(),
        last_image_ns: AtomicU64::new(0),
    });
    USER.with(|u| u.set(Some(&*state as *const CallbackState as *const c_void)));
    let replay = std::env::var_os("FAKENECT_PATH").is_some();
    let images = [
        (&api.depth, on_depth as FrameCb, "depth"),
        (&api.video, on_video, "video"),
    ];
    let mut started = Vec::new();
    let mut end = Event::End;
    for (img, cb, name) in images {
        let Some(img) = img else { continue };
        // SAFETY: per this function's contract.
        unsafe { (img.set_callback)(dev, cb) };
        // SAFETY: per this function's contract.
        if unsafe { (img.start)(dev) } < 0 {
            end = Event::Failed(format!("freenect_start_{name} failed"));
            break;
        }
        started.push(img);
    }
    let accel = id(KinectStream::Accel).zip(api.tilt.as_ref());
    let period = Duration::from_secs(1) / t.cfg.accel_rate.max(1);
    let mut next_poll = Instant::now();
    while matches!(end, Event::End) && !t.stop.load(Ordering::Relaxed) {
        let wait = match accel {
            Some(_) => next_poll.saturating_duration_since(Instant::now()),
            None => Duration::from_millis(100),
        };
        let mut timeout = Timeval {
            tv_sec: 0,
            tv_usec: wait.min(Duration::from_millis(100)).as_micros() as libc::suseconds_t,
        };
        // SAFETY: per this function's contract.
        let r = unsafe { (api.process_events_timeout)(ctx, &mut timeout) };
        if r < 0 {
            if !replay {
                end = Event::Failed(format!(
                    "libfreenect's event loop failed (error {r}): the Kinect was unplugged or stopped responding"
                ));
            }
            break;
        }
        if let Some((stream, tilt)) = accel {
            let now = Instant::now();
            if now >= next_poll {
                // SAFETY: per this function's contract.
                unsafe { poll_tilt(tilt, dev, stream, &state) };
                next_poll += period;
                if next_poll < now {
                    next_poll = now + period;
                }
            }
        }
    }
    for img in started {
        // SAFETY: per this function's contract.
        unsafe { (img.stop)(dev) };
    }
    USER.with(|u| u.set(None));
    drop(state);
    end
}

/// Reads the tilt state and delivers it as one accelerometer reading.
///
/// # Safety
/// `dev` is an open device of `tilt`'s library, used on this thread only.
unsafe fn poll_tilt(tilt: &TiltApi, dev: Dev, stream: StreamId, state: &CallbackState) {
    let host_mono_ns = host_mono_ns();
    // SAFETY: per this function's contract; the state pointer is libfreenect's, valid until the
    // next call on this device (made on this thread only).
    let raw = unsafe {
        if (tilt.update)(dev) < 0 {
            tracing::debug!("freenect_update_tilt_state failed; no reading this time");
            return;
        }
        let p = (tilt.get)(dev);
        if p.is_null() {
            return;
        }
        *p
    };
    let capture = Capture {
        device_ns: state.last_image_ns.load(Ordering::Relaxed),
        host_mono_ns: Some(host_mono_ns),
    };
    state.sink.deliver(stream, &raw_reading(&raw), capture);
}

/// The 12 documented bytes of a tilt state, field by field (the C struct's padding and enum
/// size are the compiler's, not the format's).
fn raw_reading(raw: &RawTiltState) -> [u8; crate::segment::accel::RAW_BYTES] {
    RawTilt {
        accel: [
            raw.accelerometer_x,
            raw.accelerometer_y,
            raw.accelerometer_z,
        ],
        tilt_angle: raw.tilt_angle,
        tilt_status: raw.tilt_status as u32,
    }
    .to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tilt_state_becomes_the_documented_twelve_bytes() {
        let raw = RawTiltState {
            accelerometer_x: -2,
            accelerometer_y: 819,
            accelerometer_z: 0x1234,
            tilt_angle: -31,
            tilt_status: 4,
        };
        assert_eq!(
            raw_reading(&raw),
            [0xfe, 0xff, 0x33, 0x03, 0x34, 0x12, 0xe1, 0, 4, 0, 0, 0]
        );
    }
}
