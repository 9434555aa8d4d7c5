use super::*;
use crate::source::KinectStream;
use std::path::Path;

fn cfg(dir: &Path) -> FakenectConfig {
    FakenectConfig {
        dir: dir.to_path_buf(),
        paced: false,
        looped: false,
        topic: "/camera/depth".into(),
        frame_id: "camera_depth".into(),
        streams: KinectStream::default_table(),
    }
}

fn dump(dir: &Path, frames: &[(u32, Vec<u8>)]) {
    let mut index = String::new();
    for (i, (ts, data)) in frames.iter().enumerate() {
        let name = format!("d-{}.{:06}-{ts}.pgm", 1000 + i, i);
        let mut bytes = b"P5 4 2 65535\n".to_vec();
        bytes.extend_from_slice(data);
        std::fs::write(dir.join(&name), bytes).unwrap();
        index.push_str(&name);
        index.push('\n');
        index.push_str(&format!("a-{}.{:06}-{ts}.dump\n", 1000 + i, i + 1));
    }
    std::fs::write(dir.join("INDEX.txt"), index).unwrap();
}

fn frame(i: u8) -> Vec<u8> {
    (0..16).map(|b| b ^ i).collect()
}

fn read_all(src: &mut FakenectSource) -> Result<Vec<(Vec<u8>, u64)>, SourceError> {
    let stop = AtomicBool::new(false);
    let mut out = Vec::new();
    let mut buf = FrameBuf::new(64);
    while let Some(c) = src.next_frame(&mut buf, &stop)? {
        out.push((buf.payload().to_vec(), c.device_ns));
    }
    Ok(out)
}

#[test]
fn replays_every_depth_frame_and_unwraps_the_device_clock() {
    let tmp = tempfile::tempdir().unwrap();
    dump(
        tmp.path(),
        &[(u32::MAX - 59, frame(1)), (0, frame(2)), (60, frame(3))],
    );
    let mut src = FakenectSource::open(cfg(tmp.path())).unwrap();
    assert_eq!((src.streams()[0].width, src.streams()[0].height), (4, 2));
    let got = read_all(&mut src).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].0, frame(2));
    // 60 ticks of the 60 MHz clock apart = 1 µs, across the 32-bit wrap.
    assert_eq!(got[1].1 - got[0].1, 1000);
    assert_eq!(got[2].1 - got[1].1, 1000);
}

#[test]
fn a_looped_replay_continues_after_the_last_frame() {
    let tmp = tempfile::tempdir().unwrap();
    dump(tmp.path(), &[(0, frame(1)), (100, frame(2))]);
    let mut c = cfg(tmp.path());
    c.looped = true;
    let mut src = FakenectSource::open(c).unwrap();
    let stop = AtomicBool::new(false);
    let mut buf = FrameBuf::new(64);
    let mut last = None;
    for i in 0..5u8 {
        let cap = src.next_frame(&mut buf, &stop).unwrap().unwrap();
        assert_eq!(buf.payload(), frame(1 + i % 2).as_slice());
        assert!(
            last.is_none_or(|l| cap.device_ns > l),
            "device time moves on"
        );
        last = Some(cap.device_ns);
    }
}

/// Found by the fuzzer: a time no clock gives (1e300 s) made the paced replay panic
/// converting it to a Duration; such a line is now refused when INDEX.txt is read.
#[test]
fn a_time_beyond_any_clock_is_refused_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["d-1.0-0.pgm", "d-1e300-5.pgm"] {
        let mut bytes = b"P5 4 2 65535\n".to_vec();
        bytes.extend_from_slice(&frame(1));
        std::fs::write(tmp.path().join(name), bytes).unwrap();
    }
    std::fs::write(tmp.path().join("INDEX.txt"), "d-1.0-0.pgm\nd-1e300-5.pgm\n").unwrap();
    let mut c = cfg(tmp.path());
    c.paced = true;
    let e = match FakenectSource::open(c).and_then(|mut s| read_all(&mut s)) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("is not a number of seconds"), "{e}");
}

