#!/usr/bin/env bash
# What each `# @group` of metal.config costs in vmlinuz bytes: builds keel.config, then adds metal.config's
# groups one by one (cumulatively, incrementally in one object dir), and prints one line per step.
#
#   kernel-config/groups.sh <builddir>     -> <builddir>/kernel-groups.txt (also printed)
#
# Slow (one full build, then one incremental build per group): run by hand when metal.config changes and put
# the figures in docs/hardware.md; `make bench` prints the file when it exists.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 <builddir>" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILDDIR=$(cd "$1" && pwd)
SRC="$BUILDDIR/linux-src"
OBJ="$BUILDDIR/kernel-obj-groups"
LOG="$BUILDDIR/kernel-groups.log"
OUT="$BUILDDIR/kernel-groups.txt"
[ -f "$SRC/.keel-extracted" ] || { echo "groups: run kernel-config/build.sh $1 first (it extracts the source)" >&2; exit 1; }
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 1970' KBUILD_BUILD_USER=keel KBUILD_BUILD_HOST=keel \
    KBUILD_BUILD_VERSION=1 LC_ALL=C
MAKE=(make -C "$SRC" O="$OBJ" ARCH=x86_64)
mkdir -p "$OBJ"
: > "$LOG"
mapfile -t groups < <(sed -n 's/^# @group //p' "$HERE/metal.config")
frag="$BUILDDIR/kernel-groups.config"
cp "$HERE/keel.config" "$frag"
prev=0
printf '%-12s %10s %10s %8s\n' step vmlinuz delta build_s | tee "$OUT"
for step in base "${groups[@]}"; do
    if [ "$step" != base ]; then
        awk -v g="$step" '/^# @group /{on = ($3 == g)} on' "$HERE/metal.config" >> "$frag"
    fi
    start=$(date +%s)
    "${MAKE[@]}" tinyconfig >>"$LOG" 2>&1
    (cd "$SRC" && scripts/kconfig/merge_config.sh -m -O "$OBJ" "$OBJ/.config" "$frag") >>"$LOG" 2>&1
    "${MAKE[@]}" olddefconfig >>"$LOG" 2>&1
    "${MAKE[@]}" -j"$(nproc)" bzImage >>"$LOG" 2>&1 || { echo "groups: build failed at $step (log $LOG)" >&2; exit 1; }
    size=$(stat -c %s "$OBJ/arch/x86/boot/bzImage")
    printf '%-12s %10s %10s %8s\n' "$step" "$size" "$((size - prev))" "$(($(date +%s) - start))" | tee -a "$OUT"
    prev=$size
done
