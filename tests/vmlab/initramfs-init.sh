#!/bin/busybox sh
# shellcheck shell=dash
# /init of the VM lab initramfs (runs under busybox, as PID 1).
#
# Loads the virtio/9p modules listed in /modules/order, mounts the host's root
# filesystem (9p tag "hostroot") and switch_roots into the script named by
# vmlab.init= on the kernel command line, passing it vmlab.run= as argument.
# Any failure powers the VM off; the host then reports a lab error.

/bin/busybox --install -s /bin

mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

fail() {
    echo "vmlab-initramfs: FATAL: $*"
    poweroff -f
    sleep 60
}

cmdline_value() {  # cmdline_value KEY -> value of KEY=value on the kernel command line
    local cmdline word
    read -r cmdline </proc/cmdline
    for word in $cmdline; do
        case "$word" in "$1="*) echo "${word#*=}"; return 0 ;; esac
    done
    return 1
}

# Modules are listed in dependency order; built-in or already loaded ones
# make insmod fail harmlessly, so errors only matter if the mount fails.
while read -r mod; do
    [ -n "$mod" ] || continue
    insmod "/modules/$mod" 2>/dev/null || true
done </modules/order

guest_init=$(cmdline_value vmlab.init) || fail "no vmlab.init= on the kernel command line"
run_dir=$(cmdline_value vmlab.run) || fail "no vmlab.run= on the kernel command line"

mkdir -p /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot /newroot \
    || fail "cannot mount the host root over 9p (modules: $(tr '\n' ' ' </modules/order))"
[ -f "/newroot$guest_init" ] || fail "guest init $guest_init not found on the host root"

umount -l /proc /sys 2>/dev/null
umount -l /dev 2>/dev/null
exec switch_root /newroot /bin/bash "$guest_init" "$run_dir"
