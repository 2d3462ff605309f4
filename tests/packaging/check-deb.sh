#!/usr/bin/env bash
# The packaging check: builds the .deb (packaging/build-deb), checks its
# control fields and file list, installs it into a throwaway Debian root
# (debootstrap), and there: `peddlenetd --version`; the system unit's command
# line run as its user, which must notify readiness, answer `peddlenet
# status` and stop cleanly on SIGTERM; the desktop app started by a user with
# no daemon, which must start one that answers; an upgrade to a new revision,
# which must keep the identity, the rooms and a changed conffile.
#
# Needs root (debootstrap, chroot, network namespaces) and Debian's archive
# (the throwaway root and the package's dependencies come from it). Run by
# .ci/run; by hand: sudo tests/packaging/check-deb.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

fail() { echo "check-deb: FAILED: $*" >&2; exit 1; }
step() { echo "== check-deb: $*"; }

[ "$(id -u)" = 0 ] || fail "needs root (debootstrap, chroot, ip netns); run it with sudo"
for pkg in debootstrap dpkg-dev desktop-file-utils xvfb iproute2; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need="${need:-} $pkg"
done
if [ -n "${need:-}" ]; then
    step "installing Debian packages:$need"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
fi

target=${CARGO_TARGET_DIR:-$repo/target}
work=$target/packaging
mkdir -p "$work/deb"
version=$(sed -n 's/^version = "\(.*\)"/\1/p;T;q' Cargo.toml)
arch=$(dpkg --print-architecture)

step "building the package (release)"
deb1=$work/deb/peddlenet_${version}-1_${arch}.deb
deb2=$work/deb/peddlenet_${version}-2_${arch}.deb
packaging/build-deb --output "$deb1" >/dev/null
packaging/build-deb --deb-revision 2 --output "$deb2" >/dev/null
[ -f "$deb1" ] && [ -f "$deb2" ] || fail "cargo-deb did not make $deb1 and $deb2"
ls -l "$deb1"

step "control fields"
# (Values are read into variables first: `grep -q` at the end of a pipe
# would stop reading early, and pipefail would call that a failure.)
field() { dpkg-deb -f "$deb1" "$1"; }
[ "$(field Package)" = peddlenet ] || fail "Package is $(field Package)"
[ "$(field Version)" = "${version}-1" ] || fail "Version is $(field Version)"
[ "$(field Architecture)" = "$arch" ] || fail "Architecture is $(field Architecture)"
[ "$(field Section)" = net ] || fail "Section is $(field Section)"
[[ "$(field Maintainer)" == *@* ]] || fail "no Maintainer address"
summary=$(field Description)
summary=${summary%%$'\n'*}  # the first line (not `| head -1`: it may close the pipe early)
[[ "$summary" == *"an offline mesh messenger"* ]] || fail "Description: $summary"
depends=$(field Depends | tr ',' '\n' | sed 's/^ *//; s/ *(.*//')
for dep in 'libc6' 'passwd' 'libxkbcommon0' 'libgl1 | libegl1'; do
    grep -qxF "$dep" <<<"$depends" || fail "Depends lacks $dep: $(field Depends)"
done
# libdbus is built in (dbus's `vendored` feature): no libdbus-1-3 needed.
if grep -q '^libdbus' <<<"$depends"; then fail "Depends names libdbus, which is linked in: $(field Depends)"; fi
[ "$(dpkg-deb --ctrl-tarfile "$deb1" | tar -xO ./conffiles)" = /etc/peddlenet/peddlenetd.toml ] || fail "the config is not the one conffile"
control=$(dpkg-deb --ctrl-tarfile "$deb1" | tar -t)
for s in postinst prerm postrm; do
    grep -qx "./$s" <<<"$control" || fail "no $s maintainer script"
done

