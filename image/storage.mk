# Storage (included by the top Makefile): mke2fs and e2fsck in the image as static musl programs built from
# Debian's e2fsprogs source (image/e2fsprogs-static.sh), the packages they and the storage tests need, and the
# root loop-device tests in `make test`.

# e2fsprogs: the host's mke2fs/e2fsck for the tests; gdisk: sgdisk checks our GPT writer byte for byte;
# fdisk: sfdisk makes the msdos table of the never-destroy test. dpkg-dev (dpkg-source) unpacks the e2fsprogs
# source package; readelf (binutils) checks the result is static. All are listed in tools.txt.

STORAGE_MANIFEST := $(BUILD)/storage.manifest
IMAGE_VARS       += KEEL_STORAGE_MANIFEST=$(STORAGE_MANIFEST)

.PHONY: storage-manifest setup-src loop

## setup-src: Debian's source index (deb-src), which `apt-get source e2fsprogs` needs; added only when the machine
## has none for deb.debian.org, beside the machine's own sources, in /etc/apt/sources.list.d/keel-deb-src.sources.
DEB_SRC_LIST := /etc/apt/sources.list.d/keel-deb-src.sources
setup-src: setup
	@if ! apt-cache showsrc e2fsprogs 2>/dev/null | grep -q '^Version:'; then \
	  if ! grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then \
	    echo "setup: adding Debian's source index ($(DEB_SRC_LIST)) for e2fsprogs"; \
	    printf '%s\n' '# Added by Keel (make setup-src): source packages, to build e2fsprogs static for the image.' \
	      'Types: deb-src' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm bookworm-updates' \
	      'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' > $(DEB_SRC_LIST); \
	  fi; \
	  apt-get update -qq; \
	fi

# Regenerated on every image build (cheap once built): mke2fs and e2fsck, static musl, cached under build/.
storage-manifest: setup-src
	@mkdir -p $(BUILD)
	@image/e2fsprogs-static.sh $(BUILD) > $(STORAGE_MANIFEST).tmp 2> $(BUILD)/storage.summary || \
	  { cat $(BUILD)/storage.summary; exit 1; }
	@if ! cmp -s $(STORAGE_MANIFEST).tmp $(STORAGE_MANIFEST); then mv $(STORAGE_MANIFEST).tmp $(STORAGE_MANIFEST); \
	  else rm -f $(STORAGE_MANIFEST).tmp; fi
	@sed 's/^e2fsprogs:/image: storage tools/' $(BUILD)/storage.summary

image reproducible: storage-manifest

## loop: root tests against file-backed loop devices (partition, format, fsck, state volume, never destroy).
loop: setup
	@$(CARGO) test -p keel-init -- --ignored root_loop_

test: loop
