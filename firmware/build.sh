#!/bin/sh
# Build MicroPython for the ESP32 with this project's board (firmware/boards/ESP32_OTA): the OTA
# partition table, app rollback on, the version in the app descriptor, lib/ota frozen in.
#
# Needs (see firmware/README.md): a MicroPython checkout and the ESP-IDF version it supports,
# exported in this shell (. $IDF_PATH/export.sh). Neither is needed by the project's CI.
#
#   firmware/build.sh --version 1.2.0 [--factory] [--mpy-dir ~/micropython] [--out dist]
#
# The image must leave at least SLOT_MARGIN bytes (default 65536, 4 percent of a 1.5 MiB slot) free in the
# smallest app slot, so that later releases with the same features still fit: the build fails
# otherwise.
#
# Writes to the output folder (default firmware/dist/<version>[-factory]/):
#   micropython.bin      the app image: what `ota-tool release` signs and devices download
#   bootloader.bin, partition-table.bin, firmware.bin (all three merged, for cable flashing only)
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
VERSION=""
VARIANT=""
MPY_DIR=${MPY_DIR:-}
OUT=""
OTA_TOOL=${OTA_TOOL:-ota-tool}
SLOT_MARGIN=${SLOT_MARGIN:-65536}

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --version) VERSION=$2; shift 2 ;;
        --factory) VARIANT=FACTORY; shift ;;
        --mpy-dir) MPY_DIR=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage 2 ;;
    esac
done

if [ -z "$VERSION" ]; then
    VERSION=$(git -C "$REPO" describe --tags --always --dirty 2>/dev/null | sed 's/^v//') || true
    [ -n "$VERSION" ] || { echo "error: give --version X.Y.Z" >&2; exit 2; }
    echo "version from git: $VERSION"
fi
case "$VERSION" in
    *[!0-9A-Za-z.+-]*) echo "error: version '$VERSION' has characters a release cannot carry" >&2; exit 2 ;;
esac
[ ${#VERSION} -le 31 ] || { echo "error: version longer than 31 characters (esp_app_desc_t.version)" >&2; exit 2; }
[ -n "$MPY_DIR" ] || { echo "error: set MPY_DIR or --mpy-dir to a MicroPython checkout" >&2; exit 2; }
[ -d "$MPY_DIR/ports/esp32" ] || { echo "error: $MPY_DIR is not a MicroPython checkout (no ports/esp32)" >&2; exit 2; }
command -v idf.py >/dev/null 2>&1 || { echo "error: idf.py not found: run . \$IDF_PATH/export.sh first" >&2; exit 2; }

BOARD_DIR="$HERE/boards/ESP32_OTA"
BUILD="build-ESP32_OTA${VARIANT:+-$VARIANT}"
SUFFIX=${VARIANT:+-factory}
OUT=${OUT:-$HERE/dist/$VERSION$SUFFIX}

# mpy-cross freezes lib/ota (including its native-code module) for xtensawin.
make -C "$MPY_DIR/mpy-cross"
make -C "$MPY_DIR/ports/esp32" BOARD_DIR="$BOARD_DIR" ${VARIANT:+BOARD_VARIANT=$VARIANT} BUILD="$BUILD" submodules
# CMAKE_ARGS on the command line reaches idf.py; a changed version makes it reconfigure.
OTA_FIRMWARE_VERSION="$VERSION" make -C "$MPY_DIR/ports/esp32" BOARD_DIR="$BOARD_DIR" \
    ${VARIANT:+BOARD_VARIANT=$VARIANT} BUILD="$BUILD" CMAKE_ARGS="-DOTA_FIRMWARE_VERSION=$VERSION"

B="$MPY_DIR/ports/esp32/$BUILD"
mkdir -p "$OUT"
cp "$B/micropython.bin" "$B/bootloader/bootloader.bin" "$B/partition_table/partition-table.bin" "$B/firmware.bin" "$OUT/"

# Check what was built, with the device's own image check: an app image, of this version, that
# fits the OTA slots of the table it was built with.
if [ -n "$VARIANT" ]; then TABLE="$HERE/partitions-factory.csv"; else TABLE="$REPO/partitions.csv"; fi
"${PYTHON:-python3}" "$HERE/check_image.py" "$OUT/micropython.bin" "$VERSION" "$TABLE" --margin "$SLOT_MARGIN"
# One whole-flash image for factory programming, checked by ota-tool like a cable flash.
"$OTA_TOOL" flash --firmware "$OUT/micropython.bin" --bootloader "$OUT/bootloader.bin" \
    --partitions "$TABLE" --merge-only -o "$OUT/full-flash.bin"
echo "built $OUT:"
ls -l "$OUT"
