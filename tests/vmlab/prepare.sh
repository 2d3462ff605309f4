#!/bin/bash
# Prepare the VM lab: install host packages, fetch + extract the Debian kernel,
# build the initramfs. Idempotent: does nothing that is already done.
#
# Usage: tests/vmlab/prepare.sh [--quiet] [--refresh-kernel]
#   --quiet           only print errors and the work actually done
#   --refresh-kernel  re-resolve linux-image-amd64 and fetch it if it changed
#
# Cache layout (under target/vmlab/, override with VMLAB_CACHE):
#   kernel/<package>_<version>/   dpkg -x of the kernel package, depmod'ed
#   kernel/current.env            VMLAB_KVER / VMLAB_KDIR of the kernel in use
#   initramfs.cpio.gz (+ .inputs) busybox + virtio/9p modules + init
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REFRESH_KERNEL=0

# Print the comment block at the top of this file.
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

parse_args() {
    while (($#)); do
        case "$1" in
            --quiet) VMLAB_QUIET=1 ;;
            --refresh-kernel) REFRESH_KERNEL=1 ;;
            -h|--help) usage; exit 0 ;;
            *) vmlab_die "unknown argument: $1 (see --help)" ;;
        esac
        shift
    done
}

apt_quiet() {  # run apt-get non-interactively, show its output only on failure
    local log rc=0
    log=$(mktemp)
    DEBIAN_FRONTEND=noninteractive apt-get -o APT::Sandbox::User=root "$@" >"$log" 2>&1 || rc=$?
    ((rc == 0)) || { tail -n 30 "$log" >&2; }
    rm -f "$log"
    return "$rc"
}

require_root() {
    [[ "$(id -u)" == 0 ]] || vmlab_die "$1 needs root (run as root, e.g. with sudo)"
}

