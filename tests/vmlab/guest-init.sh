#!/bin/bash
# PID 1 of the lab VM, started by the initramfs after switch_root onto the
# host's root filesystem (9p). Do not run this on the host.
#
# Usage (kernel command line does this): guest-init.sh RUN_DIR
#   RUN_DIR/lab.env   settings written by run.sh (VMLAB_BT, VMLAB_WIFI, ...)
#   RUN_DIR/cmd.sh    the guest command (cd + environment + exec)
#   RUN_DIR/*.log     daemon logs and dmesg, written here for the host
#
# Serial ports: ttyS0 = kernel console (host: console.log), ttyS1 = command
# output (host: output.log, streamed), ttyS2 = status line for the host.
# Whatever happens, the VM powers itself off at the end (EXIT trap).
set -uo pipefail

RUN_DIR=${1:?usage: guest-init.sh RUN_DIR}
GUEST_BIN="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/guest-bin"
OUT_TTY=/dev/ttyS1
STATUS_TTY=/dev/ttyS2
STATUS=""   # what we report to the host, e.g. "exit=0" or "lab-error=..."

# Log to the kernel console (console.log), stamped with the guest's uptime.
log() {
    local up
    read -r up _ </proc/uptime 2>/dev/null || up="?"
    echo "vmlab-guest [$up]: $*"
}

# Report STATUS on ttyS2, save dmesg, flush 9p writes and power off.
finish() {
    trap - EXIT
    [[ -n "$STATUS" ]] || STATUS="lab-error=guest init ended unexpectedly"
    dmesg >"$RUN_DIR/dmesg.log" 2>&1 || true
    sync
    log "status: $STATUS"
    # Closing a serial tty waits until its output has been sent.
    echo "VMLAB_STATUS $STATUS" >"$STATUS_TTY"
    sleep 0.2   # let ttyS1 drain if background processes still hold it open
    /bin/busybox poweroff -f
}
trap finish EXIT

lab_error() {
    STATUS="lab-error=$*"
    log "ERROR: $*"
    exit 1   # -> finish
}

mount_fs() {  # mount_fs TYPE TARGET [OPTIONS]: mount or give up
    mount -t "$1" ${3:+-o "$3"} "$1" "$2" || lab_error "cannot mount $1 on $2"
}

# Everything below / except the 9p root itself is private to the VM.
mount_filesystems() {
    mount_fs proc /proc
    mount_fs sysfs /sys
    mount_fs devtmpfs /dev
    mkdir -p /dev/pts /dev/shm
    mount_fs devpts /dev/pts newinstance,ptmxmode=0666,mode=0620
    ln -sf pts/ptmx /dev/ptmx
    mount_fs tmpfs /dev/shm mode=1777
    # Fresh /run and /tmp: the host's stay untouched (and invisible here).
    mount_fs tmpfs /run mode=0755
    # The command's directory may be under the host's /tmp (a checkout
    # made with mktemp): keep that one directory, bound into the fresh /tmp.
    if [[ -n "${VMLAB_HOST_TMP_DIR:-}" ]]; then
        mkdir -p /run/vmlab/host-tmp
        mount --bind "$VMLAB_HOST_TMP_DIR" /run/vmlab/host-tmp || lab_error "cannot bind $VMLAB_HOST_TMP_DIR"
    fi
    mount_fs tmpfs /tmp mode=1777
    if [[ -n "${VMLAB_HOST_TMP_DIR:-}" ]]; then
        mkdir -p "$VMLAB_HOST_TMP_DIR"
        mount --bind /run/vmlab/host-tmp "$VMLAB_HOST_TMP_DIR" || lab_error "cannot bind $VMLAB_HOST_TMP_DIR back"
    fi
    mkdir -p /run/lock /run/dbus /run/vmlab/bin
    # bluetoothd keeps pairing state here; keep it off the host's disk.
    if [[ -d /var/lib/bluetooth ]]; then
        mount_fs tmpfs /var/lib/bluetooth mode=0700
    fi
    mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null || true
}