step "file list"
expected=$(cat <<'LIST'
./etc/peddlenet/peddlenetd.toml
./usr/bin/peddlenet
./usr/bin/peddlenet-gui
./usr/bin/peddlenetd
./usr/lib/systemd/system/peddlenetd.service
./usr/lib/systemd/user/peddlenetd.service
./usr/share/applications/peddlenet-gui.desktop
./usr/share/doc/peddlenet/README.md
./usr/share/doc/peddlenet/copyright
./usr/share/icons/hicolor/128x128/apps/peddlenet.png
./usr/share/icons/hicolor/16x16/apps/peddlenet.png
./usr/share/icons/hicolor/256x256/apps/peddlenet.png
./usr/share/icons/hicolor/32x32/apps/peddlenet.png
./usr/share/icons/hicolor/48x48/apps/peddlenet.png
./usr/share/icons/hicolor/64x64/apps/peddlenet.png
./usr/share/icons/hicolor/scalable/apps/peddlenet.svg
LIST
)
actual=$(dpkg-deb -c "$deb1" | awk '$1 !~ /^d/ { print $6 }' | sort)
if [ "$actual" != "$expected" ]; then
    diff <(echo "$expected") <(echo "$actual") || true
    fail "the file list differs (< expected, > in the package)"
fi
dpkg-deb -c "$deb1" | awk '$1 !~ /^d/ && $6 ~ /^\.\/usr\/bin\// && $1 != "-rwxr-xr-x" { bad = 1; print } END { exit bad }' \
    || fail "a program is not mode 755"
desktop-file-validate packaging/peddlenet-gui.desktop || fail "the desktop entry does not validate"
grep -q '^Icon=peddlenet$' packaging/peddlenet-gui.desktop || fail "the desktop entry names another icon"

step "a throwaway Debian root"
root=$(mktemp -d "$work/root.XXXXXX")
chmod 755 "$root"  # it is /, for every user of the root
ns=pn-pkg-$$
xvfb_pid=
cleanup() {
    set +e
    if ip netns list 2>/dev/null | grep -qw "$ns"; then
        for p in $(ip netns pids "$ns"); do kill -9 "$p"; done
        ip netns del "$ns"
    fi
    [ -n "$xvfb_pid" ] && kill "$xvfb_pid"
    for m in tmp/.X11-unix dev/pts dev proc; do mountpoint -q "$root/$m" && umount -l "$root/$m"; done
    rm -rf "$root"
}
trap cleanup EXIT
# Debian's minimal base plus systemd (for `systemd-analyze verify`), cached.
cache=$work/bookworm-minbase-systemd.tar
if [ ! -f "$cache" ]; then
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    debootstrap --variant=minbase --include=systemd bookworm "$root" "${mirror:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log"; fail "debootstrap"; }
    tar -C "$root" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
else
    tar -C "$root" -xf "$cache"
fi
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
cp /etc/resolv.conf "$root/etc/resolv.conf"
in_root() { chroot "$root" "$@"; }
# Daemons run in a network namespace of their own (loopback only): nothing
# they do reaches any network.
ip netns add "$ns"
ip -n "$ns" link set lo up
in_ns_root() { ip netns exec "$ns" chroot "$root" "$@"; }

step "installing $(basename "$deb1") with its dependencies (apt)"
cp "$deb1" "$deb2" "$root/tmp/"
in_root apt-get update -qq
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "/tmp/$(basename "$deb1")" >"$work/apt.log" 2>&1 \
    || { tail -20 "$work/apt.log"; fail "apt-get install"; }
in_root dpkg-query -W -f='${Status} ${Version}\n' peddlenet | grep -q "install ok installed ${version}-1" || fail "not installed"
out=$(in_root peddlenetd --version) || fail "peddlenetd --version"
[ "$out" = "peddlenetd $version" ] || fail "peddlenetd --version said: $out"
in_root peddlenet --version >/dev/null || fail "peddlenet --version"
in_root getent passwd peddlenet | grep -q ':/var/lib/peddlenet:/usr/sbin/nologin$' || fail "no system user peddlenet"
[ "$(readlink "$root/etc/systemd/user/default.target.wants/peddlenetd.service")" = /usr/lib/systemd/user/peddlenetd.service ] \
    || fail "the user unit is not enabled"
