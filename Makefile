# Keel. The two commands that matter: `make run` and `make test` (see README.md).
# Both install what they need on a fresh Debian 12 machine first (as root), idempotently and quietly.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := run

BUILD    := build
TARGET   := x86_64-unknown-linux-musl
RELEASE  := target/$(TARGET)/image
MKIMAGE  := target/release/keel-mkimage
CARGO    := $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)
RUSTUP   := $(shell command -v rustup 2>/dev/null || echo $(HOME)/.cargo/bin/rustup)
# Fixed timestamps make the image reproducible: two builds are byte-identical.
export SOURCE_DATE_EPOCH ?= 0
# Crates that compile C for musl find a compiler without musl-tools' wrapper too.
export CC_x86_64_unknown_linux_musl ?= musl-gcc

# Signing: the image trusts KEEL_ALLOWED_SIGNERS and boots KEEL_DEFAULT_CONFIG signed with KEEL_SIGNING_KEY (or
# with the ready signature KEEL_DEFAULT_SIG). Without them, a development key is made once in build/keys/.
KEYS                 := $(BUILD)/keys
KEEL_SIGNING_KEY     ?= $(KEYS)/dev_ed25519
KEEL_ALLOWED_SIGNERS ?= $(KEYS)/allowed_signers
KEEL_DEFAULT_CONFIG  ?= image/default-node.toml
KEEL_DEFAULT_SIG     ?= $(BUILD)/default.toml.sig
export KEEL_SIGNING_KEY KEEL_ALLOWED_SIGNERS

# What `make setup` installs: every package tools.txt names (tools.txt lists each external program the build, the
# scripts and the tests start; `make lint` checks that list against the code). Makefile fragments may add more.
TOOLS_FROM    = $(shell sed -n 's/^[^\#][^ ]*  *$(1):\([^ ]*\).*/\1/p' tools.txt | sort -u)
APT_PACKAGES := $(call TOOLS_FROM,apt)
PIP_PACKAGES := $(call TOOLS_FROM,pip)
CARGO_TOOLS  := $(call TOOLS_FROM,cargo)

.PHONY: setup keys kernel init image reproducible run test unit lint e2e netns bench fleet-bench clean fuzz fuzz-setup fuzz-ci api-size \
  hardware-doc hardware-doc-check

