#!/usr/bin/env bash
# Build the Keel kernel (x86_64, no modules) from the Debian linux-source
# tarball: tinyconfig + the flavour's fragments.
#
#   kernel-config/build.sh <builddir> [virt|metal]
#
# Flavours: `virt` = keel.config (QEMU/cloud: virtio, e1000); `metal` (default) = keel.config + metal.config
# (server storage, NICs, platform; see docs/hardware.md). Output: <builddir>/vmlinuz-<flavour>, with its
# .config beside it (vmlinuz-<flavour>.config) and the drivers' declared firmware
# (vmlinuz-<flavour>.modinfo = modules.builtin.modinfo, read by image/firmware.sh).
#
# Cached by key = sha256(fragments + build.sh + tarball basename + tarball size) in two places:
# <builddir>/kernel-<key>/ and a per-user cache that outlives the work tree,
# ${KEEL_KERNEL_CACHE:-$HOME/.cache/keel/kernel}/<key>/, so a fresh clone (CI) or another worktree on the same
# machine reuses a kernel already built from the same config. A fresh machine builds from source.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 <builddir> [virt|metal]" >&2
    exit 2
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FLAVOUR=${2:-metal}
case "$FLAVOUR" in
    virt) FRAGMENTS=("$HERE/keel.config") ;;
    metal) FRAGMENTS=("$HERE/keel.config" "$HERE/metal.config") ;;
    *) echo "kernel: unknown flavour '$FLAVOUR' (virt or metal)" >&2; exit 2 ;;
esac
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
TARBALL=${KEEL_LINUX_TARBALL:-/usr/src/linux-source-6.12.tar.xz}

mkdir -p "$1"
BUILDDIR=$(cd "$1" && pwd)
SRC="$BUILDDIR/linux-src"
OBJ="$BUILDDIR/kernel-obj-$FLAVOUR"
LOG="$BUILDDIR/kernel-build-$FLAVOUR.log"
OUT="$BUILDDIR/vmlinuz-$FLAVOUR"
USER_CACHE_ROOT=${KEEL_KERNEL_CACHE:-${HOME:-/root}/.cache/keel/kernel}

[ -f "$TARBALL" ] || { echo "kernel: missing $TARBALL (apt-get install linux-source-6.12)" >&2; exit 1; }

tar_id="$(basename "$TARBALL") $(stat -c %s "$TARBALL")"
KEY=$(
    {
        for f in "${FRAGMENTS[@]}"; do cat "$f"; done
        cat "$SELF"
        printf '%s\n' "$tar_id"
    } | sha256sum | cut -d' ' -f1
)
CACHE="$BUILDDIR/kernel-$FLAVOUR-$KEY"
USER_CACHE="$USER_CACHE_ROOT/$KEY"
# tools: not-a-program
CACHED_FILES=(bzImage config modinfo)

complete() { # dir: holds every cached file
    local f
    for f in "${CACHED_FILES[@]}"; do [ -f "$1/$f" ] || return 1; done
}

install_image() {
    cp -f "$CACHE/bzImage" "$OUT.tmp" && mv -f "$OUT.tmp" "$OUT"
    cp -f "$CACHE/config" "$OUT.config.tmp" && mv -f "$OUT.config.tmp" "$OUT.config"
    cp -f "$CACHE/modinfo" "$OUT.modinfo.tmp" && mv -f "$OUT.modinfo.tmp" "$OUT.modinfo"
}

# copy_dir FROM TO: atomically (TO.tmp.$$ then rename), so a reader never sees half a cache entry.
copy_dir() {
    local tmp="$2.tmp.$$" f
    rm -rf "$tmp"
    mkdir -p "$tmp"
    for f in "${CACHED_FILES[@]}"; do cp "$1/$f" "$tmp/$f"; done
    rm -rf "$2" 2>/dev/null || true
    mv "$tmp" "$2" 2>/dev/null || rm -rf "$tmp" # another build stored the same key first: keep theirs
}

# ---- fast path ---------------------------------------------------------------
if complete "$CACHE"; then
    install_image
    echo "kernel: $FLAVOUR cached key=${KEY:0:16} -> $OUT"
    exit 0
