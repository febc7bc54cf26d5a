# Boot media for machines without `-kernel`: a PXE directory and a UEFI disk image. Included by the Makefile;
# see README, "Boot media". Both are built from what `make image` makes and are checked by the e2e tests.

PXE_DIR   := $(BUILD)/pxe
UKI       := $(BUILD)/keel.efi
DISK_IMG  := $(BUILD)/keel.img
DISK_QCOW := $(BUILD)/keel.qcow2
# The image's version (in the UKI's .osrel, inside what Secure Boot and the slot signature cover): the node refuses
# to install an image older than the newest it committed. Defaults to the workspace version.
ifndef KEEL_VERSION
KEEL_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
endif

# The command line PXE and disk boots start from.
KEEL_CMDLINE ?= console=ttyS0 panic=-1
# PXE (image/boot-ipxe.sh explains each): KEEL_PXE_BASE (default tftp://${next-server}/), KEEL_PXE_CONFIG_URL,
# KEEL_PXE_IP, KEEL_PXE_APPEND. Disk: KEEL_DISK_APPEND, words added to the UKI's command line.
# These reach iPXE and the node exactly as written, ${...} included: make does not expand them. For example
#   make pxe KEEL_PXE_CONFIG_URL='http://cfg.example/nodes/${uuid}.toml'

# Disk layout (MiB) and fixed GUIDs, so two builds are byte-identical. The slot type is Keel's own.
KEEL_DISK_SIZE   ?= 1024
KEEL_ESP_SIZE    ?= 64
KEEL_SLOT_SIZE   ?= 64
KEEL_DISK_GUID   ?= 16d92c51-86ad-4306-8dea-ba2ae8110720
KEEL_ESP_GUID    ?= a40fb03b-cdc4-4993-9b93-2b91d7301e50
KEEL_SLOT_A_GUID ?= 2c5ba79e-43c4-45b9-8b69-a96cc15f475e
KEEL_SLOT_B_GUID ?= 94576414-4ecd-409a-b605-9c492ddd68cc
KEEL_SLOT_TYPE   ?= 8c94f5fd-5600-4e54-8f54-c52ce9fa74e8

# A variable's text as one shell word, unexpanded by make.
media_raw = '$(subst ','\'',$(value $(1)))'
PXE_VARS  = KEEL_CMDLINE=$(call media_raw,KEEL_CMDLINE) KEEL_PXE_BASE=$(call media_raw,KEEL_PXE_BASE) \
            KEEL_PXE_CONFIG_URL=$(call media_raw,KEEL_PXE_CONFIG_URL) KEEL_PXE_IP=$(call media_raw,KEEL_PXE_IP) \
            KEEL_PXE_APPEND=$(call media_raw,KEEL_PXE_APPEND)
DISK_VARS = KEEL_DISK_SIZE=$(KEEL_DISK_SIZE) KEEL_ESP_SIZE=$(KEEL_ESP_SIZE) KEEL_SLOT_SIZE=$(KEEL_SLOT_SIZE) \
            KEEL_DISK_GUID=$(KEEL_DISK_GUID) KEEL_ESP_GUID=$(KEEL_ESP_GUID) KEEL_SLOT_A_GUID=$(KEEL_SLOT_A_GUID) \
            KEEL_SLOT_B_GUID=$(KEEL_SLOT_B_GUID) KEEL_SLOT_TYPE=$(KEEL_SLOT_TYPE)
UKI_CMDLINE = $(call media_raw,KEEL_CMDLINE)' '$(call media_raw,KEEL_DISK_APPEND)

.PHONY: pxe uki disk upgrade-image media-reproducible

