# FAT file systems in image files, with mkfs.fat and mtools: no loop devices, no mounts, no root. Sourced by
# image/disk.sh and image/upgrade-image.sh. Callers export SOURCE_DATE_EPOCH (at least 1980) and
# MTOOLS_SKIP_CHECK=1 and keep file times fixed, so the images are byte-identical from build to build.

# fat IMAGE MIB LABEL VOLID FAT-BITS: an empty FAT file system in a file.
fat() {
    rm -f "$1"
    mkfs.fat -C --invariant -F "$5" -n "$3" -i "$4" "$1" $(($2 * 1024)) >/dev/null
}
# put IMAGE DIR... then FILE DEST: directories, then a file, with the fixed time.
put() {
    local image=$1 src=$2 dest=$3
    shift 3
    for d in "$@"; do mmd -i "$image" "::$d"; done
    mcopy -m -i "$image" "$src" "::$dest"
}
