#!/bin/sh
# The idle-connection attack on the web UI, for figures (not part of the test
# suite; tests/tests/web.rs checks the same with short timeouts):
#   tests/web/idle-attack.sh target/debug/peddlenetd [PORT]
# Starts the daemon with 1024 open files (as systemd gives by default), opens
# 1100 connections to its web UI (half idle, half with half-sent headers),
# and prints how many the daemon holds after 1 s and after 15 s, whether the
# IPC socket and the web UI still answer meanwhile, and how often the daemon
# ran out of file descriptors. Needs python3, curl, prlimit.
set -u
bin=$1 port=${2:-47990}
cli=$(dirname "$bin")/peddlenet
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
printf '[web]\nlisten = "127.0.0.1:%s"\n[bluetooth]\nenabled = false\n[wifi_direct]\nenabled = false\n[mesh]\nmdns = false\nlisten = ["/ip4/127.0.0.1/tcp/0"]\n' "$port" >"$d/c.toml"
prlimit --nofile=1024:1024 -- "$bin" --config "$d/c.toml" --data-dir "$d/data" --socket "$d/s.sock" --log warn 2>"$d/log" &
pid=$!
sleep 3
ulimit -n 4096
python3 - 127.0.0.1 "$port" 1100 14 <<'PY' &
import socket, sys, time
host, port, n, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
conns = []
for i in range(n):
    s = socket.create_connection((host, port))
    if i % 2:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nX-Slow: ".encode())
    conns.append(s)
def held():
    k = 0
    for s in conns:
        s.setblocking(False)
        try:
            s.recv(256)
        except BlockingIOError:
            k += 1
        except OSError:
            pass
    return k
time.sleep(1)
print(f"held after 1 s: {held()} of {n}", flush=True)
time.sleep(wait)
print(f"held after {wait + 1:.0f} s: {held()} of {n}", flush=True)
PY
probe=$!
sleep 6
timeout 5 "$cli" --socket "$d/s.sock" status >"$d/st" 2>&1
echo "IPC during the attack: exit $? $(head -1 "$d/st")"
echo "web UI during the attack: HTTP $(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")"
wait $probe
kill $pid
wait $pid 2>/dev/null
echo "\"Too many open files\" in the daemon's log: $(grep -c 'Too many open files' "$d/log")"
