//! The libfreenect functions framerec calls, resolved from the library loaded at run time, with
//! the C types of Debian's `libfreenect.h` (0.5). The functions of a stream not asked for are
//! not looked up, so a library without them (an old fakenect, a stand-in) still records the
//! others.

use std::ffi::{c_int, c_void};
use std::path::PathBuf;

use libloading::Library;

use super::super::{KinectStream, SourceError};
use super::{DEFAULT_LIBRARY, FreenectConfig};

/// `freenect_frame_mode` (libfreenect.h), returned and passed by value.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FrameMode {
    pub reserved: u32,
    pub resolution: c_int,
    pub format: i32,
    pub bytes: i32,
    pub width: i16,
    pub height: i16,
    pub data_bits_per_pixel: i8,
    pub padding_bits_per_pixel: i8,
    pub framerate: i8,
    pub is_valid: i8,
}

/// `freenect_raw_tilt_state` as the C compiler lays it out; framerec copies its fields into
/// the documented 12-byte form ([`crate::segment::accel::RawTilt`]) rather than its bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(super) struct RawTiltState {
    pub accelerometer_x: i16,
    pub accelerometer_y: i16,
    pub accelerometer_z: i16,
    pub tilt_angle: i8,
    /// `freenect_tilt_status_code`, a C enum.
    pub tilt_status: c_int,
}

#[repr(C)]
pub(super) struct Timeval {
    pub tv_sec: libc::time_t,
    pub tv_usec: libc::suseconds_t,
}

pub(super) const FREENECT_RESOLUTION_MEDIUM: c_int = 1;
pub(super) const FREENECT_DEPTH_11BIT: c_int = 0;
pub(super) const FREENECT_VIDEO_RGB: c_int = 0;
pub(super) const FREENECT_DEVICE_MOTOR: c_int = 0x01;
pub(super) const FREENECT_DEVICE_CAMERA: c_int = 0x02;

pub(super) type Ctx = *mut c_void;
pub(super) type Dev = *mut c_void;
/// The depth and the video callback have the same signature.
pub(super) type FrameCb = unsafe extern "C" fn(dev: Dev, data: *mut c_void, timestamp: u32);

/// One image stream's functions: depth's or video's.
pub(super) struct ImageApi {
    pub find_mode: unsafe extern "C" fn(res: c_int, fmt: c_int) -> FrameMode,
    pub set_mode: unsafe extern "C" fn(dev: Dev, mode: FrameMode) -> c_int,
    pub set_callback: unsafe extern "C" fn(dev: Dev, cb: FrameCb),
    pub start: unsafe extern "C" fn(dev: Dev) -> c_int,
    pub stop: unsafe extern "C" fn(dev: Dev) -> c_int,
}

/// The tilt motor's state: its accelerometer.
pub(super) struct TiltApi {
    pub update: unsafe extern "C" fn(dev: Dev) -> c_int,
    pub get: unsafe extern "C" fn(dev: Dev) -> *mut RawTiltState,
}

/// The libfreenect functions framerec uses.
pub(super) struct Api {
    pub init: unsafe extern "C" fn(ctx: *mut Ctx, usb_ctx: *mut c_void) -> c_int,
    pub shutdown: unsafe extern "C" fn(ctx: Ctx) -> c_int,
    pub select_subdevices: unsafe extern "C" fn(ctx: Ctx, subdevs: c_int),
    pub num_devices: unsafe extern "C" fn(ctx: Ctx) -> c_int,
    pub open_device: unsafe extern "C" fn(ctx: Ctx, dev: *mut Dev, index: c_int) -> c_int,
    pub close_device: unsafe extern "C" fn(dev: Dev) -> c_int,
    pub process_events_timeout: unsafe extern "C" fn(ctx: Ctx, timeout: *mut Timeval) -> c_int,
    /// Present when the depth stream is asked for.
    pub depth: Option<ImageApi>,
    /// Present when the colour stream is asked for.
    pub video: Option<ImageApi>,
    /// Present when the accelerometer stream is asked for.
    pub tilt: Option<TiltApi>,
    /// Keeps the symbols above valid.
    _lib: Library,
}

impl Api {
    pub fn load(cfg: &FreenectConfig) -> Result<Api, SourceError> {
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
        let wants = |k| cfg.streams.contains(&k);
        macro_rules! sym {
            ($name:literal, $why:expr) => {{
                // SAFETY: the field's type is the C signature of this symbol in libfreenect.h.
                let s = unsafe { lib.get(concat!($name, "\0").as_bytes()) }.map_err(|e| {
                    SourceError::Device(format!(
                        "{} is not a usable libfreenect: it lacks {}, needed {}: {e}",
                        name.display(),
                        $name,
                        $why
                    ))
                })?;
                *s
            }};
        }
        let core = "by every stream";
        let depth = "for the depth stream";
        let video = "for the color stream (RGB video)";
        let tilt = "for the accel stream (the tilt state)";
        Ok(Api {
            init: sym!("freenect_init", core),
            shutdown: sym!("freenect_shutdown", core),
            select_subdevices: sym!("freenect_select_subdevices", core),
            num_devices: sym!("freenect_num_devices", core),
            open_device: sym!("freenect_open_device", core),
            close_device: sym!("freenect_close_device", core),
            process_events_timeout: sym!("freenect_process_events_timeout", core),
            depth: match wants(KinectStream::Depth) {
                false => None,
                true => Some(ImageApi {
                    find_mode: sym!("freenect_find_depth_mode", depth),
                    set_mode: sym!("freenect_set_depth_mode", depth),
                    set_callback: sym!("freenect_set_depth_callback", depth),
                    start: sym!("freenect_start_depth", depth),
                    stop: sym!("freenect_stop_depth", depth),
                }),
            },
            video: match wants(KinectStream::Color) {
                false => None,
                true => Some(ImageApi {
                    find_mode: sym!("freenect_find_video_mode", video),
                    set_mode: sym!("freenect_set_video_mode", video),
                    set_callback: sym!("freenect_set_video_callback", video),
                    start: sym!("freenect_start_video", video),
                    stop: sym!("freenect_stop_video", video),
                }),
            },
            tilt: match wants(KinectStream::Accel) {
                false => None,
                true => Some(TiltApi {
                    update: sym!("freenect_update_tilt_state", tilt),
                    get: sym!("freenect_get_tilt_state", tilt),
                }),
            },
            _lib: lib,
        })
    }
}