for u in usr/lib/systemd/system/peddlenetd.service usr/lib/systemd/user/peddlenetd.service; do
    # `verify` checks the unit's syntax and that its program exists in the root.
    # (bluetooth.service, named in After/Wants, is not in this root.)
    problems=$(in_root systemd-analyze verify "/$u" 2>&1 | grep -v 'bluetooth\.service' || true)
    [ -z "$problems" ] || fail "systemd-analyze verify /$u: $problems"
done

# The system unit, run the way systemd would: its User, its ExecStart, its
# State/RuntimeDirectory (0700, owned by the user), NOTIFY_SOCKET.
unit=$root/usr/lib/systemd/system/peddlenetd.service
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
unit_user=$(sed -n 's/^User=//p' "$unit")
sys_socket=/run/peddlenet/peddlenetd.sock
start_system_daemon() {
    install -d -m 0700 -o "$(in_root id -u "$unit_user")" -g "$(in_root id -g "$unit_user")" \
        "$root/var/lib/peddlenet" "$root/run/peddlenet"
    rm -f "$root/run/notify.sock" "$work/notify.out"
    python3 - "$root/run/notify.sock" "$work/notify.out" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666); s.settimeout(60)
with open(sys.argv[2], "a", buffering=1) as out:
    while True:
        msg = s.recv(4096).decode()
        out.write(msg.replace("\n", " ") + "\n")
        if "STOPPING=1" in msg: break
PY
    notify_pid=$!
    sleep 0.3
    ip netns exec "$ns" chroot "$root" setpriv --reuid "$unit_user" --regid "$unit_user" --init-groups \
        env -i PATH=/usr/bin:/bin HOME=/var/lib/peddlenet NOTIFY_SOCKET=/run/notify.sock $exec_start \
        >>"$work/system-daemon.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 100); do grep -q READY=1 "$work/notify.out" 2>/dev/null && break; sleep 0.2; done
    grep -q READY=1 "$work/notify.out" || { tail "$work/system-daemon.log"; fail "the system daemon did not notify READY=1"; }
}
sys_cli() { in_ns_root setpriv --reuid "$unit_user" --regid "$unit_user" --init-groups peddlenet --socket "$sys_socket" "$@"; }
stop_system_daemon() {
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || fail "the system daemon exited with status $? on SIGTERM"
    wait "$notify_pid" || true
    grep -q STOPPING=1 "$work/notify.out" || fail "no STOPPING=1 at shutdown"
    [ ! -e "$root$sys_socket" ] || fail "the socket was left behind"
}

step "the system daemon: readiness, status, clean stop"
start_system_daemon
# Whole into a file, then shown: `| tee | head -3` kills tee with SIGPIPE
# when head exits first, and pipefail then ends the check.
sys_cli status >"$work/status-1.txt"
head -3 "$work/status-1.txt"
[ "$(stat -c %a "$root/var/lib/peddlenet")" = 700 ] || fail "/var/lib/peddlenet is not 0700"
[ "$(stat -c %a "$root$sys_socket")" = 600 ] || fail "the socket is not 0600"
# Root of the root may not use another user's daemon: the socket is private.
in_ns_root peddlenet --socket "$sys_socket" status >/dev/null 2>&1 && fail "another user could use the system daemon's socket"
id_before=$(sys_cli --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["author_id"])')
sys_cli room create basecamp >/dev/null
stop_system_daemon

