//! Looking at depth: `export --colormap` and `preview` on a recording of a scene piped in (a
//! floor-to-wall gradient, a ball that moves, a shadow band with no readings). With
//! `FRAMEREC_SCREENSHOTS=DIR` the test also leaves its pictures in DIR (how docs/ got them).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use framerec::source::pipe::{FORMAT_DEPTH16, HEADER_LEN, Header};

const W: u32 = 320;
const H: u32 = 240;
const FRAMES: u64 = 24;
/// The ball's disparity, nearer than anything else; the scene spans 600..=1000.
const BALL: u16 = 450;

/// Depth sample at (x, y) of frame `seq`: 0 in the shadow band, the ball, or the gradient.
fn sample(x: u32, y: u32, seq: u64) -> u16 {
    let (cx, cy) = (40 + (seq as u32 * 10) % (W - 80), H / 2);
    let (dx, dy) = (x as i64 - cx as i64, y as i64 - cy as i64);
    if (200..210).contains(&x) {
        0
    } else if dx * dx + dy * dy < 30 * 30 {
        BALL
    } else {
        600 + (400 * y / H) as u16
    }
}

fn scene(seq: u64) -> Vec<u8> {
    let len = (W * H * 2) as usize;
    let mut out = Header {
        header_len: HEADER_LEN,
        sequence: seq,
        device_ns: seq * 33_333_333,
        width: W,
        height: H,
        format: FORMAT_DEPTH16,
        payload_len: len,
    }
    .encode()
    .to_vec();
    for y in 0..H {
        for x in 0..W {
            out.extend(sample(x, y, seq).to_le_bytes());
        }
    }
    out
}

fn framerec(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Records the scene through `record --source pipe:-` into `dir`.
fn record_scene(dir: &Path) {
    let (w, h) = (W.to_string(), H.to_string());
    let mut child = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args([
            "record", "--source", "pipe:-", "--width", &w, "--height", &h,
        ])
        .args(["--out", dir.to_str().unwrap(), "--stats-socket", "off"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for seq in 0..FRAMES {
        stdin.write_all(&scene(seq)).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An 8-bit RGB PNG's size and pixels.
fn read_rgb_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let info = reader.info();
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Rgb, png::BitDepth::Eight),
        "{}",
        path.display()
    );
    let (w, h) = (info.width, info.height);
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    reader.next_frame(&mut buf).unwrap();
    (w, h, buf)
}

fn keep(path: &Path, name: &str) {
    if let Some(dir) = std::env::var_os("FRAMEREC_SCREENSHOTS") {
        std::fs::copy(path, Path::new(&dir).join(name)).unwrap();
    }
}

#[test]
fn depth_exports_through_a_colour_map_and_previews_as_a_contact_sheet() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    record_scene(&rec);

    let out = tmp.path().join("turbo");
    let args = [
        "export",
        "--format",
        "png",
        "--colormap",
        "turbo",
        "--range",
        "400:1100",
    ];
    let o = framerec(
        &[
            &args[..],
            &["--out", out.to_str().unwrap(), rec.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let png = out.join("0000000005.png");
    let (w, h, rgb) = read_rgb_png(&png);
    assert_eq!((w, h), (W, H));
    let px = |x: u32, y: u32| &rgb[((y * W + x) * 3) as usize..][..3];
    assert_eq!(px(205, 10), [0, 0, 0], "no reading is black");
    let ball = framerec::export::colormap::turbo((f64::from(BALL) - 400.0) / 700.0);
    assert_eq!(px(40 + 50, H / 2), ball, "the ball, where frame 5 has it");
    let floor = framerec::export::colormap::turbo((1000.0 * 239.0 / 240.0 - 400.0) / 700.0);
    let far = px(5, H - 1);
    assert!(
        far.iter().zip(floor).all(|(a, b)| a.abs_diff(b) <= 2),
        "{far:?} {floor:?}"
    );
    assert_ne!(px(5, 0), px(5, H - 1), "the gradient shows");
    keep(&png, "export-colormap-turbo.png");

    // The raw 16-bit export stays the default.
    let raw = tmp.path().join("raw");
    let o = framerec(&[
        "export",
        "--format",
        "png",
        "--out",
        raw.to_str().unwrap(),
        rec.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let info = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(raw.join("0000000005.png")).unwrap(),
    ))
    .read_info()
    .unwrap()
    .info()
    .bit_depth;
    assert_eq!(info, png::BitDepth::Sixteen);

    let sheet = tmp.path().join("sheet.png");
    let o = framerec(&[
        "preview",
        rec.to_str().unwrap(),
        "--out",
        sheet.to_str().unwrap(),
        "--frames",
        "6",
        "--columns",
        "3",
        "--width",
        "160",
        "--range",
        "400:1100",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("6 frame(s) of depth (24 in all)"),
        "{}",
        text(&o)
    );
    let (w, h, rgb) = read_rgb_png(&sheet);
    // Three cells of 160 + 8 wide; two rows of 120 + 22 + 8.
    assert_eq!((w, h), (3 * 168, 2 * 150));
    // The first cell's thumbnail is frame 0 (ball at x = 40 -> 20 in the half-size thumbnail).
    let px = |x: u32, y: u32| &rgb[((y * w + x) * 3) as usize..][..3];
    assert_eq!(px(4 + 20, 4 + 60), ball, "frame 0's ball in the first cell");
    // The label strip holds dark text on white.
    let strip = (4 + 120..4 + 120 + 22).flat_map(|y| (4..160).map(move |x| (x, y)));
    assert!(
        strip.clone().any(|(x, y)| px(x, y)[0] < 100),
        "a label is drawn"
    );
    keep(&sheet, "preview-contact-sheet.png");

    // Mistakes get sentences.
    let o = framerec(&[
        "preview",
        rec.to_str().unwrap(),
        "--out",
        sheet.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--force"), "{}", text(&o));
    let o = framerec(&[
        "export",
        "--format",
        "pgm",
        "--colormap",
        "gray",
        "--out",
        "x",
        rec.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("--colormap colours depth exported as png"),
        "{}",
        text(&o)
    );
    let o = framerec(&[
        "export",
        "--format",
        "png",
        "--colormap",
        "gray",
        "--range",
        "9:3",
        "--out",
        "x",
        rec.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("MIN:MAX"), "{}", text(&o));
}
