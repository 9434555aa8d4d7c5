//! `[[source.stream]]`: the streams of a `pipe`/`unix` source, by the framing's stream id
//! (see [`crate::source::pipe`]). Parsed leniently into [`PipeStream`]s by [`table`];
//! [`problems`] reports what is wrong with them, each at its line, before the config is used.

use serde::Deserialize;

use super::{ConfigError, Int, SourceKind, SourceSection, key_position, line_col};
use crate::frame::{FrameFormat, StreamInfo};
use crate::source::KinectStream;
use crate::source::pipe::PipeStream;

/// One `[[source.stream]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct StreamSection {
    /// The stream id of version-2 frame headers (version-1 frames are id 0). Required, range
    /// 0-65535, unique.
    id: Int<0, 65535>,
    /// The stream's name (`depth`, `color`, ... as the recording names it). Required, unique.
    name: String,
    /// MCAP topic. Default `/camera/<name>`.
    topic: Option<String>,
    /// `frame_id` of each message. Default `camera_<name>`.
    frame_id: Option<String>,
    /// `depth16`, `rgb8` or `accel`. Required.
    format: FrameFormat,
    /// Images: pixels, range 1-8192, required. Not for `accel`.
    width: Option<Int<1, 8192>>,
    /// Images: pixels, range 1-8192, required. Not for `accel`.
    height: Option<Int<1, 8192>>,
}

/// The typed streams of `sections` (checked by [`problems`]).
pub(super) fn table(sections: &[StreamSection]) -> Vec<PipeStream> {
    sections
        .iter()
        .map(|s| {
            let topic = s.topic.clone().unwrap_or(format!("/camera/{}", s.name));
            let frame_id = s.frame_id.clone().unwrap_or(format!("camera_{}", s.name));
            let size = |v: Option<Int<1, 8192>>| v.map_or(1, |v| v.0 as u32);
            PipeStream {
                id: s.id.0 as u16,
                info: match s.format {
                    FrameFormat::Accel => StreamInfo::accel(&s.name, &topic, &frame_id),
                    f => StreamInfo::image(
                        &s.name,
                        &topic,
                        &frame_id,
                        size(s.width),
                        size(s.height),
                        f,
                    ),
                },
            }
        })
        .collect()
}

/// Line and column of `key` in the `index`th `[[source.stream]]` table (of the table itself
/// when the key is absent; of the file start when there is no such table).
fn stream_position(text: &str, index: usize, key: &str) -> (usize, usize) {
    use toml::de::{DeTable, DeValue};
    let Ok(doc) = DeTable::parse(text) else {
        return (1, 1);
    };
    let Some(DeValue::Table(source)) = doc.get_ref().get("source").map(|v| v.get_ref()) else {
        return (1, 1);
    };
    let Some(DeValue::Array(streams)) = source.get("stream").map(|v| v.get_ref()) else {
        return key_position(text, "source", "stream");
    };
    let Some(entry) = streams.get(index) else {
        return (1, 1);
    };
    if let DeValue::Table(t) = entry.get_ref()
        && let Some((k, _)) = t.get_key_value(key)
    {
        return line_col(text, k.span().start);
    }
    line_col(text, entry.span().start)
}

/// A problem at a line and column.
type Problem = ((usize, usize), String);

/// Everything wrong with the `[[source.stream]]` tables, and with `source.streams` for a pipe.
pub(super) fn problems(source: &SourceSection, text: &str, file: &str) -> Vec<ConfigError> {
    let mut found: Vec<Problem> = Vec::new();
    let pipe = matches!(source.kind, SourceKind::Pipe | SourceKind::Unix);
    if pipe && source.streams != KinectStream::default_table() {
        found.push((
            key_position(text, "source", "streams"),
            "source.streams is for synthetic, fakenect and freenect sources; a pipe's streams \
             are [[source.stream]] tables (id, name, format, width, height)"
                .into(),
        ));
    }
    if !pipe && !source.stream.is_empty() {
        found.push((
            stream_position(text, 0, "id"),
            "[[source.stream]] is for pipe and unix sources; synthetic, fakenect and freenect \
             take source.streams"
                .into(),
        ));
    } else {
        found.extend(table_problems(&source.stream, text));
    }
    found
        .into_iter()
        .map(|((line, col), message)| ConfigError {
            file: file.to_string(),
            line,
            col,
            message,
        })
        .collect()
}

