#!/usr/bin/env bash
# Builds the UEFI disk image from a Unified Kernel Image: image/disk.sh UKI OUT.img OUT.qcow2
# Everything happens in image files (sgdisk, mkfs.fat, mtools, dd): no loop devices, no mounts, no root needed.
#
# Layout (GPT, 1 MiB aligned):
#   1  EFI system partition  FAT32  EFI/BOOT/BOOTX64.EFI = the UKI (what the firmware boots: the fallback path)
#   2  KEEL_A                FAT    keel.efi = the same UKI (boot slot A)
#   3  KEEL_B                FAT    empty    (boot slot B)
#   -  free space up to the end of the disk: the state volume storage creates on first boot.
# The slots are for A/B upgrades (README, "Upgrades"; image/upgrade-image.sh builds what goes in them): an upgrade writes the new UKI into the inactive slot, the
# firmware boots it once (BootNext), and the node keeps it only if it reaches ready; else the old slot still boots.
# Each slot is a whole-partition FAT image, so an upgrade writes and verifies it as one blob, and firmware can
# boot its keel.efi directly.
#
# From the environment (image/media.mk sets them): KEEL_DISK_SIZE (MiB), KEEL_ESP_SIZE, KEEL_SLOT_SIZE (MiB),
# KEEL_DISK_GUID, KEEL_ESP_GUID, KEEL_SLOT_A_GUID, KEEL_SLOT_B_GUID, KEEL_SLOT_TYPE (GPT type of the slots),
# SOURCE_DATE_EPOCH. Fixed GUIDs, volume ids and timestamps make two builds byte-identical.
set -euo pipefail

uki=${1:?usage: image/disk.sh UKI OUT.img OUT.qcow2}
img=${2:?}
qcow=${3:?}
disk_mib=${KEEL_DISK_SIZE:-1024}
esp_mib=${KEEL_ESP_SIZE:-64}
slot_mib=${KEEL_SLOT_SIZE:-64}
epoch=${SOURCE_DATE_EPOCH:-0}
# FAT cannot store times before 1980 (mtools, which reads SOURCE_DATE_EPOCH, would wrap them to 2098).
[ "$epoch" -lt 315532800 ] && epoch=315532800
export SOURCE_DATE_EPOCH=$epoch
need=$((1 + esp_mib + 2 * slot_mib + 1))
[ "$disk_mib" -ge "$need" ] || { echo "disk: KEEL_DISK_SIZE=$disk_mib MiB is too small (at least $need)" >&2; exit 1; }
uki_mib=$((($(stat -Lc %s "$uki") + 1048575) / 1048576))
[ "$uki_mib" -lt "$slot_mib" ] || { echo "disk: the UKI ($uki_mib MiB) does not fit a $slot_mib MiB slot" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export MTOOLS_SKIP_CHECK=1
cp "$uki" "$work/keel.efi"
touch -d "@$epoch" "$work/keel.efi"
uki=$work/keel.efi

. "$(dirname "${BASH_SOURCE[0]}")/fat.sh"

fat "$work/esp.img" "$esp_mib" KEEL-ESP 4b45454c 32
put "$work/esp.img" "$uki" /EFI/BOOT/BOOTX64.EFI /EFI /EFI/BOOT
fat "$work/a.img" "$slot_mib" KEEL_A 4b45454a 16
put "$work/a.img" "$uki" /keel.efi
fat "$work/b.img" "$slot_mib" KEEL_B 4b45454b 16

rm -f "$img.tmp"
truncate -s "${disk_mib}M" "$img.tmp"
sgdisk -a 2048 -U "${KEEL_DISK_GUID:?}" \
    -n "1:1M:+${esp_mib}M" -t 1:ef00 -c "1:EFI system partition" -u "1:${KEEL_ESP_GUID:?}" \
    -n "2:0:+${slot_mib}M" -t "2:${KEEL_SLOT_TYPE:?}" -c 2:KEEL_A -u "2:${KEEL_SLOT_A_GUID:?}" \
    -n "3:0:+${slot_mib}M" -t "3:${KEEL_SLOT_TYPE}" -c 3:KEEL_B -u "3:${KEEL_SLOT_B_GUID:?}" \
    "$img.tmp" >/dev/null
off=1
for part in esp a b; do
    dd if="$work/$part.img" of="$img.tmp" bs=1M seek="$off" conv=notrunc,sparse status=none
    case $part in esp) off=$((off + esp_mib)) ;; *) off=$((off + slot_mib)) ;; esac
done
mv -f "$img.tmp" "$img"
qemu-img convert -f raw -O qcow2 "$img" "$qcow.tmp"
mv -f "$qcow.tmp" "$qcow"
