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
# Xvfb picks a free display itself and writes its number once it listens (-displayfd):
# no two runs can race for one.
display_file=$(mktemp)
Xvfb -displayfd 3 -screen 0 1320x860x24 -nolisten tcp 3>"$display_file" >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null || true; [ -n "${app:-}" ] && kill $app 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$display_file" ] && break; sleep 0.1; done
display=:$(head -n1 "$display_file")

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
source "$(dirname "$0")/measure.sh"
measure "$app" "$home" "$seconds" "$backend" ""
kill $app; wait $app 2>/dev/null || true