## pxe: build/pxe/ = keel.efi, the signed UKI that UEFI firmware fetches itself (PXE over TFTP, or HTTP boot)
## and verifies with Secure Boot; and for the legacy iPXE path (which trusts the network), vmlinuz,
## initramfs.cpio.zst and boot.ipxe, to serve over TFTP or HTTP.
pxe: image uki
	@rm -rf $(PXE_DIR) && mkdir -p $(PXE_DIR)
	@cp $(UKI) $(BUILD)/vmlinuz $(BUILD)/initramfs.cpio.zst $(PXE_DIR)/
	@$(PXE_VARS) image/boot-ipxe.sh $(PXE_DIR)/boot.ipxe
	@printf 'pxe:   %-28s %8s bytes\n' "keel.efi (UEFI, signed)" $$(stat -c %s $(PXE_DIR)/keel.efi) \
	  "iPXE: 3 files" $$(cat $(PXE_DIR)/vmlinuz $(PXE_DIR)/initramfs.cpio.zst $(PXE_DIR)/boot.ipxe | wc -c)

## uki: build/keel.efi, the Unified Kernel Image (systemd EFI stub + kernel + initramfs + command line).
uki: image
	@image/uki.sh $(BUILD)/vmlinuz $(BUILD)/initramfs.cpio.zst $(UKI_CMDLINE) $(KEEL_VERSION) $(UKI)

## disk: build/keel.img (raw, sparse) and build/keel.qcow2: GPT, ESP with the UKI, slots KEEL_A/KEEL_B, free space.
disk: uki
	@$(DISK_VARS) image/disk.sh $(UKI) $(DISK_IMG) $(DISK_QCOW)
	@printf 'disk:  %-28s %8s bytes\n' keel.efi $$(stat -c %s $(UKI)) \
	  "keel.img (apparent)" $$(stat -c %s $(DISK_IMG)) \
	  "keel.img (allocated)" $$(($$(stat -c %b $(DISK_IMG)) * $$(stat -c %B $(DISK_IMG)))) \
	  keel.qcow2 $$(stat -c %s $(DISK_QCOW))

## upgrade-image: build/keel-upgrade.img (a slot image: FAT holding the UKI as keel.efi) and its keel-image
## signature build/keel-upgrade.img.sig, for `keelctl upgrade` (README, "Upgrades").
UPGRADE_IMG := $(BUILD)/keel-upgrade.img
upgrade-image: uki
	@KEEL_VERSION=$(KEEL_VERSION) image/upgrade-image.sh $(UKI) $(UPGRADE_IMG)
	@rm -f $(UPGRADE_IMG).sig && ssh-keygen -q -Y sign -n keel-image -f $(KEEL_SIGNING_KEY) $(UPGRADE_IMG)
	@printf 'upgrade: %-26s %8s bytes\n' keel-upgrade.img $$(stat -c %s $(UPGRADE_IMG))

## media-reproducible: rebuilds the UKI and the disk images and fails unless they are byte-identical.
media-reproducible: disk upgrade-image
	@mkdir -p $(BUILD)/repro
	@image/uki.sh $(BUILD)/vmlinuz $(BUILD)/initramfs.cpio.zst $(UKI_CMDLINE) $(KEEL_VERSION) $(BUILD)/repro/keel.efi
	@$(DISK_VARS) image/disk.sh $(BUILD)/repro/keel.efi $(BUILD)/repro/keel.img $(BUILD)/repro/keel.qcow2
	@KEEL_VERSION=$(KEEL_VERSION) image/upgrade-image.sh $(BUILD)/repro/keel.efi $(BUILD)/repro/keel-upgrade.img
	@for f in keel.efi keel.img keel.qcow2 keel-upgrade.img; do cmp $(BUILD)/$$f $(BUILD)/repro/$$f; done
	@rm -f $(BUILD)/repro/keel.img $(BUILD)/repro/keel.qcow2 $(BUILD)/repro/keel-upgrade.img
	@echo "reproducible: UKI, keel.img, keel.qcow2 and keel-upgrade.img rebuilt byte-identical"

# The end-to-end tests boot these; `make reproducible` checks them too.
e2e bench: pxe disk upgrade-image
reproducible: media-reproducible
