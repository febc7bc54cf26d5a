#!/usr/bin/env bash
# Builds a slot image for an A/B upgrade: image/upgrade-image.sh UKI OUT.img
# A FAT file system just big enough for the UKI, holding it as \keel.efi: the same content as slot A of
# `make disk`. The node writes it raw over its inactive slot partition (KEEL_A or KEEL_B), so it needs no FAT code
# of its own, and the firmware boots \keel.efi from it. Sign it for the `keel-image` namespace (make upgrade-image
# does: OUT.img.sig) and send it with `keelctl upgrade OUT.img --node HOST`.
set -euo pipefail

uki=${1:?usage: image/upgrade-image.sh UKI OUT.img}
out=${2:?}
epoch=${SOURCE_DATE_EPOCH:-0}
# FAT cannot store times before 1980 (mtools, which reads SOURCE_DATE_EPOCH, would wrap them to 2098).
[ "$epoch" -lt 315532800 ] && epoch=315532800
export SOURCE_DATE_EPOCH=$epoch MTOOLS_SKIP_CHECK=1
. "$(dirname "${BASH_SOURCE[0]}")/fat.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$uki" "$work/keel.efi"
touch -d "@$epoch" "$work/keel.efi"
# The UKI, one more MiB for FAT's own tables and directory, and at least 16 MiB (mkfs.fat's smallest FAT16 with
# its default cluster size).
mib=$((($(stat -Lc %s "$uki") + 1048575) / 1048576 + 1))
[ "$mib" -ge 16 ] || mib=16
# KEEL_SLOT_IMAGE_MIB makes it bigger (at most the 64 MiB slot), e.g. to leave the UKI room to grow in place.
[ "${KEEL_SLOT_IMAGE_MIB:-0}" -gt "$mib" ] && mib=$KEEL_SLOT_IMAGE_MIB
fat "$work/slot.img" "$mib" KEEL_SLOT 4b45454c 16
put "$work/slot.img" "$work/keel.efi" /keel.efi
# The slot manifest: 4 KiB after the FAT (which the firmware reads alone), inside what the keel-image signature
# covers: the image's version, so the node can refuse an older image (init/src/upgrade/manifest.rs).
version=${KEEL_VERSION:?upgrade-image: KEEL_VERSION (the image version) is not set}
{ printf 'keel-slot-manifest 1\nversion=%s\n' "$version"; head -c 4096 /dev/zero; } | head -c 4096 >>"$work/slot.img"
mv -f "$work/slot.img" "$out"
