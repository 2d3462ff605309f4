#!/usr/bin/env bash
# A fresh machine builds PeddleNet with the README's one command: Rust and a
# C compiler, no Debian -dev package, not even pkg-config. Two checks:
#
# 1. The workspace builds (`cargo check`, which runs every build script) in
#    its own target dir with pkg-config unusable: PKG_CONFIG=false makes
#    every -sys crate that looks for a system library that way fail, as it
#    would on a machine without the library's -dev package.
# 2. The programs built by `cargo build --workspace` link no shared library
#    beyond the C runtime (their NEEDED entries): a library linked from the
#    system would need its -dev package to build. libdbus (BlueZ's D-Bus API)
#    is built from its bundled sources (dbus's `vendored` feature); the
#    desktop app loads X11/GL at run time.
#
# Cost: a full `cargo check` the first time, about 7 minutes of CPU (some
# 3.5 minutes on two idle cores; CI starts from a fresh clone, so it pays
# this every run); under a second once its target dir is warm.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "fresh-build: $*" >&2
    exit 1
}
started=$(date +%s)
target=${CARGO_TARGET_DIR:-target}

echo "== programs link only the C runtime"
for b in peddlenetd peddlenet peddlenet-gui; do
    f=$target/debug/$b
    [ -x "$f" ] || fail "$f is not built; run \`cargo build --workspace\` first"
    needed=$(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    [ -n "$needed" ] || fail "no NEEDED entries read from $f"
    for lib in $needed; do
        case $lib in
        libc.so.* | libm.so.* | libgcc_s.so.* | ld-linux*.so.* | libpthread.so.* | libdl.so.* | librt.so.* | libutil.so.*) ;;
        *) fail "$b links $lib, a system library: building it needs that library's -dev package" ;;
        esac
    done
    echo "$b: $(echo $needed)"
done

echo "== the workspace builds with no pkg-config"
# Its own target dir: the environment below must not make the usual one
# rebuild, and a build script that consults pkg-config runs here for real.
PKG_CONFIG=false PKG_CONFIG_LIBDIR=/nonexistent PKG_CONFIG_PATH= \
    cargo check --workspace --locked --quiet --target-dir "$target/fresh-build" \
    || fail "the build needs a system library (see above); a fresh machine has none"

echo "fresh-build: passed in $(($(date +%s) - started)) s"
