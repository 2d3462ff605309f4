#!/bin/bash
# The desktop app's start time, memory and idle cost, measured on a real
# window: two loopback daemons sharing a room with a conversation in several
# scripts, Xvfb, and the app. Prints: time to the first drawn frame, RSS,
# CPU time and context switches (all threads) over 60 s idle with a peer
# connected, and over 30 s with the daemon stopped.
#   gui/bench/idle.sh [GUI-BINARY] [DAEMON-BINARY] [CLI-BINARY]
# TEXT=latin: a conversation in Latin letters only (no system font needed);
# default: Latin, Arabic, Chinese, Hindi, Hebrew, Japanese, Korean, emoji.
# Needs Xvfb and ImageMagick (/usr/bin/import). Screenshots go to $OUT.
set -euo pipefail
T=${CARGO_TARGET_DIR:-target}/debug
GUI=${1:-$T/peddlenet-gui}; D=${2:-$T/peddlenetd}; CLI=${3:-$T/peddlenet}
IDLE=${IDLE_SECONDS:-60}; DOWN=${DOWN_SECONDS:-30}
W=$(mktemp -d); OUT=${OUT:-$W}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
daemon() { # name dir [peer]
  mkdir -p "$2"; chmod 700 "$2"
  "$D" --data-dir "$2" --socket "$2/s.sock" --config /dev/null --no-mdns --name "$1" \
    --listen /ip4/127.0.0.1/tcp/0 ${3:+--peer "$3"} --log warn 2>"$2/log" &
  pids+=($!)
  for _ in $(seq 100); do [ -S "$2/s.sock" ] && "$CLI" --socket "$2/s.sock" status >/dev/null 2>&1 && return; sleep 0.1; done
  echo "daemon $1 did not start"; cat "$2/log"; exit 1
}
daemon Ana "$W/a"
A="$CLI --socket $W/a/s.sock"
addr=$($A --json status | python3 -c 'import json,sys; print([a for a in json.load(sys.stdin)["listen_addrs"] if "/tcp/" in a][0])')
daemon Bo "$W/b" "$addr"
B="$CLI --socket $W/b/s.sock"
uri=$($A room create "Ridge camp" | grep -o 'peddlenet://join/[A-Za-z0-9_-]*' | head -1)
$B room join "$uri" >/dev/null
sleep 2
if [ "${TEXT:-all}" = latin ]; then
  # Latin only: no font beyond egui's own is needed.
  $A send "Ridge camp" "fire is lit, come over" >/dev/null
  $B send "Ridge camp" "on my way, bringing the kettle" >/dev/null
  $A send "Ridge camp" "Route notes: https://maps.example.org/trails/ridge-camp/overview?from=north-gate&to=summit-hut" >/dev/null
else
  $A send "Ridge camp" "Route notes: https://maps.example.org/trails/ridge-camp/overview?from=north-gate&to=summit-hut&via=lakeside-path,old-quarry,pine-hollow&mode=walk&lang=en" >/dev/null
  $B send "Ridge camp" "مرحبا بالجميع، النار مشتعلة عند المخيم" >/dev/null
  $B send "Ridge camp" "大家好，营火已经点燃了，快来吧！" >/dev/null
  $A send "Ridge camp" "सभी को नमस्ते, आग जल गई है" >/dev/null
  $B send "Ridge camp" "🔥⛺🌲 see you at the fire 👋😀" >/dev/null
  $B send "Ridge camp" "https://downloads.example.net/maps/offline/ridge-camp-area-topographic-2026-edition-high-resolution-tiles.zip" >/dev/null
  $A send "Ridge camp" "שלום · こんにちは · 안녕하세요
bring water
and a torch" >/dev/null
fi
n=$((90 + RANDOM % 100)); while [ -e /tmp/.X$n-lock ]; do n=$((n+1)); done
SIZE=${SIZE:-960x640}
Xvfb :$n -screen 0 ${SIZE}x24 -nolisten tcp >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 100); do [ -S /tmp/.X11-unix/X$n ] && break; sleep 0.05; done
sleep 0.5
export DISPLAY=:$n
unset WAYLAND_DISPLAY
export XDG_STATE_HOME=$W/state
t0=$(date +%s.%N)
PEDDLENET_LOG=${PEDDLENET_LOG:-warn,peddlenet_gui::fonts=info} \
  "$GUI" --socket "$W/a/s.sock" --no-start >"$W/gui.log" 2>&1 & gp=$!; pids+=($gp)
# The first drawn frame: the picture has the conversation's text in it.
while :; do
  /usr/bin/import -display :$n -window root "$W/shot.png" 2>/dev/null || true
  busy=$(/usr/bin/convert "$W/shot.png" -format '%k' info: 2>/dev/null || echo 0)
  [ "${busy:-0}" -gt 64 ] && break
  [ "$(echo "$(date +%s.%N) - $t0 > 30" | bc)" = 1 ] && { echo "no frame in 30 s"; cat "$W/gui.log"; exit 1; }
done
t1=$(date +%s.%N)
printf 'first frame with content after %.2f s (%s colours)\n' "$(echo "$t1 - $t0" | bc)" "$busy"
sleep 5
cp "$W/shot.png" "$OUT/first-frame.png" 2>/dev/null || true
/usr/bin/import -display :$n -window root "$OUT/settled-$SIZE.png"
echo "RSS after 5 s: $(grep VmRSS /proc/$gp/status | awk '{print $2, $3}') (peak $(grep VmHWM /proc/$gp/status | awk '{print $2, $3}'))"
cpu() { awk '{print $14 + $15}' /proc/$gp/stat; }
ctx() { cat /proc/$gp/task/*/status | awk '/^voluntary_ctxt_switches|^nonvoluntary_ctxt_switches/ {s += $2} END {print s}'; }
measure() { # label seconds
  local c0 x0 c1 x1 hz
  hz=$(getconf CLK_TCK)
  c0=$(cpu); x0=$(ctx); sleep "$2"; c1=$(cpu); x1=$(ctx)
  printf '%s: CPU %.2f %% over %s s, %d context switches (%.0f per minute)\n' "$1" \
    "$(echo "($c1 - $c0) * 100 / $hz / $2" | bc -l)" "$2" "$((x1 - x0))" "$(echo "($x1 - $x0) * 60 / $2" | bc -l)"
}
measure "idle, daemon up, 1 peer" "$IDLE"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
sleep 2
measure "daemon stopped" "$DOWN"
echo "RSS at the end: $(grep VmRSS /proc/$gp/status | awk '{print $2, $3}')"
# The system fonts the app loaded (the last report of its font thread).
grep -a 'system fonts' "$W/gui.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' || true