# The guest kernel's modules live in the extracted package, not /lib/modules:
# route the kernel's on-demand loading (and `modprobe` on PATH) through it.
setup_modprobe() {
    cat >/run/vmlab/bin/modprobe <<EOF
#!/bin/sh
exec /sbin/modprobe -d '$VMLAB_KDIR' "\$@"
EOF
    chmod 0755 /run/vmlab/bin/modprobe
    echo /run/vmlab/bin/modprobe >/proc/sys/kernel/modprobe
}

# wait_for SECONDS DESCRIPTION COMMAND... : poll COMMAND every 0.1 s.
wait_for() {
    local timeout=$1 what=$2 i
    shift 2
    for ((i = 0; i < timeout * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    lab_error "timed out after ${timeout}s waiting for $what"
}

bluez_has_adapter() {  # bluez_has_adapter hciN: bluetoothd has registered it
    dbus-send --system --print-reply --dest=org.bluez "/org/bluez/$1" \
        org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:Address
}

adapter_powered() {  # adapter_powered hciN
    [[ "$(dbus-send --system --print-reply --dest=org.bluez "/org/bluez/$1" \
        org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:Powered)" \
        == *"boolean true"* ]]
}

power_on_adapter() {  # power_on_adapter hciN: through bluetoothd, as a desktop would
    adapter_powered "$1" && return 0
    dbus-send --system --print-reply --dest=org.bluez "/org/bluez/$1" \
        org.freedesktop.DBus.Properties.Set string:org.bluez.Adapter1 string:Powered \
        variant:boolean:true >>"$RUN_DIR/bluetooth-setup.log" 2>&1
    wait_for 10 "$1 to power on" adapter_powered "$1"
}

wait_quietly() {  # wait_quietly SECS CMD...: like wait_for, but returns 1 on timeout
    local timeout=$1 i
    shift
    for ((i = 0; i < timeout * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

no_controllers() { ! compgen -G '/sys/class/bluetooth/hci*' >/dev/null; }

start_controllers() {  # start_controllers N: btvirt; 1 unless hci0..N-1 are registered with bluetoothd
    local n=$1 i
    btvirt "-l$n" >>"$RUN_DIR/btvirt.log" 2>&1 &
    BTVIRT_PID=$!
    for ((i = 0; i < n; i++)); do
        wait_quietly 20 test -e "/sys/class/bluetooth/hci$i" || return 1
        wait_quietly 20 bluez_has_adapter "hci$i" || return 1
    done
}

setup_bluetooth() {
    local n=$1 i mod
    modprobe hci_vhci || lab_error "modprobe hci_vhci failed"
    # Load up front what btvirt/bluetoothd would otherwise make the kernel load
    # on demand (AF_ALG crypto, bnep): under emulation that takes seconds and
    # the first controller's HCI Reset times out (-110), leaving hci0 dead.
    for mod in algif_hash algif_skcipher cmac ecb ecdh_generic bnep; do
        modprobe "$mod" 2>/dev/null || log "note: module $mod not loaded"
    done
    ln -sf "$GUEST_BIN/btmgmt" /run/vmlab/bin/btmgmt
    dbus-daemon --system --fork || lab_error "dbus-daemon --system failed"
    # shellcheck disable=SC2086 # word splitting of extra args is intended
    /usr/libexec/bluetooth/bluetoothd -n ${VMLAB_BLUETOOTHD_ARGS:-} \
        >"$RUN_DIR/bluetoothd.log" 2>&1 &
    BLUETOOTHD_PID=$!
    wait_for 10 "bluetoothd on D-Bus (see bluetoothd.log)" \
        dbus-send --system --print-reply --dest=org.freedesktop.DBus / \
        org.freedesktop.DBus.GetNameOwner string:org.bluez
    # On a loaded host an emulated controller can still miss the kernel's
    # HCI command deadline ("hci0: Opcode 0x0c03 failed: -110" in dmesg.log)
    # and never register: btvirt is restarted once.
    if ! start_controllers "$n"; then
        log "note: controllers did not all come up; restarting btvirt once"
        kill "$BTVIRT_PID" 2>/dev/null
        wait "$BTVIRT_PID" 2>/dev/null
        wait_quietly 10 no_controllers
        start_controllers "$n" \
            || lab_error "btvirt's $n controllers did not come up, twice (see dmesg.log, btvirt.log, bluetoothd.log)"
    fi
    for ((i = 0; i < n; i++)); do
        power_on_adapter "hci$i"
    done
    log "bluetooth: $n controllers up and powered"
}

have_radios() {  # have_radios N: at least N wiphys exist
    local phys=(/sys/class/ieee80211/*)
    [[ -e "${phys[0]}" ]] && ((${#phys[@]} >= $1))
}

setup_wifi() {
    local n=$1
    modprobe mac80211_hwsim "radios=$n" || lab_error "modprobe mac80211_hwsim failed"
    wait_for 10 "$n hwsim radios" have_radios "$n"
    local phys=(/sys/class/ieee80211/*)
    log "wifi: $n radios: ${phys[*]##*/}"
}

# The command's stdout/stderr is a pipe (as in CI, so programs do not see a
# terminal), relayed to ttyS1 by cat. Background processes the command leaves
# behind may keep the pipe open; we wait for the relay only briefly.
# lab_fault: prints what of the lab itself died under the command, if
# anything did. BlueZ 5.66's emulator and daemon have crashes of their own
# that no client can cause or survive: btvirt's general protection fault
# (the kernel then trips over the vanished controller, dmesg "list_del
# corruption" in hci_chan_del) and bluetoothd's abort on a D-Bus path
# assertion after att_get_device's getpeername fails. A failed command under
# either says nothing about PeddleNet; the host redoes it (tests/ble/run-lab.sh).
lab_fault() {
    local what=()
    [[ -n "${BTVIRT_PID:-}" ]] && ! kill -0 "$BTVIRT_PID" 2>/dev/null \
        && what+=("btvirt (the controller emulator) died")
    [[ -n "${BLUETOOTHD_PID:-}" ]] && ! kill -0 "$BLUETOOTHD_PID" 2>/dev/null \
        && what+=("bluetoothd died")
    dmesg 2>/dev/null | grep -q -E 'kernel BUG|general protection fault' \
        && what+=("the guest kernel reported a BUG or general protection fault")
    ((${#what[@]})) || return 1
    local IFS=';'
    echo "${what[*]} (see bluetoothd.log, btvirt.log, dmesg.log)"
}

run_command() {
    local rc=0 relay fifo=/run/vmlab/output.fifo i
    stty -F "$OUT_TTY" raw -echo 2>/dev/null || true
    mkfifo "$fifo" || lab_error "mkfifo $fifo failed"
    cat "$fifo" >"$OUT_TTY" &
    relay=$!
    log "running command"
    bash "$RUN_DIR/cmd.sh" >"$fifo" 2>&1 </dev/null || rc=$?
    log "command exited with $rc"
    STATUS="exit=$rc"
    if ((rc != 0)); then
        local fault
        fault=$(lab_fault) && STATUS="lab-fault=$fault"
    fi
    for ((i = 0; i < 20; i++)); do  # up to 2 s
        kill -0 "$relay" 2>/dev/null || break
        sleep 0.1
    done
}

main() {
    exec </dev/null
    # Read before the fresh /tmp hides it (the run directory may be there).
    [[ -r "$RUN_DIR/lab.env" ]] || lab_error "$RUN_DIR/lab.env not readable"
    # shellcheck source=/dev/null
    source "$RUN_DIR/lab.env"
    mount_filesystems
    export PATH="/run/vmlab/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    hostname vmlab 2>/dev/null || true
    ip link set lo up
    setup_modprobe
    ((VMLAB_BT > 0)) && setup_bluetooth "$VMLAB_BT"
    ((VMLAB_WIFI > 0)) && setup_wifi "$VMLAB_WIFI"
    run_command
}

main
