#!/usr/bin/env bash
# What each `# @group` of metal.config costs in vmlinuz bytes: builds keel.config, then adds metal.config's
# groups one by one (cumulatively, incrementally in one object dir), and prints one line per step.
#
#   kernel-config/groups.sh <builddir>     -> <builddir>/kernel-groups.txt (also printed)
#
# Slow (one full build, then one incremental build per group): run by hand when metal.config changes, copy the
# file to kernel-config/groups.txt and run `make hardware-doc`, which puts the figures in docs/hardware.md.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh" "$@"
OBJ="$B/kernel-obj-groups"
LOG="$B/kernel-groups.log"
OUT="$B/kernel-groups.txt"
source_extracted || { echo "groups: run kernel-config/build.sh $1 first (it extracts the source)" >&2; exit 1; }
MAKE=(make -C "$SRC" O="$OBJ" ARCH=x86_64)
mkdir -p "$OBJ"
: > "$LOG"
mapfile -t groups < <(sed -n 's/^# @group //p' "$HERE/metal.config")
frag="$B/kernel-groups.config"
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
