#!/usr/bin/env bash
# Boots a Keel node in QEMU on the serial console: qemu/run.sh BUILD_DIR
# KEEL_KVM=1 uses KVM (nested KVM fails on some hosts: TCG is the default). KEEL_APPEND adds kernel
# command-line words (e.g. keel.log=debug). KEEL_UUID sets the SMBIOS UUID the machine id comes from.
set -euo pipefail
build=${1:-build}
accel=(-accel tcg)
[ "${KEEL_KVM:-0}" = 1 ] && accel=(-accel kvm -cpu host)
uuid=${KEEL_UUID:-6b65656c-0000-4000-8000-000000000001}
cat <<MSG
Keel: booting $build/vmlinuz + $build/initramfs.cpio.zst under ${accel[1]} (machine uuid $uuid).
  What you see: kernel messages, then 'keel: <event> key=value' lines for each boot phase, ending in
  'keel: ready' with the node's id and timings. There is no shell and no login: that is the point.
  The demo service answers on the host: curl localhost:${KEEL_DEMO_PORT:-8080}
  Exit QEMU: Ctrl-A then X.   Power button: Ctrl-A then C, type 'system_powerdown', Enter (clean poweroff).
MSG
exec qemu-system-x86_64 "${accel[@]}" -m 256 -smp 2 -nographic \
  -uuid "$uuid" \
  -kernel "$build/vmlinuz" -initrd "$build/initramfs.cpio.zst" \
  -append "console=ttyS0 panic=-1 ${KEEL_APPEND:-}" \
  -device virtio-rng-pci \
  -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:${KEEL_API_PORT:-7443}-:7443,hostfwd=tcp:127.0.0.1:${KEEL_DEMO_PORT:-8080}-:8080" \
  -device virtio-net-pci,netdev=n0
