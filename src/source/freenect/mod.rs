//! The `freenect` source: a Kinect v1 through libfreenect, loaded at run time with
//! `libloading` (no build-time dependency). Only functions that Debian's fakenect replay library
//! also exports are used, so `fakenect DUMP framerec record --source freenect` replays a dump
//! through the real libfreenect API.
//!
//! libfreenect runs on a dedicated event thread: it initialises the library, opens the device,
//! selects the modes of the streams asked for (`source.streams`: 11-bit depth, 640x480 RGB
//! video, the accelerometer) and, once the recorder starts the source, loops on
//! `freenect_process_events_timeout` until told to stop. The depth and video callbacks hand
//! every frame the device delivers to the recorder's intake ([`FrameSink`]), which numbers it,
//! copies it once into a queued buffer (libfreenect reuses its own) or counts it dropped under
//! the overflow policy. Between events the thread polls the tilt state
//! (`freenect_update_tilt_state`, `freenect_get_tilt_state`) `source.accel-rate` times a second
//! and delivers each reading as its 12 raw bytes; a reading's device time is that of the latest
//! image frame (the tilt state carries none), as fakenect-record names its `a-` files. A live device never waits there: `overflow = "block"` is for a fakenect
//! replay only, which slows down instead. The device's 32-bit 60 MHz timestamp is unwrapped to
//! 64 bits, per image stream. No panic crosses the FFI boundary. A library that lacks the
//! functions of a stream asked for is an error at start naming them; those of the streams not
//! asked for are not looked up.
//!
//! This module holds the crate's FFI and so its `unsafe`: every call is to a symbol resolved
//! from the loaded library with the C signature of Debian's `libfreenect.h` (0.5).
#![allow(unsafe_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::frame::{FrameFormat, StreamInfo};

use super::{FrameSink, KinectStream, PushSource, SourceError};

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

mod api;
mod events;

use api::Api;
use events::{Clocks, Event, Modes, Thread, event_thread};

/// One opened device: its event thread and the channels to it.
struct Session {
    events: Receiver<Event>,
    /// Taken when the session starts delivering.
    go: Option<SyncSender<Arc<dyn FrameSink>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    modes: Modes,
}

impl Session {
    /// Opens the device on a new event thread; the streams start with [`Session::go`].
    fn open(
        api: &Arc<Api>,
        cfg: &FreenectConfig,
        clocks: &Arc<Mutex<Clocks>>,
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
            clocks: clocks.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("framerec-freenect".into())
            .spawn(move || event_thread(t))
            .map_err(SourceError::Io)?;
        let modes = match started_rx.recv() {
            Ok(Ok(modes)) => modes,
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
            modes,
        })
    }

    /// Starts the streams: frames go to `sink` from now on.
    fn go(&mut self, sink: Arc<dyn FrameSink>) {
        if let Some(go) = self.go.take() {
            let _ = go.send(sink);
        }
    }

    /// Stops the streams and ends the event thread: no frame is delivered after it returns.
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

/// The streams `cfg` asks for, as the device's modes make them.
fn stream_table(cfg: &FreenectConfig, modes: &Modes) -> Vec<StreamInfo> {
    let dims = |m: Option<api::FrameMode>| m.map_or((0, 0), |m| (m.width as u32, m.height as u32));
    cfg.streams
        .iter()
        .map(|k| match k {
            KinectStream::Depth => {
                let (w, h) = dims(modes.depth);
                StreamInfo::depth(&cfg.topic, &cfg.frame_id, w, h)
            }
            KinectStream::Color => {
                let (w, h) = dims(modes.video);
                StreamInfo::image(
                    "color",
                    "/camera/color",
                    "camera_color",
                    w,
                    h,
                    FrameFormat::Rgb8,
                )
            }
            KinectStream::Accel => StreamInfo::accel("accel", "/camera/accel", "camera_accel"),
        })
        .collect()
}

pub struct FreenectSource {
    cfg: FreenectConfig,
    /// The library, loaded once (a reopen uses it again).
    api: Arc<Api>,
    streams: Vec<StreamInfo>,
    /// The device, while it is open.
    session: Option<Session>,
    /// Where frames go, once started (a reopened device delivers there too).
    sink: Option<Arc<dyn FrameSink>>,
    clocks: Arc<Mutex<Clocks>>,
    /// Replaying a dump through Debian's fakenect library, which can wait.
    replay: bool,
}

impl FreenectSource {
    /// Loads libfreenect and opens the device; errors say what to do. The streams start with
    /// [`PushSource::start`].
    pub fn open(cfg: FreenectConfig) -> Result<FreenectSource, SourceError> {
        let api = Arc::new(Api::load(&cfg)?);
        let clocks = Arc::new(Mutex::new(Clocks::default()));
        let session = Session::open(&api, &cfg, &clocks)?;
        let streams = stream_table(&cfg, &session.modes);
        let names: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
        tracing::info!(
            device = cfg.device_index,
            streams = %names.join(","),
            "Kinect opened"
        );
        Ok(FreenectSource {
            streams,
            cfg,
            api,
            session: Some(session),
            sink: None,
            clocks,
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
            match Session::open(&self.api, &self.cfg, &self.clocks) {
                Ok(mut s) if stream_table(&self.cfg, &s.modes) == self.streams => {
                    tracing::info!(
                        device = self.cfg.device_index,
                        "the Kinect is back; recording on (its clock restarts: device time continues from the host clock across the gap)"
                    );
                    {
                        let mut c = self.clocks.lock().unwrap_or_else(|p| p.into_inner());
                        c.depth.reopen();
                        c.video.reopen();
                    }
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
        &self.streams
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