fi
if complete "$USER_CACHE"; then
    copy_dir "$USER_CACHE" "$CACHE"
    touch "$USER_CACHE" 2>/dev/null || true # most recently used: kept by the pruning below
    install_image
    echo "kernel: $FLAVOUR cached key=${KEY:0:16} (from $USER_CACHE_ROOT) -> $OUT"
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
echo "kernel: configuring $FLAVOUR (tinyconfig + ${FRAGMENTS[*]##*/})"
"${MAKE[@]}" tinyconfig >>"$LOG" 2>&1 || fail "make tinyconfig"
(cd "$SRC" && scripts/kconfig/merge_config.sh -m -O "$OBJ" "$OBJ/.config" "${FRAGMENTS[@]}") \
    >>"$LOG" 2>&1 || fail "merge_config.sh"
"${MAKE[@]}" olddefconfig >>"$LOG" 2>&1 || fail "make olddefconfig"

# ---- verify the fragment stuck ------------------------------------------------
# Every `CONFIG_X=val` line must appear verbatim in the final .config, and
# every `# CONFIG_X is not set` must not have become =y/=m.
# A later fragment overrides an earlier one (metal.config's NR_CPUS over keel.config's): only the last line for
# each symbol is checked.
LAST_LINE_PER_SYMBOL='{ sym = $0; sub(/^# /, "", sym); sub(/[= ].*/, "", sym); last[sym] = NR; line[NR] = $0 } END { for (s in last) print last[s] "\t" line[last[s]] }'
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
done < <(
    for f in "${FRAGMENTS[@]}"; do
        grep -E '^(CONFIG_[A-Za-z0-9_]+=|# CONFIG_[A-Za-z0-9_]+ is not set$)' "$f"
    done | awk "$LAST_LINE_PER_SYMBOL" | sort -n | cut -f2-
)
if [ "$bad" -ne 0 ]; then
    echo "kernel: ${FRAGMENTS[*]##*/} does not apply cleanly to $(basename "$TARBALL"); fix the fragment" >&2
    exit 1
fi

# ---- build ---------------------------------------------------------------------
echo "kernel: building $FLAVOUR bzImage (-j$(nproc)), log: $LOG"
"${MAKE[@]}" -j"$(nproc)" bzImage >>"$LOG" 2>&1 || fail "make bzImage"

# ---- store in cache ------------------------------------------------------------
rm -rf "$CACHE.tmp"
mkdir -p "$CACHE.tmp"
cp "$OBJ/arch/x86/boot/bzImage" "$CACHE.tmp/bzImage"
cp "$OBJ/.config" "$CACHE.tmp/config"
cp "$OBJ/modules.builtin.modinfo" "$CACHE.tmp/modinfo"
rm -rf "$CACHE"
mv "$CACHE.tmp" "$CACHE"
# The per-user cache is best effort: a read-only or full home never fails the build.
{ mkdir -p "$USER_CACHE_ROOT" && copy_dir "$CACHE" "$USER_CACHE"; } 2>/dev/null ||
    echo "kernel: could not store in $USER_CACHE_ROOT (continuing)" >&2

# drop this flavour's stale cache dirs (only kernel-<flavour>-<64 hex>, never kernel-obj-* / the logs), and all
# but the 8 most recently used entries of the per-user cache (about 10 MB each).
for d in "$BUILDDIR"/kernel-*; do
    [ -d "$d" ] || continue
    name=$(basename "$d")
    [ "$name" = "kernel-$FLAVOUR-$KEY" ] && continue
    if [[ "$name" =~ ^kernel-($FLAVOUR-)?[0-9a-f]{64}(\.tmp)?$ ]]; then
        rm -rf "$d"
    fi
done
if [ -d "$USER_CACHE_ROOT" ]; then
    # shellcheck disable=SC2012 # names are 64 hex digits
    ls -1t "$USER_CACHE_ROOT" | grep -E '^[0-9a-f]{64}$' | tail -n +9 | while read -r old; do
        rm -rf "${USER_CACHE_ROOT:?}/$old"
    done
fi

install_image
echo "kernel: $FLAVOUR built key=${KEY:0:16} size=$(stat -c %s "$OUT") in $(( $(date +%s) - start ))s -> $OUT"