fn error_of(tmp: &Path) -> String {
    match FakenectSource::open(cfg(tmp)).and_then(|mut s| read_all(&mut s)) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_dumps_are_errors_with_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    dump(tmp.path(), &[(0, frame(1)), (1, frame(2))]);
    let index = std::fs::read_to_string(tmp.path().join("INDEX.txt")).unwrap();
    let second = index.lines().nth(2).unwrap().to_string();

    std::fs::write(tmp.path().join("INDEX.txt"), index.replace('\n', "\r\n")).unwrap();
    assert!(
        error_of(tmp.path()).contains("INDEX.txt:1: CRLF"),
        "{}",
        error_of(tmp.path())
    );

    std::fs::write(tmp.path().join("INDEX.txt"), format!("\n{index}")).unwrap();
    assert!(error_of(tmp.path()).contains("INDEX.txt:1: blank line"));

    std::fs::write(
        tmp.path().join("INDEX.txt"),
        format!("{index}d-1.0-x.pgm\n"),
    )
    .unwrap();
    assert!(
        error_of(tmp.path()).contains("INDEX.txt:5: "),
        "{}",
        error_of(tmp.path())
    );

    std::fs::write(
        tmp.path().join("INDEX.txt"),
        format!("{index}../etc/passwd\n"),
    )
    .unwrap();
    assert!(error_of(tmp.path()).contains("not a file name"));

    std::fs::write(tmp.path().join("INDEX.txt"), &index).unwrap();
    let path = tmp.path().join(&second);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let e = error_of(tmp.path());
    assert!(e.contains("INDEX.txt:3") && e.contains("truncated"), "{e}");

    std::fs::remove_file(&path).unwrap();
    assert!(error_of(tmp.path()).contains("cannot open"));

    std::fs::write(&path, b"P6 4 2 255\n0123456789abcdef").unwrap();
    assert!(error_of(tmp.path()).contains("is not `P5"));

    std::fs::write(tmp.path().join("INDEX.txt"), "a-1.0-5.dump\n").unwrap();
    assert!(error_of(tmp.path()).contains("no depth frames"));
}

#[test]
fn an_index_without_newlines_is_an_error_after_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    dump(tmp.path(), &[(0, frame(1))]);
    let index = tmp.path().join("INDEX.txt");
    std::fs::remove_file(&index).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &index).unwrap();
    let e = error_of(tmp.path());
    assert!(
        e.contains("INDEX.txt:1: a line longer than 255 bytes"),
        "{e}"
    );
    std::fs::remove_file(&index).unwrap();
    // A valid first line, then 64 MiB with no newline.
    let mut text = b"d-1000.000000-0.pgm\n".to_vec();
    text.resize(64 << 20, b'd');
    std::fs::write(&index, &text).unwrap();
    let e = error_of(tmp.path());
    assert!(
        e.contains("INDEX.txt:2: a line longer than 255 bytes"),
        "{e}"
    );
    assert!(e.len() < 300, "{e}");
}

#[test]
fn errors_quote_a_bounded_part_of_a_line() {
    let tmp = tempfile::tempdir().unwrap();
    dump(tmp.path(), &[(0, frame(1))]);
    let long = format!("d-1.0-{}.pgm\n", "9".repeat(240));
    std::fs::write(tmp.path().join("INDEX.txt"), &long).unwrap();
    let e = error_of(tmp.path());
    assert!(e.contains("is not a 32-bit unsigned number"), "{e}");
    assert!(
        e.contains(&format!("{}\"... (240 bytes)", "9".repeat(10))),
        "{e}"
    );
    assert!(!e.contains(&"9".repeat(MAX_QUOTED + 1)), "{e}");
}

/// A dump of 2x1 images: per frame i a depth, a colour and an accelerometer line, the
/// accelerometer's timestamp that of the colour frame before it (as fakenect-record writes).
fn three_stream_dump(dir: &Path, n: u8) -> Vec<(KinectStream, Vec<u8>, u32)> {
    let mut index = String::new();
    let mut want = Vec::new();
    for i in 0..n {
        let ts = 1000 * i as u32;
        let depth: Vec<u8> = (0..4).map(|b| b + 10 * i).collect();
        let rgb: Vec<u8> = (0..6).map(|b| b + 100 + i).collect();
        let accel: Vec<u8> = (0..12).map(|b| b * 3 + i).collect();
        for (kind, head, body, ts) in [
            (KinectStream::Depth, &b"P5 2 1 65535\n"[..], &depth, ts),
            (KinectStream::Color, &b"P6 2 1 255\n"[..], &rgb, ts + 7),
            (KinectStream::Accel, &b""[..], &accel, ts + 7),
        ] {
            let (p, ext) = file_kind(kind);
            let name = format!("{p}-{}.{:06}-{ts}.{ext}", 1000 + i as u32, kind as u8);
            std::fs::write(dir.join(&name), [head, body].concat()).unwrap();
            index.push_str(&name);
            index.push('\n');
            want.push((kind, body.clone(), ts));
        }
    }
    std::fs::write(dir.join("INDEX.txt"), index).unwrap();
    want
}

