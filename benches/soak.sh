#!/usr/bin/env bash
# Soak: a long recording at 30 fps of 614,400-byte frames (the default synthetic source), as a
# user runs it. Samples the recorder's RSS every 10 s, keeps the disk from filling with the
# recorder's own retention (output.max-total-bytes = 3 GiB), and at the end reports drops, latency
# percentiles per 10-s interval (from the recording's HdrHistogram interval log) and RSS over
# time, with plots.
#
# usage: benches/soak.sh [DURATION=45m] [DIR=target/soak]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-45m}"
dir="${2:-target/soak}"
cargo build --release --quiet
bin=target/release/framerec
rm -rf "$dir"
mkdir -p "$dir"
rec="$dir/rec"
printf '[output]\nmax-total-bytes = 3221225472\n' >"$dir/soak.toml"
"$bin" record --config "$dir/soak.toml" --fps 30 --duration "$duration" --out "$rec" --interval-log-s 10 \
  --stats-socket "$dir/stats.sock" --json >"$dir/summary.json" 2>"$dir/stderr.log" &
pid=$!
echo "t_s,rss_kb" >"$dir/rss.csv"
start=$(date +%s)
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  if [ -n "$rss" ]; then echo "$(($(date +%s) - start)),$rss" >>"$dir/rss.csv"; fi
  sleep 10
done
wait "$pid"
"$bin" verify "$rec" | tail -1 || true
"$bin" stats "$rec" --json >"$dir/stats.json"
"$bin" stats "$rec" --plot "$dir/latency.png" >"$dir/stats.txt"
/usr/bin/python3 - "$dir" <<'PY'
import csv, json, sys
d = sys.argv[1]
s = json.load(open(f"{d}/summary.json"))
rows = [(int(r["t_s"]), int(r["rss_kb"])) for r in csv.DictReader(open(f"{d}/rss.csv"))]
warm = [kb for t, kb in rows if t >= 300] or [kb for _, kb in rows]
t = s["totals"]
st = json.load(open(f"{d}/stats.json"))
c2w = [iv["histograms"]["capture-to-written"]["p999"] for iv in st["intervals"]
       if iv["histograms"].get("capture-to-written", {}).get("count", 0)]
print(f"soak: {s['elapsed_s'] if 'elapsed_s' in s else '?'} s, received {t['received_frames']}, "
      f"written {t['written_frames']}, dropped {sum(t['dropped'].values())}")
print(f"capture-to-written p99.9 overall {st['overall']['capture-to-written']['p999']/1e6:.2f} ms, "
      f"worst interval {max(c2w)/1e6:.2f} ms; write p99 overall {st['overall']['write']['p99']/1e6:.2f} ms")
print(f"RSS after 5 min: min {min(warm)/1024:.1f} MB, max {max(warm)/1024:.1f} MB, "
      f"max/min = {max(warm)/min(warm):.3f}")
# RSS over time as a small SVG.
W, H, pad = 800, 300, 50
tmax = max(t for t, _ in rows) or 1
kmax = max(kb for _, kb in rows) * 1.1
pts = " ".join(f"{pad + (W - 2 * pad) * t / tmax:.1f},{H - pad - (H - 2 * pad) * kb / kmax:.1f}"
               for t, kb in rows)
svg = f"""<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}">
<rect width="{W}" height="{H}" fill="white"/>
<polyline points="{pts}" fill="none" stroke="#1f77b4" stroke-width="2"/>
<line x1="{pad}" y1="{H - pad}" x2="{W - pad}" y2="{H - pad}" stroke="black"/>
<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{H - pad}" stroke="black"/>
<text x="{W / 2}" y="{H - 12}" text-anchor="middle" font-family="sans-serif" font-size="13">seconds (0 to {tmax})</text>
<text x="12" y="{pad - 12}" font-family="sans-serif" font-size="13">RSS, 0 to {kmax / 1024:.0f} MB</text>
</svg>"""
open(f"{d}/rss.svg", "w").write(svg)
PY
echo "results in $dir (summary.json, stats.json, stats.txt, rss.csv, rss.svg, latency.png)"
