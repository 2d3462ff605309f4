# shellcheck shell=bash
# Shared settings and helpers for the VM lab host scripts (prepare.sh, run.sh).
# Source it; it does not change shell options of the caller.

VMLAB_SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VMLAB_REPO_DIR="$(cd "$VMLAB_SRC_DIR/../.." && pwd)"
# Everything big or generated lives here (git-ignored).
VMLAB_CACHE="${VMLAB_CACHE:-$VMLAB_REPO_DIR/target/vmlab}"

# Debian packages needed on the host. The guest uses the host's root
# filesystem, so the BlueZ / Wi-Fi user space tools must be installed here too.
# shellcheck disable=SC2034 # used by the scripts that source this file
VMLAB_PACKAGES=(
    qemu-system-x86   # the emulator (TCG, no KVM)
    busybox-static    # /init of the initramfs
    cpio kmod         # building the initramfs, depmod/modprobe
    bluez bluez-test-tools   # bluetoothd, btmgmt, btvirt
    wpasupplicant iw iproute2 # Wi-Fi / P2P, namespaces
    dbus              # system bus for bluetoothd
    iputils-ping      # ping -6 for the Wi-Fi self-test and project tests
)

# Modules the initramfs needs to mount the 9p root (their dependencies are
# resolved with modprobe --show-depends; built-in ones are skipped).
# shellcheck disable=SC2034
VMLAB_INITRAMFS_MODULES=(virtio_pci 9pnet_virtio 9p)

vmlab_log()  { printf 'vmlab: %s\n' "$*" >&2; }
vmlab_info() { [[ "${VMLAB_QUIET:-0}" == 1 ]] || vmlab_log "$@"; }  # "nothing to do" news
vmlab_warn() { printf 'vmlab: warning: %s\n' "$*" >&2; }
vmlab_die()  { printf 'vmlab: error: %s\n' "$*" >&2; exit "${VMLAB_DIE_CODE:-1}"; }

# Read the cached kernel description written by prepare.sh:
# sets VMLAB_KVER (e.g. 6.1.0-56-amd64) and VMLAB_KDIR (extracted package).
vmlab_load_kernel_env() {
    local env="$VMLAB_CACHE/kernel/current.env"
    [[ -r "$env" ]] || return 1
    # shellcheck source=/dev/null
    source "$env"
    # shellcheck disable=SC2153 # VMLAB_KDIR comes from $env
    [[ -n "${VMLAB_KVER:-}" && -f "$VMLAB_KDIR/boot/vmlinuz-$VMLAB_KVER" ]]
}
