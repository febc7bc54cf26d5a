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
## several levels, xz), booted BENCH_RUNS times each (default 3) on a kernel with every CONFIG_RD_* decompressor
## (built incrementally in build/compress/ from the kernel's objects): bytes against the kernel's unpack time.
COMPRESS_DIR := $(BUILD)/compress
RD_ALL       := CONFIG_RD_GZIP=y CONFIG_RD_LZ4=y CONFIG_RD_XZ=y CONFIG_RD_ZSTD=y
.PHONY: compress-bench
compress-bench: image
	@mkdir -p $(COMPRESS_DIR)/kernel-config
	@cp kernel-config/build.sh kernel-config/keel.config $(COMPRESS_DIR)/kernel-config/
	@printf '%s\n' '# make compress-bench: every initramfs decompressor' $(RD_ALL) \
	  >> $(COMPRESS_DIR)/kernel-config/keel.config
	@[ -e $(COMPRESS_DIR)/linux-src ] || ln -s ../linux-src $(COMPRESS_DIR)/linux-src
	@[ -d $(COMPRESS_DIR)/kernel-obj ] || cp -a $(BUILD)/kernel-obj $(COMPRESS_DIR)/kernel-obj
	@$(COMPRESS_DIR)/kernel-config/build.sh $(COMPRESS_DIR)
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
