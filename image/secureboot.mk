# UEFI Secure Boot (included by the top Makefile; README, "Secure Boot"). The UKI is signed with sbsigntool for the
# key in the firmware's `db`: KEEL_SB_KEY (PEM private key) and KEEL_SB_CERT (its PEM certificate). Without them a
# development db key is made once under build/keys/ (like the SSH development key), with a development PK/KEK that
# enrolls it in the OVMF variable store `make sb-vars` writes. Never use the development keys in production.
#
# Everything that decides trust is inside the signed UKI (the initramfs with allowed_signers, the CA bundle, the
# default config and its signature; the kernel command line in .cmdline): systemd-stub ignores a command line from
# the boot loader when Secure Boot is on and the UKI has its own, so nothing outside the signature overrides it.

KEEL_SB_KEY  ?= $(KEYS)/sb_db.key
KEEL_SB_CERT ?= $(KEYS)/sb_db.crt
# The platform key and key-exchange key certificates enrolled by `make sb-vars` (the operator's own on a real
# fleet; their private keys are only needed to change db later, never by the build).
KEEL_SB_PK   ?= $(KEYS)/sb_pk.crt
KEEL_SB_KEK  ?= $(KEEL_SB_PK)
# The owner GUID recorded with each enrolled certificate (any fixed GUID; this one is Keel's).
KEEL_SB_OWNER ?= 6b65656c-5342-4b45-8945-4b65656c0001
export KEEL_SB_KEY KEEL_SB_CERT

SB_VARS   := $(BUILD)/OVMF_VARS_4M.keel-sb.fd
SB_VENV   := $(BUILD)/venv
VIRT_FW_VARS := $(SB_VENV)/bin/virt-fw-vars
OVMF_VARS_TEMPLATE := /usr/share/OVMF/OVMF_VARS_4M.fd
# What the node reads to show who signed it (secure_boot in status): the db certificate in DER, and its subject.
SB_SIGNER_DER := $(BUILD)/secureboot-signer.der
SB_SIGNER_TXT := $(BUILD)/secureboot-signer.txt
IMAGE_VARS    += KEEL_SB_SIGNER_DER=$(SB_SIGNER_DER) KEEL_SB_SIGNER_TXT=$(SB_SIGNER_TXT)

.PHONY: sb-keys sb-vars sb-tools

# Development keys: RSA 2048 / SHA-256 (what every UEFI firmware verifies), valid for 100 years (firmware does not
# check certificate dates). Made once; kept like build/keys/dev_ed25519.
$(KEYS)/sb_%.crt:
	@mkdir -p $(KEYS)
	@openssl req -quiet -x509 -newkey rsa:2048 -nodes -sha256 -days 36500 \
	  -subj "/CN=Keel development Secure Boot $* key/" -keyout $(KEYS)/sb_$*.key -out $@ 2>/dev/null
	@echo "keys: made a development Secure Boot $* key $@ (not for production)"

sb-keys: setup $(if $(filter $(KEYS)/%,$(KEEL_SB_CERT)),$(KEEL_SB_CERT)) \
               $(if $(filter $(KEYS)/%,$(KEEL_SB_PK)),$(KEEL_SB_PK)) \
               $(if $(filter $(KEYS)/%,$(KEEL_SB_KEK)),$(KEEL_SB_KEK))
	@test -r "$(KEEL_SB_KEY)" || { echo "secureboot: KEEL_SB_KEY=$(KEEL_SB_KEY) is not readable"; exit 1; }
	@test -r "$(KEEL_SB_CERT)" || { echo "secureboot: KEEL_SB_CERT=$(KEEL_SB_CERT) is not readable"; exit 1; }
	@openssl x509 -in $(KEEL_SB_CERT) -outform DER -out $(SB_SIGNER_DER).tmp
	@openssl x509 -in $(KEEL_SB_CERT) -noout -subject -nameopt RFC2253 > $(SB_SIGNER_TXT).tmp
	@for f in $(SB_SIGNER_DER) $(SB_SIGNER_TXT); do \
	  if ! cmp -s $$f.tmp $$f; then mv $$f.tmp $$f; else rm -f $$f.tmp; fi; done

keys: sb-keys

# virt-fw-vars (PyPI virt-firmware) in a venv of its own under build/: Debian 12's pip refuses system-wide installs
# (PEP 668), and Debian's python3 is named by path so a pyenv or conda python3 earlier in PATH does not matter.
# `make setup` runs this after the apt packages (python3-venv); it is checked by running the tool, so a half-made
# venv is made again.
SB_TOOLS_INSTALL = $(VIRT_FW_VARS) --help >/dev/null 2>&1 || { \
	  echo "setup: installing virt-firmware (PyPI) into $(SB_VENV)"; rm -rf $(SB_VENV); \
	  /usr/bin/python3 -m venv $(SB_VENV) && $(SB_VENV)/bin/pip install --quiet --disable-pip-version-check virt-firmware \
	  && $(VIRT_FW_VARS) --help >/dev/null; }
sb-tools: setup

## sb-vars: build/OVMF_VARS_4M.keel-sb.fd, an OVMF variable store with KEEL_SB_PK as PK, KEEL_SB_KEK as KEK and
## KEEL_SB_CERT in db (nothing else: no Microsoft keys), Secure Boot on (user mode). Boot it with
## OVMF_CODE_4M.secboot.fd (qemu/run-sb.sh shows the flags).
sb-vars: sb-keys sb-tools
	@$(VIRT_FW_VARS) --loglevel warning --input $(OVMF_VARS_TEMPLATE) --output $(SB_VARS) --no-microsoft --secure-boot \
	  --set-pk $(KEEL_SB_OWNER) $(KEEL_SB_PK) --add-kek $(KEEL_SB_OWNER) $(KEEL_SB_KEK) \
	  --add-db $(KEEL_SB_OWNER) $(KEEL_SB_CERT) >/dev/null
	@echo "sb-vars: $(SB_VARS): PK $(KEEL_SB_PK), KEK $(KEEL_SB_KEK), db $(KEEL_SB_CERT); Secure Boot enforcing"

# The time floor (README, "Anti-rollback"): a node's clock never goes below the image's build time. That is
# SOURCE_DATE_EPOCH when one is given (release builds should), else the time of the last commit: both are
# fixed for the same sources, so the image stays reproducible (SOURCE_DATE_EPOCH's default here is 0, which
# would be no floor at all). KEEL_BUILD_TIME overrides it.
KEEL_BUILD_TIME ?= $(shell t=$${SOURCE_DATE_EPOCH:-0}; [ "$$t" -gt 0 ] 2>/dev/null && echo $$t || \
                     git log -1 --format=%ct 2>/dev/null || echo 0)
export KEEL_BUILD_TIME
BUILD_TIME_FILE := $(BUILD)/build-time
VERSION_FILE    := $(BUILD)/version
IMAGE_VARS      += KEEL_BUILD_TIME_FILE=$(BUILD_TIME_FILE) KEEL_VERSION_FILE=$(VERSION_FILE)

.PHONY: build-time
build-time:
	@mkdir -p $(BUILD)
	@echo $(KEEL_BUILD_TIME) > $(BUILD_TIME_FILE).tmp
	@echo $(KEEL_VERSION) > $(VERSION_FILE).tmp
	@for f in $(BUILD_TIME_FILE) $(VERSION_FILE); do \
	  if ! cmp -s $$f.tmp $$f; then mv $$f.tmp $$f; else rm -f $$f.tmp; fi; done

image reproducible: build-time

# The Secure Boot e2e tests boot with the enrolled variable store.
e2e bench: sb-vars