# --- 1. Debian packages ------------------------------------------------------
ensure_packages() {
    local pkg missing=()
    for pkg in "${VMLAB_PACKAGES[@]}"; do
        if [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null)" != "ii " ]]; then
            missing+=("$pkg")
        fi
    done
    ((${#missing[@]})) || { vmlab_info "packages: all present"; return 0; }

    require_root "installing ${missing[*]}"
    vmlab_log "packages: installing ${missing[*]}"
    if ! apt_quiet install -y -qq --no-install-recommends "${missing[@]}"; then
        vmlab_log "packages: install failed, running apt-get update and retrying"
        apt_quiet update -qq || vmlab_die "apt-get update failed"
        apt_quiet install -y -qq --no-install-recommends "${missing[@]}" \
            || vmlab_die "apt-get install ${missing[*]} failed"
    fi
}

# --- 2. Kernel -----------------------------------------------------------------
# Name of the versioned image package linux-image-amd64 currently points to.
kernel_package_name() {
    apt-cache depends linux-image-amd64 2>/dev/null \
        | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

ensure_kernel() {
    if ((!REFRESH_KERNEL)) && vmlab_load_kernel_env; then
        vmlab_info "kernel: cached $VMLAB_KVER in ${VMLAB_KDIR#"$VMLAB_REPO_DIR"/}"
        return 0
    fi

    local pkg
    pkg=$(kernel_package_name)
    if [[ -z "$pkg" ]]; then
        require_root "apt-get update (to find linux-image-amd64)"
        vmlab_log "kernel: linux-image-amd64 unknown to apt, running apt-get update"
        apt_quiet update -qq || vmlab_die "apt-get update failed"
        pkg=$(kernel_package_name)
        [[ -n "$pkg" ]] || vmlab_die "cannot resolve linux-image-amd64 with apt-cache depends"
    fi

    local version dest
    version=$(apt-cache policy "$pkg" | awk '$1 == "Candidate:" { print $2 }')
    dest="$VMLAB_CACHE/kernel/${pkg}_${version}"
    if [[ ! -f "$dest/.complete" ]]; then
        vmlab_log "kernel: downloading $pkg $version"
        local tmp
        tmp=$(mktemp -d "$VMLAB_CACHE/kernel/.tmp.XXXXXX")
        (cd "$tmp" && apt_quiet download "$pkg=$version") \
            || { rm -rf "$tmp"; vmlab_die "apt-get download $pkg=$version failed"; }
        vmlab_log "kernel: extracting $(basename "$tmp"/*.deb)"
        mkdir "$tmp/tree"
        dpkg -x "$tmp"/*.deb "$tmp/tree" || { rm -rf "$tmp"; vmlab_die "dpkg -x failed"; }
        rm -f "$tmp"/*.deb

        local vmlinuz kver
        vmlinuz=$(find "$tmp/tree/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n 1)
        [[ -n "$vmlinuz" ]] || { rm -rf "$tmp"; vmlab_die "no boot/vmlinuz-* in $pkg"; }
        kver=${vmlinuz##*/vmlinuz-}
        vmlab_log "kernel: depmod $kver"
        depmod -b "$tmp/tree" "$kver" || { rm -rf "$tmp"; vmlab_die "depmod failed"; }
        touch "$tmp/tree/.complete"
        rm -rf "$dest"
        mv "$tmp/tree" "$dest"
        rmdir "$tmp"
    fi

    local kver
    kver=$(find "$dest/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n 1)
    kver=${kver##*/vmlinuz-}
    printf 'VMLAB_KVER=%q\nVMLAB_KDIR=%q\n' "$kver" "$dest" >"$VMLAB_CACHE/kernel/current.env.tmp"
    mv "$VMLAB_CACHE/kernel/current.env.tmp" "$VMLAB_CACHE/kernel/current.env"
    vmlab_load_kernel_env || vmlab_die "kernel cache is inconsistent ($dest)"
    vmlab_info "kernel: using $VMLAB_KVER"
}

# --- 3. Initramfs ----------------------------------------------------------------
# Print the .ko paths needed for VMLAB_INITRAMFS_MODULES, dependencies first.
initramfs_module_paths() {
    local mod
    for mod in "${VMLAB_INITRAMFS_MODULES[@]}"; do
        modprobe -d "$VMLAB_KDIR" -S "$VMLAB_KVER" --show-depends "$mod" \
            || vmlab_die "module $mod not found in $VMLAB_KVER"
    done | awk '$1 == "insmod" { if (!seen[$2]++) print $2 }'
}

ensure_initramfs() {
    local out="$VMLAB_CACHE/initramfs.cpio.gz"
    local busybox=/bin/busybox init="$VMLAB_SRC_DIR/initramfs-init.sh"
    local paths
    paths=$(initramfs_module_paths)
    local -a modules
    mapfile -t modules <<<"$paths"

    # Everything the image is made of; a change to any of it triggers a rebuild.
    local inputs
    inputs=$(
        echo "format 1"
        echo "kernel $VMLAB_KVER $VMLAB_KDIR"
        sha256sum "$busybox" "$init" ${modules[@]+"${modules[@]}"}
    )
    if [[ -f "$out" && "$(cat "$out.inputs" 2>/dev/null)" == "$inputs" ]]; then
        vmlab_info "initramfs: up to date"
        return 0
    fi

    vmlab_log "initramfs: building (${#modules[@]} modules)"
    local stage
    stage=$(mktemp -d "$VMLAB_CACHE/.initramfs.XXXXXX")
    mkdir -p "$stage"/{bin,dev,proc,sys,newroot,modules}
    cp "$busybox" "$stage/bin/busybox"
    install -m 0755 "$init" "$stage/init"
    local ko
    : >"$stage/modules/order"
    for ko in ${modules[@]+"${modules[@]}"}; do
        cp "$ko" "$stage/modules/"
        basename "$ko" >>"$stage/modules/order"
    done
    (cd "$stage" && find . -print0 | LC_ALL=C sort -z \
        | cpio --null -o -H newc --quiet --owner=0:0 | gzip -9n) >"$out.tmp"
    rm -rf "$stage"
    mv "$out.tmp" "$out"
    printf '%s\n' "$inputs" >"$out.inputs"
    vmlab_log "initramfs: $(du -h "$out" | cut -f1) written to ${out#"$VMLAB_REPO_DIR"/}"
}

main() {
    parse_args "$@"
    mkdir -p "$VMLAB_CACHE/kernel"
    # Serialise concurrent prepare runs (parallel run.sh invocations).
    exec 9>"$VMLAB_CACHE/.prepare.lock"
    flock 9
    ensure_packages
    ensure_kernel
    ensure_initramfs
}

main "$@"
