# Measures a running app for the bench scripts (sourced): after 2 s more of playback, samples
# CPU (whole process and by thread) and RSS for $seconds, then prints one line of JSON with
# the app's status file ($home/status.json).
#   measure PID HOME SECONDS RENDERER WHAT
measure() {
  local app=$1 home=$2 seconds=$3 backend=$4 what=$5
  sleep 2
  local ticks; ticks=$(getconf CLK_TCK)
  cpu() { awk '{print $14 + $15}' "/proc/$app/stat"; }
  threads() { for t in /proc/$app/task/*; do echo "$(cat $t/comm | tr ' ' '_') $(awk '{print $14 + $15}' $t/stat)"; done; }
  threads >"$home/threads0"
  local c0 t0 rss rss_max=0 c1 t1 status
  c0=$(cpu); t0=$(date +%s.%N)
  for _ in $(seq $((seconds * 2))); do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$app/status")
    [ "$rss" -gt "$rss_max" ] && rss_max=$rss
    sleep 0.5
  done
  c1=$(cpu); t1=$(date +%s.%N)
  threads >"$home/threads1"
  status=$(cat "$home/status.json")
  python3 - "$status" "$c0" "$c1" "$t0" "$t1" "$ticks" "$rss_max" "$backend" "$home" "$what" <<'PY'
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
out = {"what": sys.argv[10]} if sys.argv[10] else {}
out.update({
    "renderer": sys.argv[8],
    "launch_to_first_frame_ms": s["first_frame_ms"],
    "play_to_first_frame_ms": s["play_to_frame_ms"],
    "cpu_percent_of_one_core": round((c1 - c0) / ticks / (t1 - t0) * 100, 1),
    "rss_max_mb": round(int(sys.argv[7]) / 1024, 1),
    "frames_shown": s["frames_shown"], "time_pos": s["time_pos"],
    "from_caches_bytes": s["from_caches_bytes"], "from_origin_bytes": s["from_origin_bytes"],
    "cpu_by_thread": by_thread,
})
print(json.dumps(out))
PY
}
