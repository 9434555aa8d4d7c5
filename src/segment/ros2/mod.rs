//! The `ros2` profile: the rosbag2 MCAP layout, so `ros2 bag play`, the Python `rosbags`
//! package and Foxglove read a recording as a ROS 2 bag.
//!
//! Differences from the default (`foxglove`) profile, record by record:
//!
//! ```text
//! Header   { profile: "ros2", library: "framerec <version>" }
//! Schema   { 1: "sensor_msgs/msg/Image", 2: "framerec_msgs/msg/Drop",
//!            [3: "sensor_msgs/msg/Imu"] }       // encoding "ros2msg", data: the .msg text
//!                                               // and its dependencies, rosbag2's layout
//! Channel  { message_encoding "cdr", metadata: offered_qos_profiles (YAML) + framerec's keys }
//! Message  { data: CDR, little endian: 00 01 00 00, then the fields, aligned from after it }
//! Metadata { "rosbag2": serialized_metadata = this segment as a one-file bag } // in the tail
//! ```
//!
//! An image message is `sensor_msgs/msg/Image` whose `data` sequence is the frame's payload,
//! written in place: the CDR bytes before it go into the buffer's headroom. An accelerometer
//! reading is a `sensor_msgs/msg/Imu` with the acceleration in m/s^2 (no orientation, no
//! angular velocity: element 0 of their covariances is -1, the ROS convention for "no
//! estimate"; the acceleration's covariance is all zeros, "unknown"). The raw 12-byte reading,
//! its tilt angle and status have no field in `Imu` and are not kept: export from a ros2
//! recording writes the acceleration the `Imu` holds.
//!
//! O_DIRECT is refused with this profile: CDR has no unknown fields, so there is no place a
//! reader skips to put the slack an aligned write needs (see [`DIRECT_IO_REFUSED`]).

pub mod bag;
pub mod cdr;

/// What a recording's segments are laid out for (config `output.profile`, `--profile`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Deserialize,
    serde::Serialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Protobuf messages (`foxglove.RawImage`) and JSON drop notices: what Foxglove draws
    /// natively; O_DIRECT capable. The default.
    #[default]
    Foxglove,
    /// The rosbag2 layout (ros2msg schemas, CDR messages): replayable with `ros2 bag play`.
    Ros2,
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Profile::Foxglove => "foxglove",
            Profile::Ros2 => "ros2",
        })
    }
}

impl Profile {
    /// The MCAP header's profile string.
    pub fn header(self) -> &'static str {
        match self {
            Profile::Foxglove => "",
            Profile::Ros2 => "ros2",
        }
    }

    /// The profile a segment was written in, from the names of its schemas (what `recover`
    /// rebuilds a head in).
    pub fn of_schemas<'a>(mut names: impl Iterator<Item = &'a str>) -> Profile {
        if names.any(|n| matches!(n, IMAGE_TYPE | IMU_TYPE | DROP_TYPE)) {
            Profile::Ros2
        } else {
            Profile::Foxglove
        }
    }

    /// The Metadata records a segment of this profile carries in its tail: the ros2 profile's
    /// `rosbag2` record (see [`bag::segment_metadata`]); none for foxglove.
    pub fn tail_metadata(
        self,
        segment_id: u64,
        streams: &[crate::frame::StreamInfo],
        chunks: &[super::ChunkIndexEntry],
    ) -> Vec<super::TailMetadata> {
        match self {
            Profile::Foxglove => Vec::new(),
            Profile::Ros2 => vec![bag::segment_metadata(segment_id, streams, chunks)],
        }
    }
}

/// Why `--profile ros2` and O_DIRECT do not go together.
pub const DIRECT_IO_REFUSED: &str = "the ros2 profile cannot be written with O_DIRECT: an \
    aligned write needs slack inside its records, and CDR messages have no field a reader \
    skips (the foxglove profile hides it in an unknown protobuf field); use buffered I/O";

pub const IMAGE_TYPE: &str = "sensor_msgs/msg/Image";
pub const IMU_TYPE: &str = "sensor_msgs/msg/Imu";
pub const DROP_TYPE: &str = "framerec_msgs/msg/Drop";
pub const SCHEMA_ENCODING: &str = "ros2msg";
pub const MESSAGE_ENCODING: &str = "cdr";
/// Name of the metadata record rosbag2 writes in every file it closes.
pub const BAG_METADATA_NAME: &str = "rosbag2";
/// rosbag2's metadata version these files follow (ROS 2 Jazzy).
pub const BAG_VERSION: u32 = 9;

const SEP: &str =
    "================================================================================\n";

const HEADER_DEPS: &str = "MSG: std_msgs/Header\n\
    builtin_interfaces/Time stamp\n\
    string frame_id\n";
const TIME_DEP: &str = "MSG: builtin_interfaces/Time\n\
    int32 sec\n\
    uint32 nanosec\n";

/// The ros2msg schema text of `sensor_msgs/msg/Image` with its dependencies.
pub fn image_msgdef() -> String {
    format!(
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n\
         uint8 is_bigendian\nuint32 step\nuint8[] data\n{SEP}{HEADER_DEPS}{SEP}{TIME_DEP}"
    )
}

/// The ros2msg schema text of `sensor_msgs/msg/Imu` with its dependencies.
pub fn imu_msgdef() -> String {
    format!(
        "std_msgs/Header header\ngeometry_msgs/Quaternion orientation\n\
         float64[9] orientation_covariance\ngeometry_msgs/Vector3 angular_velocity\n\
         float64[9] angular_velocity_covariance\ngeometry_msgs/Vector3 linear_acceleration\n\
         float64[9] linear_acceleration_covariance\n{SEP}{HEADER_DEPS}{SEP}{TIME_DEP}\
         {SEP}MSG: geometry_msgs/Quaternion\nfloat64 x\nfloat64 y\nfloat64 z\nfloat64 w\n\
         {SEP}MSG: geometry_msgs/Vector3\nfloat64 x\nfloat64 y\nfloat64 z\n"
    )
}

/// The ros2msg schema text of the drop notices (`framerec_msgs/msg/Drop`).
pub fn drop_msgdef() -> &'static str {
    "# Frames the recorder accepted and did not write.\n\
     string stream\nstring reason\nuint64 first_seq\nuint64 last_seq\nuint64 count\n"
}

/// The channel metadata `offered_qos_profiles`: one publisher, reliable, volatile, keep last
/// 10, default (infinite) durations, as rosbag2 (version 9) writes it.
pub fn offered_qos_profiles() -> String {
    let infinite = "\n    sec: 9223372036\n    nsec: 854775807";
    format!(
        "- history: keep_last\n  depth: 10\n  reliability: reliable\n  durability: volatile\n  \
         deadline:{infinite}\n  lifespan:{infinite}\n  liveliness: automatic\n  \
         liveliness_lease_duration:{infinite}\n  avoid_ros_namespace_conventions: false"
    )
}

#[cfg(test)]
mod tests;
