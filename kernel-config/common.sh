# Sourced by the kernel-config scripts that read the kernel source after build.sh: one preamble, not a copy in
# each. `source "$(dirname "${BASH_SOURCE[0]}")/common.sh" "$@"` checks the one argument, the build directory,
# and sets:
#   HERE     kernel-config/ (absolute)
#   B        the build directory (absolute)
#   SRC      the kernel source build.sh extracts there ($B/linux-src)
#   TARBALL  Debian's linux-source tarball (KEEL_LINUX_TARBALL, as build.sh)
# and a reproducible environment (LC_ALL=C, fixed kbuild stamps, as build.sh).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 <builddir>" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
B=$(cd "$1" && pwd)
SRC="$B/linux-src"
TARBALL=${KEEL_LINUX_TARBALL:-/usr/src/linux-source-6.12.tar.xz}
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 1970' KBUILD_BUILD_USER=keel KBUILD_BUILD_HOST=keel \
    KBUILD_BUILD_VERSION=1 LC_ALL=C

# source_extracted: whether build.sh has extracted the source into $SRC (a cached kernel build does not).
source_extracted() { [ -f "$SRC/.keel-extracted" ]; }