## setup: apt packages, PyPI tools, cargo tools and the musl target from tools.txt; quiet when all are there.
## Firmware packages live in Debian's non-free-firmware component: added to apt's sources if none names it.
setup:
	@if ! grep -rqs '^[^#]*non-free-firmware' /etc/apt/sources.list /etc/apt/sources.list.d/; then \
	  echo "setup: adding Debian's non-free-firmware component (/etc/apt/sources.list.d/keel-firmware.sources)"; \
	  cp image/keel-firmware.sources /etc/apt/sources.list.d/keel-firmware.sources; \
	fi
	@# Two rounds: installing one package can remove another that was installed (a fresh machine of this kind has
	@# qemu-utils 10 from backports, which bookworm's qemu-system-x86 7.2 replaces); the second round puts it back.
	@export DEBIAN_FRONTEND=noninteractive; updated=; \
	for round in 1 2 3; do \
	  missing=$$(for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	  [ -n "$$missing" ] || break; \
	  if [ $$round = 3 ]; then echo "setup: apt-get did not install (or removed again):" $$missing >&2; exit 1; fi; \
	  echo "setup: installing" $$missing; \
	  [ -n "$$updated" ] || { apt-get update -qq && updated=1; } || exit 1; \
	  apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	done
	@for p in $(PIP_PACKAGES); do \
	  /usr/bin/python3 -m pip show -q $$p >/dev/null 2>&1 || { echo "setup: installing $$p (PyPI)"; \
	    /usr/bin/python3 -m pip install -q --root-user-action=ignore --break-system-packages $$p; }; done
	@$(RUSTUP) target list --installed | grep -qx $(TARGET) || $(RUSTUP) target add $(TARGET)
	@$(SB_TOOLS_INSTALL)
	@for t in $(CARGO_TOOLS); do \
	  test -x $(HOME)/.cargo/bin/$$t || command -v $$t >/dev/null || { echo "setup: installing $$t (cargo)"; \
	    $(CARGO) install --quiet --locked $$t; }; done

## kernel: build/vmlinuz from Debian's linux-source-6.12: KEEL_KERNEL=metal (default: keel.config + metal.config,
## real servers) or virt (keel.config: QEMU/cloud only). Cached by config hash, also per user (kernel-config/build.sh).
KEEL_KERNEL ?= metal
kernel: setup
	@kernel-config/build.sh $(BUILD) $(KEEL_KERNEL)
	@cmp -s $(BUILD)/vmlinuz-$(KEEL_KERNEL) $(BUILD)/vmlinuz || cp -f $(BUILD)/vmlinuz-$(KEEL_KERNEL) $(BUILD)/vmlinuz

## init: the static PID 1 (the demo workload is part of it), the test helper, and the image writer; built once per run.
init: setup
	@$(CARGO) build --quiet --profile image --target $(TARGET) -p keel-init -p keel-testhelper
	@$(CARGO) build --quiet --release -p keel-mkimage

## keys: the development signing key and the allowed_signers that trusts it (only when none is given).
$(KEYS)/dev_ed25519:
	@mkdir -p $(KEYS)
	@ssh-keygen -q -t ed25519 -N '' -C keel-dev -f $@
	@echo "keys: made a development signing key $@ (trusted by images built here; not for production)"

$(KEYS)/allowed_signers: $(KEYS)/dev_ed25519
	@echo "keel-dev namespaces=\"keel-config,keel-command,keel-image\" $$(cat $<.pub)" > $@

keys: setup $(KEEL_ALLOWED_SIGNERS) $(if $(filter $(KEYS)/%,$(KEEL_SIGNING_KEY)),$(KEEL_SIGNING_KEY))

$(BUILD)/default.toml.sig: $(KEEL_DEFAULT_CONFIG) $(KEEL_SIGNING_KEY)
	@cp $(KEEL_DEFAULT_CONFIG) $(BUILD)/default.toml && rm -f $@
	@ssh-keygen -q -Y sign -n keel-config -f $(KEEL_SIGNING_KEY) $(BUILD)/default.toml

# How the initramfs is compressed (the kernel needs the matching CONFIG_RD_*): measured by `make compress-bench`.
INITRAMFS_COMPRESS := zstd -q -19 -c

## image: build/vmlinuz, build/initramfs.cpio.zst, and build/initramfs-test.cpio.zst (= production + test helper).
IMAGE_VARS = KEEL_INIT=$(RELEASE)/keel-init KEEL_ALLOWED_SIGNERS=$(KEEL_ALLOWED_SIGNERS) \
             KEEL_DEFAULT_CONFIG=$(KEEL_DEFAULT_CONFIG) KEEL_DEFAULT_SIG=$(KEEL_DEFAULT_SIG)
# $(call root_initramfs,CPIO,ZST[,VARS]): the production root (image/initramfs.manifest) as CPIO and compressed as
# ZST; VARS go after IMAGE_VARS and override them (virt-image: the virt kernel's firmware manifest).
root_initramfs = $(IMAGE_VARS) $(3) $(MKIMAGE) image/initramfs.manifest $(1) >/dev/null && \
  $(INITRAMFS_COMPRESS) < $(1) > $(2)

image: kernel init keys $(KEEL_DEFAULT_SIG)
	@$(call root_initramfs,$(BUILD)/initramfs.cpio,$(BUILD)/initramfs-root.cpio.zst)
	@cat $(MICROCODE_CPIO) $(BUILD)/initramfs-root.cpio.zst > $(BUILD)/initramfs.cpio.zst
	@KEEL_TESTHELPER=$(RELEASE)/keel-testhelper $(MKIMAGE) image/initramfs-test.manifest $(BUILD)/test-extra.cpio >/dev/null
	@$(INITRAMFS_COMPRESS) < $(BUILD)/test-extra.cpio > $(BUILD)/test-extra.cpio.zst
	@cat $(BUILD)/initramfs.cpio.zst $(BUILD)/test-extra.cpio.zst > $(BUILD)/initramfs-test.cpio.zst
	@printf 'image: %-28s %8s bytes\n' "vmlinuz ($(KEEL_KERNEL))" $$(stat -c %s $(BUILD)/vmlinuz) \
	  "microcode.cpio (early)" $$(stat -c %s $(MICROCODE_CPIO)) \
	  "initramfs-root.cpio.zst" $$(stat -c %s $(BUILD)/initramfs-root.cpio.zst) \
	  initramfs.cpio.zst $$(stat -c %s $(BUILD)/initramfs.cpio.zst) \
	  initramfs-test.cpio.zst $$(stat -c %s $(BUILD)/initramfs-test.cpio.zst) \
	  "init (static musl, + demo)" $$(stat -c %s $(RELEASE)/keel-init)

## reproducible: rebuilds the initramfs from the same inputs and fails unless it is byte-identical.
reproducible: image
	@mkdir -p $(BUILD)/repro
	@$(call root_initramfs,$(BUILD)/repro/initramfs.cpio,$(BUILD)/repro/initramfs-root.cpio.zst)
	@$(MKIMAGE) $(FIRMWARE_DIR)/microcode.manifest $(BUILD)/repro/microcode.cpio >/dev/null
	@if [ -s $(MICROCODE_CPIO) ]; then cmp $(MICROCODE_CPIO) $(BUILD)/repro/microcode.cpio; fi
	@cmp $(BUILD)/initramfs-root.cpio.zst $(BUILD)/repro/initramfs-root.cpio.zst && echo "reproducible: initramfs rebuilt byte-identical"

## run: boot a node in QEMU on the serial console (Ctrl-A X exits).
run: image
	@qemu/run.sh $(BUILD)

## lint: formatting, clippy, one version of each dependency, and tools.txt against the programs the code starts.
lint: setup tools-check
	@$(CARGO) fmt --all -- --check
	@$(CARGO) clippy --quiet --workspace --all-targets -- -D warnings
	@test -z "$$($(CARGO) tree --workspace -d --edges normal,build 2>/dev/null | grep -v '^$$')" || \
	  { echo "lint: duplicate dependency versions:"; $(CARGO) tree --workspace -d; exit 1; }

## unit: unit tests, plus keel-config's and keelctl's integration tests (schema up to date, ssh-keygen interop).
unit: setup
	@$(CARGO) test --workspace --lib --bins
	@$(CARGO) test -p keel-config -p keelctl --test '*'

## e2e: boots VMs (at most two at once) against the built images.
# The tests run in tests/e2e/: the Secure Boot key paths they hand to image/uki.sh (the upgrade tests build UKIs
# of their own) must not be relative to the repository root.
e2e: image
	@$(CARGO) build --quiet -p keelctl
	@KEEL_SB_KEY=$(abspath $(KEEL_SB_KEY)) KEEL_SB_CERT=$(abspath $(KEEL_SB_CERT)) \
	  $(CARGO) test -p keel-e2e --tests -- --test-threads=2

## hardware-doc: docs/hardware.md from the built metal kernel's config (kernel-config/hardware-doc.sh); run it
## when kernel-config/ changes. hardware-doc-check (part of `make test`) fails when the page differs from it.
hardware-doc: setup
	@kernel-config/build.sh $(BUILD) metal >/dev/null
	@kernel-config/hardware-doc.sh $(BUILD) > docs/hardware.md.tmp && mv docs/hardware.md.tmp docs/hardware.md
	@echo "hardware-doc: wrote docs/hardware.md"

hardware-doc-check: setup
	@kernel-config/build.sh $(BUILD) metal >/dev/null
	@kernel-config/hardware-doc.sh $(BUILD) | diff -u docs/hardware.md - || \
	  { echo "hardware-doc-check: docs/hardware.md is not what kernel-config/hardware-doc.sh makes: run make hardware-doc"; exit 1; }
	@echo "hardware-doc-check: docs/hardware.md matches the metal kernel's config"

## netns: root tests against a real dnsmasq in throwaway network namespaces (~2 min: real lease timers).
netns: setup
	@$(CARGO) test -p keel-init -- --ignored root_netns_dhcp

## test: set-up, lint, unit tests, reproducibility, the hardware page against the kernel config, the QEMU end-to-end
## tests, then the DHCP netns test.
test: setup lint unit reproducible hardware-doc-check e2e netns fuzz-ci

## bench: netlink convergence in a netns, then boots N times per network mode (BENCH_RUNS, default 5): medians vs targets;
## then both kernel flavours (the virt one is built, once, for this): sizes and boot to ready.
## BENCH_ONLY=boot|services|api|side|flavours|media|oci|fleet runs only that section (boot: the boot table; with
## KEEL_BUILD_DIR=<dir> it measures another build, for before/after) (side: Keel vs the busybox peer, image/bench.mk;
## fleet: the node's pull client for BENCH_FLEET_NODES=10000 simulated nodes against one nginx origin, docs/fleet.md).
bench: image peer virt-image
	@if [ -z "$${BENCH_ONLY:-}" ]; then \
	  $(CARGO) test --quiet --release -p keel-init root_netns_bench -- --ignored --nocapture 2>&1 | grep '^net bench'; \
	  $(MAKE) --no-print-directory api-size; \
	fi
	@if [ -z "$${BENCH_ONLY:-}" ] || [ "$${BENCH_ONLY}" = fleet ]; then $(MAKE) --no-print-directory fleet-bench; fi
	@[ "$${BENCH_ONLY:-}" = fleet ] || $(CARGO) run --quiet --release -p keel-e2e --bin keel-bench -- $${BENCH_RUNS:-5}

## fleet-bench: the fleet pull, measured (init/src/config/fleet_bench.rs): one simulated hour, real HTTP to nginx.
fleet-bench:
	@$(CARGO) test --quiet --release -p keel-init fleet_bench -- --ignored --nocapture 2>&1 | grep -E '^fleet|panicked|assert'

## api-size: keel-init without the node API (feature `api` off; its own target dir) beside the shipped one, so
## the bytes the API and its TLS add are measured, not estimated. LTO drops every crate only the API uses.
API_SIZE_DIR := target/api-size
api-size: init
	@RUSTFLAGS="-A warnings" $(CARGO) build --quiet --profile image --target $(TARGET) -p keel-init --no-default-features \
	  --target-dir $(API_SIZE_DIR)
	@with=$$(stat -c %s $(RELEASE)/keel-init); without=$$(stat -c %s $(API_SIZE_DIR)/$(TARGET)/image/keel-init); \
	  printf 'api-size: keel-init %s bytes, without the API %s bytes: the API + TLS add %s bytes\n' \
	    $$with $$without $$((with - without))

## fuzz: every cargo-fuzz target in fuzz/ (its own workspace) for FUZZ_SECONDS each (default 20), from
## the seeds in fuzz/seeds/; a crash stops it and leaves the input in fuzz/artifacts/<target>/. README.md, "Fuzzing".
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := config_parse sshsig_parse command_parse api_request credential_parse dhcp_decode ipv4_udp_parse sntp_reply oci_reference oci_manifest oci_tar oci_www_authenticate gpt_parse efi_load_option http_response
FUZZ_DIR     := $(CURDIR)/target/fuzz
# cargo-fuzz passes -Z flags (sanitizer, coverage): the machine's one toolchain is stable and no other can be
# fetched, so it is told to accept them.
FUZZ_CARGO   := RUSTC_BOOTSTRAP=1 $(CARGO)
fuzz-setup: setup

fuzz: fuzz-setup
	@cd fuzz && $(FUZZ_CARGO) fuzz build --debug-assertions --target-dir $(FUZZ_DIR)/build
	@cd fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t; \
	  if $(FUZZ_CARGO) fuzz run --debug-assertions --target-dir $(FUZZ_DIR)/build $$t \
	       $(FUZZ_DIR)/corpus/$$t seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
	       -print_final_stats=1 >$(FUZZ_DIR)/$$t.log 2>&1; then \
	    printf 'fuzz: %-14s %9s runs in %s s, corpus %s inputs\n' $$t \
	      "$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_DIR)/$$t.log)" $(FUZZ_SECONDS) \
	      "$$(ls $(FUZZ_DIR)/corpus/$$t | wc -l)"; \
	  else \
	    tail -40 $(FUZZ_DIR)/$$t.log; echo "fuzz: $$t failed (log $(FUZZ_DIR)/$$t.log; input in fuzz/artifacts/$$t/)"; \
	    exit 1; \
	  fi; \
	done

## fuzz-ci: the short fuzz run `make test` does: every target for FUZZ_CI_SECONDS (default 10) each.
FUZZ_CI_SECONDS ?= 10
fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_CI_SECONDS)

## tools-check: every program started by a recipe, a script or a test is in tools.txt, and every one listed is
## installed; then proves the check can fail: a probe that starts an unlisted program must be named by file.
.PHONY: tools-check
tools-check: setup
	@perl tools-check.pl --installed
	@probe=$$(mktemp -d); trap 'rm -rf "$$probe"' EXIT; mkdir -p "$$probe/tests"; cp tools.txt "$$probe/"; \
	  echo 'fn f() { std::process::Command::new("definitely-not-installed"); }' > "$$probe/tests/probe.rs"; \
	  if (cd "$$probe" && perl $(CURDIR)/tools-check.pl) >/dev/null 2>"$$probe/err"; then \
	    echo "tools-check: an unlisted program went unnoticed"; exit 1; fi; \
	  grep -q "tests/probe.rs:1: starts 'definitely-not-installed'" "$$probe/err" || \
	    { echo "tools-check: the failure did not name the file:"; cat "$$probe/err"; exit 1; }

clean:
	rm -rf $(BUILD) target

include image/storage.mk
include image/secureboot.mk
include image/media.mk
include image/tls.mk
include image/firmware.mk
include image/bench.mk
