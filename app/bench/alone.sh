#!/usr/bin/env bash
# Measures the desktop app ALONE while it plays a 720p movie: the tracker (with its origin)
# and three caches run as their own processes (rivulet-tracker serve, rivulet-node cache),
# the app logs in to that tracker (RIVULET_PASSWORD, no keyring needed) and opens
# rivulet://watch/bench under Xvfb. Samples the app's process only: RSS (VmRSS, max over the
# run) and CPU (utime + stime), split by thread. Prints one line of JSON.
#   app/bench/alone.sh DIR_WITH_BINARIES [tiny-skia|wgpu] [SECONDS]
# DIR_WITH_BINARIES holds rivulet, rivulet-tracker and rivulet-node (e.g. target/release).
set -euo pipefail
bins=${1:?usage: alone.sh DIR_WITH_BINARIES [tiny-skia|wgpu] [SECONDS]}
backend=${2:-tiny-skia}
seconds=${3:-20}
work=${RIVULET_BENCH_HOME:-$(mktemp -d)}
pw=rivulet-loopback-7
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The movie: the demo's (90 s of testsrc2 at 1280×720, H.264 3 Mbit/s, AAC tone).
if [ ! -d "$work/tracker" ]; then
  ffmpeg -v error -y -f lavfi -i testsrc2=size=1280x720:rate=25 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -t 90 -c:v libx264 -preset veryfast \
    -b:v 3M -g 50 -c:a aac -shortest "$work/movie.mp4"
  "$bins/rivulet-tracker" ingest "$work/movie.mp4" --title "Bench 720p" --price 10 --id bench \
    --data "$work/tracker" >/dev/null
  for u in bench cache1 cache2 cache3; do RIVULET_PASSWORD=$pw "$bins/rivulet-tracker" account $u --data "$work/tracker" >/dev/null; done
  RIVULET_PASSWORD=$pw "$bins/rivulet-tracker" account admin --admin --data "$work/tracker" >/dev/null
fi
http=$(port); ftp=$(port); url=http://127.0.0.1:$http
"$bins/rivulet-tracker" serve --data "$work/tracker" --http 127.0.0.1:$http --ftp 127.0.0.1:$ftp \
  --node-timeout 6 >"$work/tracker.log" 2>&1 &
pids+=($!)
api() { # METHOD PATH [TOKEN] -> JSON on stdout
  python3 - "$url" "$@" "$pw" <<'PY'
import json, sys, urllib.request
url, method, path = sys.argv[1:4]
token = sys.argv[4] if len(sys.argv) > 5 else None
req = urllib.request.Request(url + "/api/v1" + path, method=method)
if token: req.add_header("Authorization", "Bearer " + token)
if method == "POST" and path == "/sessions":
    user = token; req = urllib.request.Request(url + "/api/v1/sessions", method="POST",
        data=json.dumps({"username": user, "password": sys.argv[-1]}).encode(),
        headers={"Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(req, timeout=10).read().decode())
except urllib.error.HTTPError as e:
    print(e.read().decode())
PY
}
for _ in $(seq 100); do curl -sf "$url/api/v1/videos" >/dev/null 2>&1 && break; sleep 0.1; done
token() { api POST /sessions "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'; }
api POST /videos/bench/purchase "$(token bench)" >/dev/null
admin=$(token admin)
for i in 1 2 3; do
  RIVULET_PASSWORD=$pw "$bins/rivulet-node" cache --tracker "$url" --user cache$i --size 500MB \
    --dir "$work/cache$i" --key "$work/cache$i.key" >"$work/cache$i.log" 2>&1 &
  pids+=($!)
done
# Wait until the three caches hold chunks of the movie (as in the demo, before playing).
for _ in $(seq 120); do
  n=$(api GET /admin/videos "$admin" | python3 -c 'import json,sys; print(next((v["caches_holding"] for v in json.load(sys.stdin) if v["video"]["id"]=="bench"),0))')
  [ "$n" -ge 3 ] && break
  sleep 0.5
done
sleep 3

# Xvfb picks a free display itself and writes its number once it listens (-displayfd):
# no two runs can race for one.
display_file=$(mktemp)
Xvfb -displayfd 3 -screen 0 1320x860x24 -nolisten tcp 3>"$display_file" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$display_file" ] && break; sleep 0.1; done
display=:$(head -n1 "$display_file")
home=$work/app-home-$$
mkdir -p "$home/config"
printf '{"tracker": "%s", "username": "bench"}\n' "$url" >"$home/config/settings.json"
DISPLAY=$display RIVULET_HOME=$home RIVULET_STATUS_FILE=$home/status.json RIVULET_MPV_AO=null \
  RIVULET_PASSWORD=$pw ICED_BACKEND=$backend "$bins/rivulet" rivulet://watch/bench >"$home/app.log" 2>&1 &
app=$!
pids+=($app)
for _ in $(seq 600); do
  if [ -f "$home/status.json" ] && grep -q '"frames_shown":[1-9]' "$home/status.json"; then break; fi
  sleep 0.1
done
grep -q '"frames_shown":[1-9]' "$home/status.json" || { echo "no frame; log:" >&2; tail -20 "$home/app.log" >&2; exit 1; }
source "$(dirname "$0")/measure.sh"
measure "$app" "$home" "$seconds" "$backend" "app alone (tracker and 3 caches in other processes)"
