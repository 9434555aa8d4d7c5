#!/usr/bin/env bash
# Peak RSS of every tool that reads a recording (issue 15, "Memory grows with the recording"):
# a ~2 GB recording in two ~1 GB segments (synthetic source, unpaced) and a crashed copy whose
# newest segment lost its tail (no summary, no footer, a torn last chunk), read by two builds
# side by side, each tool under `/usr/bin/time -v` ("Maximum resident set size").
#
# usage: benches/rss.sh BEFORE_BIN AFTER_BIN [DIR=target/rss] [FRAMES=3300]
#   e.g. benches/rss.sh target/before/framerec-95ff1e2 target/release/framerec
# Many small frames instead (memory per frame, not per byte): WIDTH=8 HEIGHT=8
# SEGMENT_BYTES=100000000 benches/rss.sh BEFORE AFTER target/rss 2000000
# Prints a markdown table (MiB, wall seconds) on stdout; deletes DIR (gigabytes) at the end
# unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
before="$(realpath "$1")"
after="$(realpath "$2")"
dir="${3:-target/rss}"
frames="${4:-3300}"
width="${WIDTH:-640}"
height="${HEIGHT:-480}"
segment_bytes="${SEGMENT_BYTES:-1073741824}"
size=(--width "$width" --height "$height")
rm -rf "$dir"
mkdir -p "$dir"
dir="$(realpath "$dir")"
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$dir"; }
trap cleanup EXIT

rec="$dir/rec"
"$after" record --out "$rec" --frames "$frames" --fps 0 --segment-bytes "$segment_bytes" "${size[@]}" \
  --stats-socket off >/dev/null 2>"$dir/record.log"
segs=("$rec"/*.mcap)
newest="${segs[-1]}"
# The crash: the newest segment's last 5,000,000 bytes are gone.
mkdir -p "$dir/torn"
cp "$newest" "$dir/torn/segment"
truncate -s "-5000000" "$dir/torn/segment"

# A crashed recording to read or repair: the intact segments hard-linked, the torn one copied
# (repairs rewrite it, so every run gets a fresh copy).
crashed() {
  rm -rf "$dir/crashed"
  mkdir "$dir/crashed"
  for s in "${segs[@]}"; do
    if [ "$s" = "$newest" ]; then
      cp "$dir/torn/segment" "$dir/crashed/$(basename "$s")"
    else
      ln "$s" "$dir/crashed/$(basename "$s")"
    fi
  done
}

# The intact recording again, for `record` to continue (its start reads the resume point).
intact() {
  rm -rf "$dir/intact"
  mkdir "$dir/intact"
  for s in "${segs[@]}"; do ln "$s" "$dir/intact/$(basename "$s")"; done
}

# measure BIN LABEL ARGS...: "peak_kib wall_s exit" of one run.
measure() {
  local bin="$1"
  shift
  rm -rf "$dir/out"
  local status=0
  /usr/bin/time -v -o "$dir/time.txt" "$bin" "$@" >/dev/null 2>"$dir/stderr.txt" || status=$?
  local kib wall
  kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/time.txt")
  echo "$kib $wall $status"
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

rows=(
  "verify DIR|verify $rec"
  "info DIR|info $rec"
  "export pgm --from-seq 5 --to-seq 5|export $rec --format pgm --out $dir/out --from-seq 5 --to-seq 5"
  "export png --from-seq 3000 --to-seq 3001|export $rec --format png --out $dir/out --from-seq 3000 --to-seq 3001"
  "export pgm --start 0s --end 1ms (time selection)|export $rec --format pgm --out $dir/out --start 0s --end 1ms"
  "export fakenect --from-seq 5 --to-seq 6|export $rec --format fakenect --out $dir/out --from-seq 5 --to-seq 6"
  "stats DIR (offline)|stats $rec"
  "verify crashed DIR|verify CRASHED"
  "info crashed DIR|info CRASHED"
  "export pgm crashed --from-seq 5 --to-seq 5|export CRASHED --format pgm --out $dir/out --from-seq 5 --to-seq 5"
  "recover crashed DIR|recover CRASHED"
  "record --frames 1 into crashed DIR (repair + resume_point)|record --out CRASHED --frames 1 --fps 0 --queue-bytes 8000000 --stats-socket off ${size[*]}"
  "record --frames 1 into intact DIR (resume_point)|record --out INTACT --frames 1 --fps 0 --queue-bytes 8000000 --stats-socket off ${size[*]}"
)

total=$(du -cb "${segs[@]}" | tail -1 | cut -f1)
echo "recording: ${#segs[@]} segments, $total bytes ($frames frames of ${width}x${height} depth); crashed copy: newest segment ($(stat -c %s "$newest") bytes) cut by 5,000,000 bytes"
echo
echo "| tool | before peak RSS (MiB) | after peak RSS (MiB) | before wall | after wall | exit before/after |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
for row in "${rows[@]}"; do
  label="${row%%|*}"
  cmd="${row#*|}"
  results=()
  for bin in "$before" "$after"; do
    crashed
    intact
    args="${cmd//CRASHED/$dir/crashed}"
    args="${args//INTACT/$dir/intact}"
    # shellcheck disable=SC2086
    results+=("$(measure "$bin" $args)")
  done
  read -r bk bw bs <<<"${results[0]}"
  read -r ak aw as <<<"${results[1]}"
  echo "| $label | $(mib "$bk") | $(mib "$ak") | $bw | $aw | $bs/$as |"
done
