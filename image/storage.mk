# Storage (included by the top Makefile): mke2fs and e2fsck in the image with exactly the shared libraries they
# load, the packages they and the storage tests need, and the root loop-device tests in `make test`.

# e2fsprogs: mke2fs/e2fsck for the image (and the tests); gdisk: sgdisk checks our GPT writer byte for byte;
# fdisk: sfdisk makes the msdos table of the never-destroy test.

STORAGE_TOOLS    := /usr/sbin/mke2fs /usr/sbin/e2fsck
STORAGE_MANIFEST := $(BUILD)/storage.manifest
IMAGE_VARS       += KEEL_STORAGE_MANIFEST=$(STORAGE_MANIFEST)

.PHONY: storage-manifest loop

# Regenerated on every image build (cheap): it follows whatever e2fsprogs and libc the build host has.
storage-manifest: setup
	@mkdir -p $(BUILD)
	@image/bundle-elf.sh $(STORAGE_TOOLS) > $(STORAGE_MANIFEST).tmp 2> $(BUILD)/storage.summary
	@if ! cmp -s $(STORAGE_MANIFEST).tmp $(STORAGE_MANIFEST); then mv $(STORAGE_MANIFEST).tmp $(STORAGE_MANIFEST); \
	  else rm -f $(STORAGE_MANIFEST).tmp; fi
	@sed 's/^bundle-elf/image: storage tools/' $(BUILD)/storage.summary

image reproducible: storage-manifest

## loop: root tests against file-backed loop devices (partition, format, fsck, state volume, never destroy).
loop: setup
	@$(CARGO) test -p keel-init -- --ignored root_loop_

test: loop
