#!/usr/bin/env bash
# Build the Keel kernel (x86_64, no modules) from the Debian linux-source
# tarball: tinyconfig + kernel-config/keel.config.
#
#   kernel-config/build.sh <builddir>
#
# Output: <builddir>/vmlinuz. Cached in <builddir>/kernel-<key>/ where key =
# sha256(keel.config + build.sh + tarball basename + tarball size).
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 <builddir>" >&2
    exit 2
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FRAGMENT="$HERE/keel.config"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
TARBALL=${KEEL_LINUX_TARBALL:-/usr/src/linux-source-6.12.tar.xz}

mkdir -p "$1"
BUILDDIR=$(cd "$1" && pwd)
SRC="$BUILDDIR/linux-src"
OBJ="$BUILDDIR/kernel-obj"
LOG="$BUILDDIR/kernel-build.log"
OUT="$BUILDDIR/vmlinuz"

[ -f "$TARBALL" ] || { echo "kernel: missing $TARBALL (apt-get install linux-source-6.12)" >&2; exit 1; }

tar_id="$(basename "$TARBALL") $(stat -c %s "$TARBALL")"
KEY=$(
    {
        cat "$FRAGMENT"
        cat "$SELF"
        printf '%s\n' "$tar_id"
    } | sha256sum | cut -d' ' -f1
)
CACHE="$BUILDDIR/kernel-$KEY"

install_image() {
    cp -f "$CACHE/bzImage" "$OUT.tmp"
    mv -f "$OUT.tmp" "$OUT"
}

# ---- fast path ---------------------------------------------------------------
if [ -f "$CACHE/bzImage" ]; then
    install_image
    echo "kernel: cached key=${KEY:0:16} -> $OUT"
    exit 0
fi

# ---- reproducibility -----------------------------------------------------------
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 1970'
export KBUILD_BUILD_USER=keel
export KBUILD_BUILD_HOST=keel
export KBUILD_BUILD_VERSION=1
export LC_ALL=C

start=$(date +%s)
: > "$LOG"

fail() {
    echo "kernel: FAILED: $*" >&2
    echo "---- last 40 lines of $LOG ----" >&2
    tail -n 40 "$LOG" >&2 || true
    exit 1
}

# ---- extract source ------------------------------------------------------------
MARKER="$SRC/.keel-extracted"
if [ ! -f "$MARKER" ] || [ "$(cat "$MARKER")" != "$tar_id" ]; then
    echo "kernel: extracting $(basename "$TARBALL") -> $SRC"
    rm -rf "$SRC" "$OBJ"
    mkdir -p "$SRC"
    tar -xJf "$TARBALL" -C "$SRC" --strip-components=1
    printf '%s\n' "$tar_id" > "$MARKER"
fi

MAKE=(make -C "$SRC" O="$OBJ" ARCH=x86_64)
mkdir -p "$OBJ"

# ---- configure -----------------------------------------------------------------
echo "kernel: configuring (tinyconfig + keel.config)"
"${MAKE[@]}" tinyconfig >>"$LOG" 2>&1 || fail "make tinyconfig"
(cd "$SRC" && scripts/kconfig/merge_config.sh -m -O "$OBJ" "$OBJ/.config" "$FRAGMENT") \
    >>"$LOG" 2>&1 || fail "merge_config.sh"
"${MAKE[@]}" olddefconfig >>"$LOG" 2>&1 || fail "make olddefconfig"

# ---- verify the fragment stuck ------------------------------------------------
# Every `CONFIG_X=val` line must appear verbatim in the final .config, and
# every `# CONFIG_X is not set` must not have become =y/=m.
bad=0
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=*)
            if ! grep -qxF -- "$line" "$OBJ/.config"; then
                sym=${line%%=*}
                got=$(grep -E "^$sym=|^# $sym is not set" "$OBJ/.config" || echo "(absent)")
                echo "kernel: did not stick: $line (final: $got)" >&2
                bad=1
            fi
            ;;
        "# CONFIG_"*" is not set")
            sym=${line#\# }; sym=${sym%% *}
            if grep -qE "^$sym=[ym]$" "$OBJ/.config"; then
                echo "kernel: did not stick: $line (final: $(grep -E "^$sym=" "$OBJ/.config"))" >&2
                bad=1
            fi
            ;;
    esac
done < "$FRAGMENT"
if [ "$bad" -ne 0 ]; then
    echo "kernel: keel.config does not apply cleanly to $(basename "$TARBALL"); fix the fragment" >&2
    exit 1
fi

# ---- build ---------------------------------------------------------------------
echo "kernel: building bzImage (-j$(nproc)), log: $LOG"
"${MAKE[@]}" -j"$(nproc)" bzImage >>"$LOG" 2>&1 || fail "make bzImage"

# ---- store in cache ------------------------------------------------------------
rm -rf "$CACHE.tmp"
mkdir -p "$CACHE.tmp"
cp "$OBJ/arch/x86/boot/bzImage" "$CACHE.tmp/bzImage"
cp "$OBJ/.config" "$CACHE.tmp/config"
mv "$CACHE.tmp" "$CACHE"

# drop stale cache dirs (only kernel-<64 hex>, never kernel-obj / the log)
for d in "$BUILDDIR"/kernel-*; do
    [ -d "$d" ] || continue
    name=$(basename "$d")
    [ "$name" = "kernel-$KEY" ] && continue
    if [[ "$name" =~ ^kernel-[0-9a-f]{64}(\.tmp)?$ ]]; then
        rm -rf "$d"
    fi
done

install_image
echo "kernel: built key=${KEY:0:16} size=$(stat -c %s "$OUT") in $(( $(date +%s) - start ))s -> $OUT"
