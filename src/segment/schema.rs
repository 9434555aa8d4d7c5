//! The protobuf schema of `foxglove.RawImage`, as the serialized `FileDescriptorSet` that MCAP
//! readers (Foxglove, `mcap-protobuf-support`) use to decode depth messages.

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet};

fn field(name: &str, number: i32, ty: Type, type_name: Option<&str>) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.to_string()),
        number: Some(number),
        label: Some(Label::Optional as i32),
        r#type: Some(ty as i32),
        type_name: type_name.map(str::to_string),
        json_name: Some(name.to_string()),
        ..Default::default()
    }
}

fn timestamp_file() -> FileDescriptorProto {
    FileDescriptorProto {
        name: Some("google/protobuf/timestamp.proto".into()),
        package: Some("google.protobuf".into()),
        message_type: vec![DescriptorProto {
            name: Some("Timestamp".into()),
            field: vec![
                field("seconds", 1, Type::Int64, None),
                field("nanos", 2, Type::Int32, None),
            ],
            ..Default::default()
        }],
        syntax: Some("proto3".into()),
        ..Default::default()
    }
}

/// `google/protobuf/timestamp.proto` and `foxglove/RawImage.proto`, encoded.
pub fn raw_image_descriptor_set() -> Vec<u8> {
    let timestamp = timestamp_file();
    let raw_image = FileDescriptorProto {
        name: Some("foxglove/RawImage.proto".into()),
        package: Some("foxglove".into()),
        dependency: vec!["google/protobuf/timestamp.proto".into()],
        message_type: vec![DescriptorProto {
            name: Some("RawImage".into()),
            field: vec![
                field(
                    "timestamp",
                    1,
                    Type::Message,
                    Some(".google.protobuf.Timestamp"),
                ),
                field("frame_id", 7, Type::String, None),
                field("width", 2, Type::Fixed32, None),
                field("height", 3, Type::Fixed32, None),
                field("encoding", 4, Type::String, None),
                field("step", 5, Type::Fixed32, None),
                field("data", 6, Type::Bytes, None),
            ],
            ..Default::default()
        }],
        syntax: Some("proto3".into()),
        ..Default::default()
    };
    FileDescriptorSet {
        file: vec![timestamp, raw_image],
    }
    .encode_to_vec()
}

/// `google/protobuf/timestamp.proto` and `framerec/Accelerometer.proto` (see
/// [`super::accel`]), encoded.
pub fn accelerometer_descriptor_set() -> Vec<u8> {
    let accel = FileDescriptorProto {
        name: Some("framerec/Accelerometer.proto".into()),
        package: Some("framerec".into()),
        dependency: vec!["google/protobuf/timestamp.proto".into()],
        message_type: vec![DescriptorProto {
            name: Some("Accelerometer".into()),
            field: vec![
                field(
                    "timestamp",
                    1,
                    Type::Message,
                    Some(".google.protobuf.Timestamp"),
                ),
                field("frame_id", 2, Type::String, None),
                field("x", 3, Type::Double, None),
                field("y", 4, Type::Double, None),
                field("z", 5, Type::Double, None),
                field("tilt_degrees", 6, Type::Double, None),
                field("tilt_status", 7, Type::Uint32, None),
                field("raw", 8, Type::Bytes, None),
            ],
            ..Default::default()
        }],
        syntax: Some("proto3".into()),
        ..Default::default()
    };
    FileDescriptorSet {
        file: vec![timestamp_file(), accel],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_round_trips_and_names_raw_image() {
        let bytes = raw_image_descriptor_set();
        let set = FileDescriptorSet::decode(bytes.as_slice()).unwrap();
        let raw = &set.file[1].message_type[0];
        assert_eq!(raw.name(), "RawImage");
        let numbers: Vec<i32> = raw.field.iter().map(|f| f.number()).collect();
        assert_eq!(numbers, vec![1, 7, 2, 3, 4, 5, 6]);
    }
}
