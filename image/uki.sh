#!/usr/bin/env bash
# Builds a Unified Kernel Image: the systemd EFI stub with the kernel, initramfs, command line and os-release as
# PE sections, one file any UEFI firmware boots. image/uki.sh KERNEL INITRD CMDLINE VERSION OUT
#
# Debian 12 has no ukify, so this is the objcopy recipe: each section goes at its own virtual address, after the
# stub's last section and after the previous one, aligned to 4 KiB (a multiple of the stub's SectionAlignment).
# The stub finds the sections by name (.osrel .cmdline .linux .initrd). KEEL_EFI_STUB overrides the stub.
#
# With KEEL_SB_KEY and KEEL_SB_CERT (PEM key and certificate of a key in the firmware's db; `make` passes its
# development pair when none is given) the result is signed for UEFI Secure Boot with sbsign, and checked with
# sbverify. RSA PKCS#1 v1.5 signatures are deterministic, but sbsign puts the signing time into the signature:
# it runs under faketime at the build time (KEEL_BUILD_TIME, else SOURCE_DATE_EPOCH, else 1980-01-01), so a signed
# UKI is as byte-identical from build to build as an unsigned one (make reproducible checks it).
set -euo pipefail

kernel=${1:?usage: image/uki.sh KERNEL INITRD CMDLINE VERSION OUT}
initrd=${2:?}
cmdline=${3:?}
cmdline=${cmdline%"${cmdline##*[![:space:]]}"}
version=${4:?}
out=${5:?}
stub=${KEEL_EFI_STUB:-/usr/lib/systemd/boot/efi/linuxx64.efi.stub}
[ -f "$stub" ] || { echo "uki: missing $stub (apt-get install systemd-boot-efi)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'NAME=Keel\nID=keel\nVERSION_ID=%s\nPRETTY_NAME="Keel %s"\n' "$version" "$version" >"$work/os-release"
printf '%s' "$cmdline" >"$work/cmdline"

align=4096
# End of the stub's highest section (VMA + size), from `objdump -h` rows: idx name size vma lma off algn.
next=$(objdump -h "$stub" | awk '$1 ~ /^[0-9]+$/ { print $3, $4 }' | while read -r size vma; do
    echo $((16#$vma + 16#$size))
done | sort -n | tail -1)
args=()
add() { # add NAME FILE: place it at the next aligned address
    next=$(((next + align - 1) / align * align))
    args+=(--add-section "$1=$2" --change-section-vma "$1=$(printf '0x%x' "$next")")
    next=$((next + $(stat -Lc %s "$2")))
}
add .osrel "$work/os-release"
add .cmdline "$work/cmdline"
add .linux "$kernel"
add .initrd "$initrd"
objcopy "${args[@]}" "$stub" "$out.tmp"
# objcopy stamps the PE header with the current time (it ignores SOURCE_DATE_EPOCH for PE) and a checksum over
# it: set the time to SOURCE_DATE_EPOCH and the checksum to 0 (not computed; UEFI does not check it), so two
# builds are byte-identical.
le32() { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)))"; }
pe=$(od -An -t u4 -j 60 -N 4 "$out.tmp" | tr -d ' ')
le32 "${SOURCE_DATE_EPOCH:-0}" | dd of="$out.tmp" bs=1 seek=$((pe + 8)) conv=notrunc status=none
le32 0 | dd of="$out.tmp" bs=1 seek=$((pe + 24 + 64)) conv=notrunc status=none
if [ -n "${KEEL_SB_KEY:-}" ]; then
    [ -r "$KEEL_SB_KEY" ] && [ -r "${KEEL_SB_CERT:-}" ] || {
        echo "uki: KEEL_SB_KEY=$KEEL_SB_KEY and KEEL_SB_CERT=${KEEL_SB_CERT:-} must both be readable" >&2
        exit 1
    }
    sign_at=${KEEL_BUILD_TIME:-${SOURCE_DATE_EPOCH:-0}}
    [ "$sign_at" -gt 315532800 ] 2>/dev/null || sign_at=315532800
    faketime -f "$(date -u -d "@$sign_at" '+%Y-%m-%d %H:%M:%S')" \
        sbsign --key "$KEEL_SB_KEY" --cert "$KEEL_SB_CERT" --output "$out.signed" "$out.tmp" 2>"$work/sbsign.log" ||
        { cat "$work/sbsign.log" >&2; exit 1; }
    sbverify --cert "$KEEL_SB_CERT" "$out.signed" >"$work/sbverify.log" 2>&1 ||
        { cat "$work/sbverify.log" >&2; echo "uki: the signed UKI does not verify against $KEEL_SB_CERT" >&2; exit 1; }
    mv -f "$out.signed" "$out.tmp"
fi
mv -f "$out.tmp" "$out"
