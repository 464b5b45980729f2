#!/usr/bin/env bash
# Measures the desktop app in demo mode under Xvfb: launch → first frame, play → first frame,
# and CPU and RSS while playing the 720p demo movie, for one renderer.
#   app/bench/demo.sh BINARY [tiny-skia|wgpu] [SECONDS]
# The first run in a fresh RIVULET_HOME makes the demo movie; this script runs once to warm
# it, then measures a second launch. Prints one line of JSON.
set -euo pipefail
bin=${1:?usage: demo.sh BINARY [tiny-skia|wgpu] [SECONDS]}
backend=${2:-tiny-skia}
seconds=${3:-20}
home=${RIVULET_BENCH_HOME:-$(mktemp -d)}
display=:$((150 + RANDOM % 80))
Xvfb "$display" -screen 0 1320x860x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null || true; [ -n "${app:-}" ] && kill $app 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -e "/tmp/.X11-unix/X${display#:}" ] && break; sleep 0.1; done

run() { # $1: status file; waits for a shown frame and 1 s more of playback
  DISPLAY=$display RIVULET_HOME=$home RIVULET_STATUS_FILE=$1 RIVULET_MPV_AO=null \
    ICED_BACKEND=$backend "$bin" --demo >"$home/app.log" 2>&1 &
  app=$!
  for _ in $(seq 3000); do
    if [ -f "$1" ] && grep -q '"frames_shown":[1-9]' "$1"; then return 0; fi
    sleep 0.1
  done
  echo "no frame; log:" >&2; tail -20 "$home/app.log" >&2; exit 1
}

run "$home/warm.json"; kill $app; wait $app 2>/dev/null || true
run "$home/status.json"
sleep 2
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$app/stat"; }
threads() { for t in /proc/$app/task/*; do echo "$(cat $t/comm | tr ' ' '_') $(awk '{print $14 + $15}' $t/stat)"; done; }
threads >"$home/threads0"
c0=$(cpu); t0=$(date +%s.%N); rss_max=0
for _ in $(seq $((seconds * 2))); do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$app/status")
  [ "$rss" -gt "$rss_max" ] && rss_max=$rss
  sleep 0.5
done
c1=$(cpu); t1=$(date +%s.%N)
threads >"$home/threads1"
status=$(cat "$home/status.json")
kill $app; wait $app 2>/dev/null || true
python3 - "$status" "$c0" "$c1" "$t0" "$t1" "$ticks" "$rss_max" "$backend" "$home" <<'PY'
import json, sys, collections, re
s = json.loads(sys.argv[1]); c0, c1, t0, t1, ticks = map(float, sys.argv[2:7])
def load(name):
    out = collections.Counter()
    for line in open(f"{sys.argv[9]}/{name}"):
        comm, t = line.rsplit(" ", 1)
        out[re.sub(r"[-_:]?[0-9]+$", "", comm)] += float(t)
    return out
a, b = load("threads0"), load("threads1")
by_thread = {k: round((b[k] - a.get(k, 0)) / ticks / (t1 - t0) * 100, 1) for k in b}
by_thread = {k: v for k, v in sorted(by_thread.items(), key=lambda kv: -kv[1]) if v >= 1}
print(json.dumps({
    "renderer": sys.argv[8],
    "launch_to_first_frame_ms": s["first_frame_ms"],
    "play_to_first_frame_ms": s["play_to_frame_ms"],
    "cpu_percent_of_one_core": round((c1 - c0) / ticks / (t1 - t0) * 100, 1),
    "rss_max_mb": round(int(sys.argv[7]) / 1024, 1),
    "frames_shown": s["frames_shown"], "time_pos": s["time_pos"],
    "from_caches_bytes": s["from_caches_bytes"], "from_origin_bytes": s["from_origin_bytes"],
    "cpu_by_thread": by_thread,
}))
PY
