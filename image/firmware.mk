# Firmware and microcode (included by the top Makefile): what the kernel's built-in drivers declare, from Debian's
# firmware packages, into the initramfs under /lib/firmware; CPU microcode as an early cpio ahead of it.
# KEEL_FIRMWARE=auto|none|LIST and KEEL_MICROCODE=auto|none: image/firmware.sh explains each.
KEEL_FIRMWARE  ?= auto
KEEL_MICROCODE ?= none
FIRMWARE_DIR   := $(BUILD)/firmware
MICROCODE_CPIO := $(BUILD)/microcode.cpio
IMAGE_VARS     += KEEL_FIRMWARE_MANIFEST=$(FIRMWARE_DIR)/firmware.manifest

# The firmware packages are in tools.txt; they are in Debian's non-free-firmware component, which make setup
# adds to apt's sources when no source names it.

.PHONY: firmware

## firmware: build/firmware/firmware.manifest (the blobs the image carries) and build/microcode.cpio.
firmware: kernel init
	@KEEL_FIRMWARE='$(KEEL_FIRMWARE)' KEEL_MICROCODE='$(KEEL_MICROCODE)' \
	  image/firmware.sh $(BUILD)/vmlinuz-$(KEEL_KERNEL).modinfo $(FIRMWARE_DIR) | sed 's/^/image: /'
	@if grep -q '^file' $(FIRMWARE_DIR)/microcode.manifest; then \
	  $(MKIMAGE) $(FIRMWARE_DIR)/microcode.manifest $(MICROCODE_CPIO) >/dev/null; \
	else : > $(MICROCODE_CPIO); fi

image reproducible: firmware
