# Benchmarks' own images (included by the top Makefile). README, "Benchmarks".

# busybox-static (tools.txt): the side-by-side peer's whole userspace (Debian's `busybox` is dynamic and fails as an init).

PEER_DIR := $(BUILD)/peer
.PHONY: peer

## peer: build/peer/initramfs.cpio.zst, the side-by-side peer of `make bench` (BENCH_ONLY=side): Debian's
## busybox-static and a sh script init (image/peer/), compressed as Keel's initramfs is.
peer: init
	@mkdir -p $(PEER_DIR)
	@PEER_BUSYBOX=/bin/busybox PEER_DIR=image/peer $(MKIMAGE) image/peer/peer.manifest $(PEER_DIR)/initramfs.cpio \
	  >/dev/null
	@$(INITRAMFS_COMPRESS) < $(PEER_DIR)/initramfs.cpio > $(PEER_DIR)/initramfs.cpio.zst
	@printf 'peer:  %-28s %8s bytes\n' peer/initramfs.cpio.zst $$(stat -c %s $(PEER_DIR)/initramfs.cpio.zst)

# lz4 and xz-utils: the compressors `make compress-bench` compares zstd with.

## compress-bench: the production initramfs compressed every way the kernel can unpack (none, gzip, lz4, zstd at
## several levels, xz), booted BENCH_RUNS times each (default 3): bytes against the kernel's unpack time. Keel's
## kernel already has every CONFIG_RD_* (tinyconfig + BLK_DEV_INITRD turns them all on), so it boots them all.
COMPRESS_DIR := $(BUILD)/compress
.PHONY: compress-bench
compress-bench: image
	@mkdir -p $(COMPRESS_DIR)
	@for rd in GZIP LZ4 XZ ZSTD; do grep -qx "CONFIG_RD_$$rd=y" $(BUILD)/kernel-*/config || \
	  { echo "compress-bench: the kernel lacks CONFIG_RD_$$rd"; exit 1; }; done
	@cp $(BUILD)/vmlinuz $(COMPRESS_DIR)/vmlinuz
	@in=$(BUILD)/initramfs.cpio; out=$(COMPRESS_DIR)/initramfs.cpio; \
	  cp $$in $$out.none; \
	  gzip -9 -n -c $$in > $$out.gzip9; \
	  lz4 -q -l -12 -c $$in > $$out.lz4hc; \
	  zstd -q -3 -c $$in > $$out.zstd3; \
	  zstd -q -9 -c $$in > $$out.zstd9; \
	  zstd -q -19 -c $$in > $$out.zstd19; \
	  zstd -q --ultra -22 -c $$in > $$out.zstd22; \
	  xz -q --check=crc32 --x86 --lzma2=preset=9e -c $$in > $$out.xz
	@KEEL_BUILD_DIR=$(abspath $(COMPRESS_DIR)) BENCH_ONLY=compress \
	  $(CARGO) run --quiet --release -p keel-e2e --bin keel-bench -- $${BENCH_RUNS:-3}

## init-size: what each crate costs in keel-init: `cargo bloat --crates` (crates.io's cargo-bloat, installed by
## make setup from tools.txt) on an unstripped copy of the release build in its own target dir, then `make api-size`. With LTO a
## function inlined into another crate's counts there, so the figures are close, not exact.
INIT_SIZE_DIR := target/init-size
.PHONY: init-size
init-size: init
	@CARGO_PROFILE_IMAGE_STRIP=false $(CARGO) bloat --quiet --profile image --target $(TARGET) -p keel-init --bin keel-init \
	  --crates -n 30 --target-dir $(INIT_SIZE_DIR) 2>/dev/null | sed 's/^/init-size: /'
	@$(MAKE) --no-print-directory api-size

## virt-image: build/virt/{vmlinuz,initramfs.cpio.zst}: the `virt` kernel (QEMU and clouds) and the initramfs it
## ships with: the same image, with only the firmware the virt kernel's drivers declare (none today). The pair the
## size target (kernel + initramfs <= 5 MiB) is about; `make bench` measures it beside the metal pair.
VIRT_DIR := $(BUILD)/virt
VIRT_FIRMWARE := KEEL_FIRMWARE_MANIFEST=$(VIRT_DIR)/firmware/firmware.manifest
.PHONY: virt-image
virt-image: image
	@kernel-config/build.sh $(BUILD) virt >/dev/null
	@mkdir -p $(VIRT_DIR)
	@KEEL_FIRMWARE='$(KEEL_FIRMWARE)' KEEL_MICROCODE=none \
	  image/firmware.sh $(BUILD)/vmlinuz-virt.modinfo $(VIRT_DIR)/firmware >/dev/null
	@$(call root_initramfs,$(VIRT_DIR)/initramfs.cpio,$(VIRT_DIR)/initramfs.cpio.zst,$(VIRT_FIRMWARE))
	@cp -f $(BUILD)/vmlinuz-virt $(VIRT_DIR)/vmlinuz
	@printf 'virt:  %-28s %8s bytes\n' vmlinuz $$(stat -c %s $(VIRT_DIR)/vmlinuz) \
	  initramfs.cpio.zst $$(stat -c %s $(VIRT_DIR)/initramfs.cpio.zst)
