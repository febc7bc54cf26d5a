#!/usr/bin/env bash
# Writes the iPXE script that network-boots a Keel node: image/boot-ipxe.sh OUT
#
# From the environment (what `make pxe` passes, unexpanded):
#   KEEL_PXE_BASE        where vmlinuz and initramfs.cpio.zst are served; default tftp://${next-server}/ (the TFTP
#                        server the DHCP answer names). ./ means "next to boot.ipxe, by the same protocol".
#   KEEL_PXE_CONFIG_URL  keel.config: the node's signed-config URL, with ${uuid}, ${mac}, ${hostname} as for the node.
#   KEEL_PXE_IP          ip= for the node (kernel syntax); iPXE settings such as ${ip} may be used on purpose.
#   KEEL_PXE_APPEND      more kernel command-line words.
#   KEEL_CMDLINE         the base command line (default: console=ttyS0 panic=-1).
#
# iPXE expands every ${name} in a command, repeatedly, and has no escape: a literal ${mac} can never reach the
# kernel. So the node's three variables are computed by iPXE here, to the exact text the node would substitute:
#   ${uuid}      -> the SMBIOS UUID as 32 lower-case hex digits, i.e. the node's machine id. iPXE's own ${uuid}
#                   has dashes and ${uuid:hexraw} is in raw SMBIOS byte order, so the bytes are read one by one
#                   and swapped as for SMBIOS >= 2.6, exactly as Linux does for /sys/class/dmi/id/product_uuid.
#   ${mac}       -> ${netX/mac}, the MAC of the NIC that booted, as aa:bb:cc:dd:ee:ff (the node uses its first NIC:
#                   the same on a machine with one NIC).
#   ${hostname}  -> DHCP's host name, else keel-<first 8 hex digits of the machine id>: the node's name before it
#                   has any config.
# Any other ${name} is an iPXE setting (${serial}, ${asset}, ${net0/ip}, ...) and iPXE expands it.
set -euo pipefail

out=${1:?usage: image/boot-ipxe.sh OUT}
base=${KEEL_PXE_BASE:-'tftp://${next-server}/'}
url=${KEEL_PXE_CONFIG_URL:-}
ip=${KEEL_PXE_IP:-}
append=${KEEL_PXE_APPEND:-}
cmdline=${KEEL_CMDLINE:-console=ttyS0 panic=-1}

fail() {
    echo "pxe: $*" >&2
    exit 1
}
case "$base" in */) ;; *) base="$base/" ;; esac
if [ -n "$url" ]; then
    case "$url" in http://*) ;; *) fail "KEEL_PXE_CONFIG_URL must be an http:// URL (the node pulls it), not '$url'" ;; esac
    case "$url" in *[[:space:]]*) fail "KEEL_PXE_CONFIG_URL must not contain spaces: it is one kernel command-line word" ;; esac
fi
case "$ip" in *[[:space:]]*) fail "KEEL_PXE_IP must not contain spaces" ;; esac

# SMBIOS type 1, offset 8: the 16 UUID bytes. ${smbios/1.OFFSET.LENGTH:hexraw} reads them without iPXE's swap.
byte() { printf '${smbios/1.%d.1:hexraw}' "$1"; }
id8="$(byte 11)$(byte 10)$(byte 9)$(byte 8)"
uuid_hex="${id8}$(byte 13)$(byte 12)$(byte 15)$(byte 14)\${smbios/1.16.8:hexraw}"

url=${url//'${uuid}'/'${keel_uuid}'}
url=${url//'${mac}'/'${netX/mac}'}
url=${url//'${hostname}'/'${keel_hostname}'}

words="$cmdline"
[ -n "$ip" ] && words="$words ip=$ip"
[ -n "$url" ] && words="$words keel.config=$url"
[ -n "$append" ] && words="$words $append"

{
    echo '#!ipxe'
    echo '# Keel network boot, written by `make pxe` (image/boot-ipxe.sh): serve this directory over TFTP or HTTP.'
    # The ROM that fetched this script has usually configured the NIC already: asking DHCP again costs ~3 s.
    echo 'isset ${netX/ip} || dhcp'
    if [[ "$words" == *'${keel_uuid}'* ]]; then
        echo '# The node'"'"'s machine id: the SMBIOS UUID as 32 hex digits, in the byte order Linux reads it.'
        echo "set keel_uuid $uuid_hex"
    fi
    if [[ "$words" == *'${keel_hostname}'* ]]; then
        echo '# The node'"'"'s host name before any config: DHCP'"'"'s, else keel-<first 8 hex digits of the machine id>.'
        echo "isset \${hostname} && set keel_hostname \${hostname} || set keel_hostname keel-$id8"
    fi
    # initrd= lets the kernel's EFI stub find the initramfs when a UEFI iPXE boots it; a BIOS boot ignores it.
    echo "kernel ${base}vmlinuz $words initrd=initramfs.cpio.zst"
    echo "initrd ${base}initramfs.cpio.zst"
    echo 'boot'
} >"$out.tmp"
mv -f "$out.tmp" "$out"