/// What is wrong with a pipe's stream tables: too many, an id, name or topic used twice, a
/// size missing from an image or given to accel.
fn table_problems(streams: &[StreamSection], text: &str) -> Vec<Problem> {
    let mut found = Vec::new();
    let max = crate::segment::MAX_STREAMS;
    if streams.len() > max {
        found.push((
            stream_position(text, max, "id"),
            format!("{} [[source.stream]] tables; at most {max}", streams.len()),
        ));
    }
    for (i, s) in streams.iter().enumerate() {
        let before = &streams[..i];
        if before.iter().any(|b| b.id == s.id) {
            found.push((
                stream_position(text, i, "id"),
                format!("stream id {} is used twice", s.id.0),
            ));
        }
        if s.name.is_empty() || before.iter().any(|b| b.name == s.name) {
            found.push((
                stream_position(text, i, "name"),
                format!("stream name {:?} is empty or used twice", s.name),
            ));
        }
        let image = s.format != FrameFormat::Accel;
        if image && (s.width.is_none() || s.height.is_none()) {
            let format = s.format.encoding();
            found.push((
                stream_position(text, i, "format"),
                format!("stream {:?} ({format}) needs width and height", s.name),
            ));
        }
        if !image && (s.width.is_some() || s.height.is_some()) {
            let key = if s.width.is_some() { "width" } else { "height" };
            found.push((
                stream_position(text, i, key),
                format!(
                    "stream {:?} is accel: its frames are 12-byte readings, no width or height",
                    s.name
                ),
            ));
        }
    }
    let table = table(streams);
    for (i, s) in table.iter().enumerate() {
        if table[..i].iter().any(|b| b.info.topic == s.info.topic) {
            found.push((
                stream_position(text, i, "topic"),
                format!("topic {:?} is used by two streams", s.info.topic),
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use crate::config::{SourceConfig, parse};
    use crate::frame::{FrameFormat, StreamInfo};
    use crate::source::pipe::PipeStream;

    const THREE: &str = r#"[source]
kind = "unix"
path = "/run/frames.sock"

[[source.stream]]
id = 0
name = "depth"
format = "depth16"
width = 640
height = 480

[[source.stream]]
id = 1
name = "color"
topic = "/rgb"
frame-id = "rgb_optical"
format = "rgb8"
width = 640
height = 480

[[source.stream]]
id = 2
name = "accel"
format = "accel"
"#;

    #[test]
    fn a_table_of_streams_is_read() {
        let c = parse(THREE, "f.toml").unwrap();
        let SourceConfig::Pipe(p) = &c.source else {
            panic!("{:?}", c.source)
        };
        assert_eq!(
            p.stream_table(),
            [
                PipeStream {
                    id: 0,
                    info: StreamInfo::depth("/camera/depth", "camera_depth", 640, 480)
                },
                PipeStream {
                    id: 1,
                    info: StreamInfo::image(
                        "color",
                        "/rgb",
                        "rgb_optical",
                        640,
                        480,
                        FrameFormat::Rgb8
                    )
                },
                PipeStream {
                    id: 2,
                    info: StreamInfo::accel("accel", "/camera/accel", "camera_accel")
                },
            ]
        );
        assert_eq!(c.source.stream_names(), ["depth", "color", "accel"]);
        assert_eq!(c.source.frame_bytes(), 640 * 480 * 3);
    }

    #[test]
    fn without_a_table_a_pipe_has_one_depth_stream_as_before() {
        let c = parse(
            "[source]\nkind = \"pipe\"\nwidth = 64\nheight = 48\ntopic = \"/d\"\n",
            "f.toml",
        )
        .unwrap();
        let SourceConfig::Pipe(p) = &c.source else {
            panic!("{:?}", c.source)
        };
        assert_eq!(
            p.stream_table(),
            [PipeStream {
                id: 0,
                info: StreamInfo::depth("/d", "camera_depth", 64, 48)
            }]
        );
    }

    /// Each mistake is reported at its own line.
    fn errors(text: &str) -> Vec<(usize, String)> {
        parse(text, "f.toml")
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.line, e.message))
            .collect()
    }

    #[test]
    fn duplicate_ids_names_and_topics_and_missing_sizes_are_located() {
        let text = r#"[source]
kind = "unix"
path = "/run/frames.sock"

[[source.stream]]
id = 0
name = "depth"
format = "depth16"
[[source.stream]]
id = 0
name = "color"
topic = "/rgb"
format = "rgb8"
width = 640
height = 480

[[source.stream]]
id = 2
name = "color"
topic = "/rgb"
width = 3
format = "accel"
"#;
        assert_eq!(
            errors(text),
            [
                (8, "stream \"depth\" (16UC1) needs width and height".to_string()),
                (10, "stream id 0 is used twice".to_string()),
                (19, "stream name \"color\" is empty or used twice".to_string()),
                (
                    21,
                    "stream \"color\" is accel: its frames are 12-byte readings, no width or height"
                        .to_string()
                ),
                (20, "topic \"/rgb\" is used by two streams".to_string()),
            ]
        );
    }

    #[test]
    fn out_of_range_and_unknown_values_are_located() {
        let text = THREE
            .replace("id = 2", "id = 70000")
            .replace("format = \"rgb8\"", "format = \"bgr8\"");
        let e = errors(&text);
        assert_eq!(e.len(), 1, "one error at a time inside the array: {e:?}");
        // The first in the file: the colour stream's format.
        assert_eq!(e[0].0, 17, "{e:?}");
        assert!(e[0].1.contains("unknown variant `bgr8`"), "{e:?}");
        let e = errors(&THREE.replace("id = 2", "id = 70000"));
        assert_eq!(e[0].0, 22, "{e:?}");
        assert!(e[0].1.contains("out of range"), "{e:?}");
    }

    #[test]
    fn more_than_16_streams_are_rejected() {
        let mut text = "[source]\nkind = \"pipe\"\n".to_string();
        for i in 0..17 {
            text += &format!("[[source.stream]]\nid = {i}\nname = \"s{i}\"\nformat = \"accel\"\n");
        }
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, 3 + 16 * 4 + 1, "{e:?}");
        assert!(e[0].1.contains("at most 16"), "{e:?}");
    }

    #[test]
    fn streams_and_stream_tables_belong_to_their_kinds() {
        let e = errors("[source]\nkind = \"pipe\"\nstreams = [\"depth\", \"color\"]\n");
        assert_eq!(e[0].0, 3, "{e:?}");
        assert!(e[0].1.contains("[[source.stream]]"), "{e:?}");
        let e = errors(&THREE.replace("kind = \"unix\"", "kind = \"synthetic\""));
        assert_eq!(e[0].0, 6, "{e:?}");
        assert!(e[0].1.contains("for pipe and unix"), "{e:?}");
        // The default is no change, so naming it is fine.
        parse(
            "[source]\nkind = \"pipe\"\nstreams = [\"depth\"]\n",
            "f.toml",
        )
        .unwrap();
    }
}
