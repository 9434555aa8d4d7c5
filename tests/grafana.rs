//! The Grafana dashboard in contrib/grafana/ asks only for metrics, and labels, that a running
//! recorder really exports.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

/// A `/metrics` scrape of a recorder of two streams.
fn scrape() -> String {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(["record", "--fps", "30", "--width", "64", "--height", "48"])
        .args(["--streams", "depth,color", "--duration", "20s"])
        .args(["--metrics-addr", "127.0.0.1:0", "--stats-socket", "off"])
        .args(["--out", tmp.path().join("rec").to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = common::LogLines::follow(child.stderr.take().unwrap());
    let addr = log.metrics_addr();
    // Some frames of each stream first, so per-stream series exist.
    std::thread::sleep(Duration::from_millis(1500));
    let body = addr.as_ref().and_then(|addr| {
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(4))).ok()?;
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        Some(out)
    });
    let _ = child.kill();
    let _ = child.wait();
    body.unwrap_or_else(|| panic!("no scrape: {}", log.text()))
}

/// Every `expr` and `legendFormat` of the dashboard's panels.
fn queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap().to_string();
            out.push((expr, t["legendFormat"].as_str().unwrap_or("").to_string()));
        }
    }
    out
}

/// The `framerec_...` names in `expr`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("framerec_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        names.push(name);
    }
    names
}

#[test]
fn every_dashboard_query_names_an_exported_metric_and_label() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/grafana/framerec.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let scrape = scrape();
    // Families by their `# TYPE` lines; a histogram's series add _bucket, _sum and _count.
    let mut series: Vec<String> = Vec::new();
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        series.push(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                series.push(format!("{name}{suffix}"));
            }
        }
    }
    assert!(series.len() > 30, "{scrape}");
    let queries = queries(&dashboard);
    assert!(queries.len() > 20, "{} queries", queries.len());
    let mut checked = 0;
    for (expr, legend) in &queries {
        assert_eq!(
            expr.matches('(').count(),
            expr.matches(')').count(),
            "{expr}"
        );
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{expr} names no framerec metric");
        for name in names {
            assert!(series.contains(&name), "{name} (in {expr}) is not exported");
            checked += 1;
        }
        // Labels grouped by or shown in the legend exist on the exported series.
        let grouped = expr
            .split("by (")
            .skip(1)
            .filter_map(|s| s.split(')').next())
            .flat_map(|s| s.split(',').map(|l| l.trim().to_string()))
            .collect::<Vec<_>>();
        let legend_labels = legend
            .split("{{")
            .skip(1)
            .filter_map(|s| s.split("}}").next())
            .map(|l| l.trim().to_string());
        for label in grouped.into_iter().chain(legend_labels) {
            if label == "le" {
                assert!(scrape.contains("le=\""), "{expr}");
                continue;
            }
            assert!(
                scrape.contains(&format!("{label}=\"")),
                "label {label} (in {expr}) is on no exported series"
            );
        }
    }
    assert!(scrape.contains("stream=\"color\""), "{scrape}");
    assert!(checked >= queries.len());
}
