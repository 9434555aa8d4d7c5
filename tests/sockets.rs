//! The sockets framerec listens on get their mode (and group) before anyone can connect, whatever
//! the umask: under `umask 000` the statistics socket and the `unix:` source socket are still
//! owner-only, and `source.socket-mode` / `socket-gid` set the source's explicitly.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::text;

/// Starts `framerec record` under `umask 000` with a `unix:` source and a statistics socket,
/// waits for both sockets and returns their modes and the source socket's gid.
fn modes_under_umask_000(config: &str) -> (u32, u32, u32) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("frames.sock");
    let stats = tmp.path().join("stats.sock");
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, config.replace("SOCKET", src.to_str().unwrap())).unwrap();
    let cmd = format!(
        "umask 000; exec {} record --config {} --source unix:{} --stats-socket {} --out {} --duration 20s",
        env!("CARGO_BIN_EXE_framerec"),
        cfg.display(),
        src.display(),
        stats.display(),
        tmp.path().join("rec").display(),
    );
    let child = Command::new("sh")
        .args(["-c", &cmd])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = |p: &Path| p.symlink_metadata().is_ok();
    for _ in 0..200 {
        if ready(&src) && ready(&stats) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = |p: &Path| {
        p.symlink_metadata()
            .map(|m| (m.permissions().mode() & 0o777, m.gid()))
    };
    let (s, st) = (m(&src), m(&stats));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let out = child.wait_with_output().unwrap();
    let (src_mode, gid) = s.unwrap_or_else(|e| panic!("no source socket ({e}): {}", text(&out)));
    let stats_mode = st
        .unwrap_or_else(|e| panic!("no stats socket ({e}): {}", text(&out)))
        .0;
    (src_mode, stats_mode, gid)
}

#[test]
fn sockets_are_owner_only_whatever_the_umask() {
    let (src, stats, _) = modes_under_umask_000("");
    assert_eq!(src, 0o600, "source socket mode {src:o}");
    assert_eq!(stats, 0o600, "statistics socket mode {stats:o}");
}

#[test]
fn the_source_socket_takes_its_mode_and_group_from_the_configuration() {
    let (src, stats, gid) = modes_under_umask_000(
        "[source]\nkind = \"unix\"\npath = \"SOCKET\"\nsocket-mode = 0o660\nsocket-gid = 65534\n",
    );
    assert_eq!(src, 0o660, "source socket mode {src:o}");
    assert_eq!(gid, 65534);
    assert_eq!(stats, 0o600);
}

/// Idle clients of the Prometheus endpoint hold no one up: with 8 connections open and silent,
/// a scrape is answered (within the client's 4 s timeout; answered one at a time, 8 idle
/// clients used to hold the server 2 s each). Only `/metrics` is served.
#[test]
fn idle_scrapers_delay_no_scrape_and_only_metrics_is_served() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let tmp = tempfile::tempdir().unwrap();
    // Port 0: the recorder binds a free port and logs it. (Picking a port here, closing it and
    // passing it on raced: a connect while nothing listened yet could connect the socket to
    // itself, the endpoint counted as up, and the recorder then found its port taken.)
    let mut child = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(["record", "--fps", "30", "--width", "64", "--height", "48"])
        .args(["--duration", "20s", "--metrics-addr", "127.0.0.1:0"])
        .args(["--out", tmp.path().join("rec").to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = common::LogLines::follow(child.stderr.take().unwrap());
    let addr = log.metrics_addr();
    let kill = |child: &mut std::process::Child| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = child.wait();
    };
    let Some(addr) = addr else {
        kill(&mut child);
        panic!("the endpoint never came up: {}", log.text());
    };
    let get = |path: &str| -> Result<String, std::io::Error> {
        let mut s = TcpStream::connect(&addr)?;
        s.set_read_timeout(Some(Duration::from_secs(4)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        Ok(out)
    };
    let idle: Vec<_> = (0..8).map(|_| TcpStream::connect(&addr)).collect();
    let scrape = get("/metrics");
    let other = get("/");
    drop(idle);
    kill(&mut child);
    let (scrape, other) = match (scrape, other) {
        (Ok(s), Ok(o)) => (s, o),
        (s, o) => panic!("GET failed ({s:?}, {o:?}): {}", log.text()),
    };
    assert!(
        scrape.starts_with("HTTP/1.1 200") && scrape.contains("framerec_"),
        "scrape with 8 idle clients: {scrape:?}"
    );
    assert!(other.starts_with("HTTP/1.1 404"), "{other:?}");
}