fn read_streams(src: &mut FakenectSource) -> Vec<(u16, Vec<u8>, u64)> {
    let stop = AtomicBool::new(false);
    let mut out = Vec::new();
    let mut buf = FrameBuf::new(64);
    loop {
        let s = src.next_stream(&stop).unwrap();
        match src.next_frame(&mut buf, &stop).unwrap() {
            Some(c) => out.push((s.0, buf.payload().to_vec(), c.device_ns)),
            None => return out,
        }
    }
}

#[test]
fn the_streams_asked_for_replay_in_index_order_with_their_own_clocks() {
    let tmp = tempfile::tempdir().unwrap();
    let want = three_stream_dump(tmp.path(), 3);
    let mut c = cfg(tmp.path());
    c.streams = vec![
        KinectStream::Accel,
        KinectStream::Depth,
        KinectStream::Color,
    ];
    let mut src = FakenectSource::open(c).unwrap();
    let names: Vec<&str> = src.streams().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["accel", "depth", "color"]);
    assert_eq!(src.streams()[2].frame_bytes(), 6);
    let got = read_streams(&mut src);
    assert_eq!(got.len(), want.len());
    for ((s, bytes, ns), (kind, body, ts)) in got.iter().zip(&want) {
        assert_eq!(src.streams()[*s as usize].name, kind.as_str());
        assert_eq!(bytes, body);
        assert_eq!(*ns, crate::source::kinect_ticks_to_ns(*ts as u64));
    }

    // Lines of streams not asked for are skipped.
    let mut c = cfg(tmp.path());
    c.streams = vec![KinectStream::Color];
    let got = read_streams(&mut FakenectSource::open(c).unwrap());
    let colour: Vec<&Vec<u8>> = want
        .iter()
        .filter(|w| w.0 == KinectStream::Color)
        .map(|w| &w.1)
        .collect();
    assert_eq!(got.iter().map(|g| &g.1).collect::<Vec<_>>(), colour);
}

#[test]
fn a_stream_the_dump_lacks_or_a_bad_accel_file_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    dump(tmp.path(), &[(0, frame(1))]);
    let mut c = cfg(tmp.path());
    c.streams = vec![KinectStream::Depth, KinectStream::Color];
    let e = FakenectSource::open(c)
        .err()
        .expect("no colour lines")
        .to_string();
    assert!(e.contains("no color frames (r-*.ppm)"), "{e}");

    let tmp = tempfile::tempdir().unwrap();
    three_stream_dump(tmp.path(), 2);
    let index = std::fs::read_to_string(tmp.path().join("INDEX.txt")).unwrap();
    let accel = index.lines().nth(5).unwrap();
    std::fs::write(tmp.path().join(accel), [0u8; 13]).unwrap();
    let mut c = cfg(tmp.path());
    c.streams = vec![KinectStream::Accel];
    let e = match FakenectSource::open(c).and_then(|mut s| read_all(&mut s)) {
        Ok(_) => panic!("a 13-byte accelerometer file"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("INDEX.txt:6") && e.contains("13 bytes of accel"),
        "{e}"
    );

    let colour = index.lines().nth(1).unwrap();
    std::fs::write(tmp.path().join(colour), b"P5 2 1 65535\n012345").unwrap();
    let mut c = cfg(tmp.path());
    c.streams = vec![KinectStream::Color];
    let e = FakenectSource::open(c)
        .err()
        .expect("a P5 colour file")
        .to_string();
    assert!(e.contains("INDEX.txt:2") && e.contains("is not `P6"), "{e}");
}

proptest::proptest! {
    #[test]
    fn any_index_line_parses_or_errors(line in "\\PC{0,40}") {
        let _ = parse_line(&line);
    }
}