step "first run of the desktop app: it starts the user's daemon"
in_root useradd --create-home --uid 1000 --shell /bin/bash camper
install -d -m 0700 -o 1000 -g 1000 "$root/run/user/1000"
# Xvfb's -displayfd picks a free display (a killed Xvfb leaves its lock
# behind, and a fixed number would then fail) and writes it when ready.
Xvfb -displayfd 3 -screen 0 1024x768x24 -nolisten tcp 3>"$work/xvfb.display" >"$work/xvfb.log" 2>&1 &
xvfb_pid=$!
for _ in $(seq 100); do [ -s "$work/xvfb.display" ] && break; sleep 0.1; done
[ -s "$work/xvfb.display" ] || fail "Xvfb did not start: $(tail -3 "$work/xvfb.log")"
display=:$(head -1 "$work/xvfb.display")
mkdir -p "$root/tmp/.X11-unix" && mount --bind /tmp/.X11-unix "$root/tmp/.X11-unix"
as_camper() {
    ip netns exec "$ns" chroot "$root" setpriv --reuid 1000 --regid 1000 --init-groups \
        env -i PATH=/usr/bin:/bin HOME=/home/camper XDG_RUNTIME_DIR=/run/user/1000 DISPLAY="$display" LIBGL_ALWAYS_SOFTWARE=1 "$@"
}
as_camper peddlenet status >/dev/null 2>&1 && fail "a daemon answered before the app ran"
as_camper peddlenet-gui >"$work/gui.log" 2>&1 &
gui_pid=$!
ok=
for _ in $(seq 150); do
    if as_camper peddlenet status >"$work/camper-status.txt" 2>&1; then ok=1; break; fi
    kill -0 "$gui_pid" 2>/dev/null || { cat "$work/gui.log"; fail "the app exited"; }
    sleep 0.2
done
[ -n "$ok" ] || { cat "$work/gui.log" "$work/camper-status.txt"; fail "after the app started, peddlenet status did not answer"; }
head -2 "$work/camper-status.txt"
[ -s "$root/home/camper/.local/state/peddlenet/peddlenetd.log" ] || fail "the started daemon's log was not kept"
[ -f "$root/home/camper/.local/share/peddlenet/identity.key" ] || fail "no identity in the user's data folder"
camper_id=$(as_camper peddlenet --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["author_id"])')
kill "$gui_pid"; wait "$gui_pid" 2>/dev/null || true

step "upgrade to ${version}-2: identity, rooms and a changed conffile are kept"
sed -i 's/^# display_name = "Ana"$/display_name = "handheld-7"/' "$root/etc/peddlenet/peddlenetd.toml"
grep -q '^display_name = "handheld-7"$' "$root/etc/peddlenet/peddlenetd.toml" || fail "could not edit the conffile"
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold "/tmp/$(basename "$deb2")" >>"$work/apt.log" 2>&1 || { tail "$work/apt.log"; fail "upgrade"; }
in_root dpkg-query -W -f='${Version}' peddlenet | grep -qx "${version}-2" || fail "not upgraded"
grep -q '^display_name = "handheld-7"$' "$root/etc/peddlenet/peddlenetd.toml" || fail "the upgrade replaced the changed conffile"
start_system_daemon
id_after=$(sys_cli --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["author_id"])')
[ "$id_before" = "$id_after" ] || fail "the identity changed across the upgrade: $id_before -> $id_after"
[[ "$(sys_cli status)" == *handheld-7* ]] || fail "the changed conffile is not in effect"
[[ "$(sys_cli room list)" == *basecamp* ]] || fail "the room did not survive the upgrade"
stop_system_daemon
# The user's daemon, still running from before the upgrade, keeps its identity too.
[ "$(as_camper peddlenet --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["author_id"])')" = "$camper_id" ] \
    || fail "the user's identity changed"

step "removal keeps the data"
for p in $(ip netns pids "$ns"); do kill -TERM "$p"; done
in_root env DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq peddlenet >>"$work/apt.log" 2>&1 || fail "apt-get remove"
[ ! -e "$root/usr/bin/peddlenetd" ] || fail "peddlenetd is still installed"
[ -f "$root/var/lib/peddlenet/identity.key" ] || fail "removal lost the system identity"
echo "check-deb: ok (identity ${id_before:0:16}… kept across ${version}-1 -> ${version}-2)"
