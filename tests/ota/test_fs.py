"""The device filesystem (ota.compat.fs) on the simulated ESP32: a littlefs in the `vfs` partition.

- The same device code runs under CPython (in-process simulator: littlefs-python over the
  simulated flash) and MicroPython (vfs.VfsLfs2 over esp32.Partition("vfs"), RPC mode with a
  64 KiB heap and local mode), and each reads what the other wrote: the on-flash image is
  littlefs with MicroPython's own geometry on both sides.
- Power cut at every flash operation (both cut modes) of the two write patterns device code
  relies on: "write ota.json.tmp, rename over ota.json" and an append-only log rotated by rename.
  After every cut the filesystem mounts and each file is whole (old or new, never torn).
The numbers of cut points are printed (pytest -s). OTA_CAMPAIGN=1 runs longer sweeps.
"""
import errno
import os
import re
import shutil
import textwrap

import pytest

from espsim import chip as sim_chip
from espsim.flash import CUT_BEFORE, CUT_TORN
from ota_tool import devfs, sim
from ota_tool.errors import ToolError
from tests.simhelpers import new_device

CAMPAIGN = os.environ.get("OTA_CAMPAIGN") == "1"
HEAP = "64k"
LOCAL_HEAP = "512k"

# --- device code (runs unchanged under CPython and MicroPython) ---------------------------------

# Shows the whole filesystem (sorted, with contents), then exercises every call of ota.compat.fs.
# TAG names the files this run adds, so successive runs on one device leave distinct traces.
EXERCISE = """
from ota.compat import fs

def show(path=""):
    for name in sorted(fs.listdir(path)):
        full = path + "/" + name if path else name
        try:
            fs.listdir(full)
            print("dir", full)
            show(full)
        except OSError:
            with fs.open(full, "rb") as f:
                print("file", full, fs.stat(full), f.read())

def err(fn, *args):
    try:
        fn(*args)
        return "ok"
    except OSError as e:
        return e.args[0]  # littlefs' codes are Linux errno values (ENOTEMPTY 39) on every port

print("before")
show()
# the atomic config update: a new file, then a rename over the old one
with fs.open("ota.json.tmp", "w") as f:
    f.write('{"by": "%(tag)s", "n": 1}')
fs.rename("ota.json.tmp", "ota.json")
with fs.open("ota.json") as f:
    print("config", f.read(), fs.exists("ota.json.tmp"))
# appends, lines, binary data across littlefs' 128-byte cache, readinto, seek
with fs.open("log.txt", "a") as f:
    f.write("%(tag)s\\n")
with fs.open("log.txt") as f:
    print("log lines", len([line for line in f]))
if not fs.exists("data"):
    fs.mkdir("data")
blob = bytes(range(256)) * 3
with fs.open("data/%(tag)s.bin", "wb") as f:
    f.write(blob)
    f.flush()
    f.write(b"end")
buf = bytearray(100)
with fs.open("data/%(tag)s.bin", "rb") as f:
    f.seek(700)
    n = f.readinto(buf)
    print("readinto", n, bytes(buf[:n]) == (blob + b"end")[700:800], f.tell())
    f.seek(0)
    print("read", f.read(4) == blob[:4], len(f.read()))
print("size", fs.stat("data/%(tag)s.bin"))
# errors, with MicroPython's errno
print("stat missing", err(fs.stat, "missing"))
print("remove missing", err(fs.remove, "missing"))
print("mkdir existing", err(fs.mkdir, "data"))
print("rmdir not empty", err(fs.rmdir, "data"))
print("open missing", err(fs.open, "missing", "rb"))
fs.mkdir("empty")
fs.rmdir("empty")
with fs.open("gone.txt", "w") as f:
    f.write("x")
fs.remove("gone.txt")
print("exists", fs.exists("gone.txt"), fs.exists("data"), fs.exists("ota.json"))
fs.sync()
print("after")
show()
"""


def exercise(tag):
    return textwrap.dedent(EXERCISE % {"tag": tag})


def split(stdout):
    """(what the run found, what it printed while working, what it left)."""
    before, rest = stdout.split("before\n", 1)[1].split("config ", 1)
    work, after = ("config " + rest).split("after\n", 1)
    return before, work, after


def run_on(dev, interp, code):
    if interp == "cpython":
        out = dev.run_code(code)
    else:
        out = dev.run_micropython(code, heap=LOCAL_HEAP if interp == "mp-local" else HEAP, local=interp == "mp-local")
    assert out.kind == sim.RETURNED, "%s: %s %s" % (interp, out.stdout, out.stderr)
    return out.stdout


# --- partition ------------------------------------------------------------------------------------


@pytest.mark.micropython
def test_vfs_partition_as_micropython_makes_it(tmp_path):
    dev = new_device(tmp_path)
    expect = (1, 0x81, 0x310000, 0xF0000, "vfs", False)  # data, fat: esp_partition_register_external

    def app():
        import esp32

        return (esp32.Partition("vfs").info(),
                [p.info() for p in esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")])

    assert dev.run(app).value == (expect, [expect])
    out = dev.run_micropython("import esp32\nprint(esp32.Partition('vfs').info())", heap=HEAP)
    assert out.stdout.strip() == repr(expect)


def test_vfs_partition_rules():
    from espsim import parttable
    from espsim.parttable import Part

    app = Part(0, 0x10, 0x10000, 0x100000, "ota_0", 0)
    size = 0x400000
    auto = parttable.vfs_partition([app], size)
    assert (auto.type, auto.subtype, auto.offset, auto.size, auto.label) == (1, 0x81, 0x110000, 0x2F0000, "vfs")
    table_vfs = Part(1, 0x83, 0x200000, 0x10000, "vfs", 0)
    assert parttable.vfs_partition([app, table_vfs], size) is table_vfs  # the table's own wins
    assert parttable.vfs_partition([app, Part(1, 0x81, 0x200000, 0x10000, "ffat", 0)], size) is None
    assert parttable.vfs_partition([Part(0, 0x10, 0x10000, size - 0x10000, "ota_0", 0)], size) is None


# --- host side ------------------------------------------------------------------------------------


def test_host_put_get_list(tmp_path, capsys):
    dev = new_device(tmp_path)
    assert devfs.files(dev.path) == {}
    devfs.put(dev.path, "ota.json", b'{"a": 1}')
    devfs.put(dev.path, "lib/app/main.py", b"print(1)\n")
    assert devfs.files(dev.path) == {"ota.json": 8, "lib/app/main.py": 9}
    assert devfs.get(dev.path, "lib/app/main.py") == b"print(1)\n"
    assert sorted(devfs.listdir(dev.path)) == ["lib", "ota.json"]
    assert devfs.listdir(dev.path, "lib") == ["app"]
    with devfs.mount(dev.path) as fs:
        used, total = fs.usage()
        assert total == 0xF0000 and 0 < used < total
        with pytest.raises(OSError) as e:
            fs.get("nope")
        assert e.value.errno == errno.ENOENT
    devfs.remove(dev.path, "ota.json")
    assert devfs.files(dev.path) == {"lib/app/main.py": 9}

    assert devfs.main([dev.path, "ls", "--json"]) == 0
    assert '"lib/app/main.py": 9' in capsys.readouterr().out
    src = tmp_path / "cfg.json"
    src.write_bytes(b"{}")
    assert devfs.main([dev.path, "put", str(src)]) == 0
    assert devfs.main([dev.path, "cat", "cfg.json"]) == 0
    assert devfs.main([dev.path, "rm", "missing"]) == 1
    assert "No such file" in capsys.readouterr().err
    assert devfs.main([dev.path, "format"]) == 0
    assert devfs.files(dev.path) == {}


def test_create_without_filesystem_then_first_boot_formats(tmp_path):
    dev = new_device(tmp_path, filesystem=False)
    assert dev.read(0x310000, 4096) == b"\xff" * 4096

    def app():
        from ota.compat import fs

        with fs.open("first.txt", "w") as f:
            f.write("first boot")
        return fs.listdir()

    out = dev.run(app)  # MicroPython's inisetup: a blank partition is formatted at boot
    assert out.kind == sim.RETURNED and out.value == ["first.txt"]
    assert out.ops > 2  # the format's erases and programs count like any flash operation
    assert devfs.get(dev.path, "first.txt") == b"first boot"


@pytest.mark.micropython
def test_micropython_formats_at_first_boot_and_littlefs_python_reads_it(tmp_path):
    dev = new_device(tmp_path, filesystem=False)
    out = dev.run_micropython("from ota.compat import fs\nwith fs.open('mp.txt', 'w') as f:\n    f.write('made by VfsLfs2')\n",
                              heap=HEAP)
    assert out.kind == sim.RETURNED, out.stderr
    assert devfs.files(dev.path) == {"mp.txt": 15}
    assert devfs.get(dev.path, "mp.txt") == b"made by VfsLfs2"


@pytest.mark.micropython
def test_corrupted_filesystem_stops_the_firmware(tmp_path):
    dev = new_device(tmp_path)
    with open(dev.path, "r+b") as f:  # both superblock copies damaged
        for block in (0, 1):
            f.seek(0x310000 + block * 4096 + 8)
            f.write(b"garbage!")
    out = dev.run(lambda: "app ran")
    assert out.kind == sim.CRASHED and "corrupted" in out.value
    out = dev.run_micropython("print('app ran')", heap=HEAP)
    assert out.kind == sim.CRASHED and "app ran" not in out.stdout and "corrupted" in out.stderr


NO_ROOM_CSV = """nvs, data, nvs, 0x9000, 0x4000,
otadata, data, ota, 0xd000, 0x2000,
phy_init, data, phy, 0xf000, 0x1000,
ota_0, app, ota_0, 0x10000, 0x1F0000,
ota_1, app, ota_1, 0x200000, 0x1F0000,
logs, data, nvs, 0x3F0000, 0x10000,
"""

NO_FS_CODE = """
from ota.compat import fs
import esp32
print(len(esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")))
for fn, args in ((fs.open, ("x", "w")), (fs.listdir, ()), (fs.stat, ("x",))):
    try:
        fn(*args)
        print("ok")
    except OSError as e:
        print(e.args[0])
print(fs.exists("x"))
"""


@pytest.mark.micropython
def test_no_room_for_a_filesystem(tmp_path):
    """A table that fills the flash: no `vfs`, nothing mounted, every file call fails with ENODEV."""
    dev = new_device(tmp_path, partitions_csv=NO_ROOM_CSV)
    expect = "0\n19\n19\n19\nFalse\n"
    assert dev.run_code(NO_FS_CODE).stdout == expect
    out = dev.run_micropython(NO_FS_CODE, heap=HEAP)
    assert out.kind == sim.RETURNED and out.stdout == expect, out.stderr
    with pytest.raises(ToolError):
        devfs.files(dev.path)


def test_plain_cpython_uses_host_files(tmp_path, monkeypatch):
    """Without a simulator the same device code works on the host's files (current directory)."""
    import contextlib
    import io

    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(exercise("host"), "<device>", "exec"), {"__name__": "__main__"})
    _, work, _ = split(out.getvalue())
    assert "stat missing 2\n" in work and "rmdir not empty 39\n" in work
    assert (tmp_path / "ota.json").read_text() == '{"by": "host", "n": 1}'


@pytest.mark.micropython
def test_plain_micropython_uses_its_files(tmp_path, mp):
    out = mp(exercise("unix"), heap=HEAP, cwd=str(tmp_path))
    assert "stat missing 2\n" in out and "rmdir not empty 39\n" in out
    assert (tmp_path / "ota.json").read_text() == '{"by": "unix", "n": 1}'


# --- the same device code on both interpreters, one filesystem ----------------------------------


@pytest.mark.micropython
def test_same_code_both_interpreters_read_each_other(tmp_path):
    dev = new_device(tmp_path)
    devfs.put(dev.path, "host.txt", b"written by littlefs-python on the host\n")
    previous_after = "file host.txt 39 b'written by littlefs-python on the host\\n'\n"
    works = []
    for i, interp in enumerate(["cpython", "mp-rpc", "cpython", "mp-local", "mp-rpc", "cpython"]):
        tag = "%s%d" % (interp.replace("-", ""), i)
        before, work, after = split(run_on(dev, interp, exercise(tag)))
        # what this interpreter found is exactly what the other one left
        assert before == previous_after, "%s after %d runs" % (interp, i)
        assert "file ota.json" in after and tag in after
        works.append(work.replace(tag, "TAG"))
        previous_after = after
    # ...and every interpreter saw the same results of the same calls (log.txt grows a line a run)
    results = {re.sub(r"log lines \d+\n", "", w) for w in works}
    assert len(results) == 1, results
    assert all("log lines %d\n" % (i + 1) in w for i, w in enumerate(works))
    assert "stat missing 2\n" in work and "mkdir existing 17\n" in work and "rmdir not empty 39\n" in work
    assert "readinto 71 True 771" in work and "size 771" in work
    # the host reads the final state too
    files = devfs.files(dev.path)
    assert files["log.txt"] == sum(len(t) + 1 for t in ("cpython0", "mprpc1", "cpython2", "mplocal3", "mprpc4",
                                                         "cpython5"))
    assert devfs.get(dev.path, "ota.json") == b'{"by": "cpython5", "n": 1}'
    assert len([n for n in files if n.startswith("data/")]) == 6


# --- power cuts -----------------------------------------------------------------------------------

CONFIG = """
from ota.compat import fs

def config(i):
    # even versions fit in littlefs' inline limit (kept in the directory block), odd ones do not
    pad = "x" * (20 if i % 2 == 0 else 300)
    return '{"version": %d, "pad": "%s"}' % (i, pad)

def update(i):
    with fs.open("ota.json.tmp", "w") as f:
        f.write(config(i))
    fs.rename("ota.json.tmp", "ota.json")
"""

LOG = """
from ota.compat import fs
import errno

CAP = 200

def append(i):
    line = "entry %04d\\n" % i
    try:
        if fs.stat("log.txt") + len(line) > CAP:
            fs.rename("log.txt", "log.1")
    except OSError as e:
        if e.args[0] != errno.ENOENT:
            raise
    with fs.open("log.txt", "a") as f:
        f.write(line)
"""


def device_functions(source):
    ns = {"__name__": "device"}
    exec(compile(textwrap.dedent(source), "<device>", "exec"), ns)
    return ns


def config_text(i):
    return device_functions(CONFIG)["config"](i).encode()


def probe(base, tmp_path, steps):
    """Run steps() on a copy of `base`; return the flash operation count after each step."""
    dev = sim.Device(str(tmp_path / "probe.bin"))
    shutil.copyfile(base.path, dev.path)
    marks = []

    def app():
        for step in steps:
            step()
            marks.append(sim_chip.get().board.flash.ops)

    assert dev.run(app).kind == sim.RETURNED
    return marks


def durable_and_next(marks, cut):
    """Index of the last step whose operations all happened before operation `cut` (-1: none),
    and the step in progress."""
    done = -1
    for i, m in enumerate(marks):
        if m <= cut:
            done = i
    return done, done + 1


def sweep(base, tmp_path, steps, check, label, capsys):
    marks = probe(base, tmp_path, steps)
    total = marks[-1]
    tried = 0
    for mode in (CUT_BEFORE, CUT_TORN):
        for cut in range(total):
            dev = sim.Device(str(tmp_path / "cut.bin"))
            shutil.copyfile(base.path, dev.path)
            dev.arm_power_cut(cut, mode)

            def app():
                for step in steps:
                    step()

            out = dev.run(app)
            assert out.kind == sim.POWER_CUT, "cut %d (%s) never happened" % (cut, mode)
            tried += 1
            done, current = durable_and_next(marks, cut)
            with devfs.mount(dev.path, format_blank=False) as fs:  # a fresh mount: must succeed
                check(fs, done, current, "cut %d (%s)" % (cut, mode))
            # power is back: the device mounts it and goes on writing
            back = dev.run(lambda: (steps[-1](), sorted(_fs().listdir()))[1])
            assert back.kind == sim.RETURNED, "cut %d (%s): %r" % (cut, mode, back)
    with capsys.disabled():
        print("\n%s: %d flash operations, %d power cuts tried (%d steps)" % (label, total, tried, len(steps)))
    return total, tried


def _fs():
    from ota.compat import fs

    return fs


def config_sweep(base, tmp_path, first, updates, label, capsys):
    """Sweep updates first..first+updates-1 on `base`, whose ota.json holds version first-1."""
    dev_fns = device_functions(CONFIG)
    steps = [lambda i=i: dev_fns["update"](i) for i in range(first, first + updates)]

    def check(fs, done, current, where):
        got = fs.get("ota.json")
        assert got in (config_text(first + done), config_text(first + current)), \
            "%s: torn ota.json %r" % (where, got[:60])

    total, tried = sweep(base, tmp_path, steps, check, label, capsys)
    assert tried == 2 * total and total >= 3 * updates


def test_power_cut_atomic_config_update(tmp_path, capsys):
    base = new_device(tmp_path, name="base.bin")
    update = device_functions(CONFIG)["update"]
    assert base.run(lambda: update(-1)).kind == sim.RETURNED  # the config before the sweep
    config_sweep(base, tmp_path, 0, 120 if CAMPAIGN else 24, "config update (tmp + rename)", capsys)


def test_power_cut_config_update_across_superblock_expansion(tmp_path, capsys):
    """littlefs moves the root directory out of the superblock pair once that pair has been erased
    block_cycles (100) times: about 1560 updates here. Age a device to just before, then sweep."""
    update = device_functions(CONFIG)["update"]
    probe_dev = new_device(tmp_path, name="age.bin")
    probe_dev.oplog = []
    marks = [0]
    sb_pair = (0x310000, 0x311000)

    def age(n):
        def app():
            for i in range(n):
                update(i)
                marks.append(sim_chip.get().board.flash.ops)
        return app

    assert probe_dev.run(age(2500)).kind == sim.RETURNED
    # update i's operations are oplog[marks[i]:marks[i + 1]]; the first update that no longer
    # commits to the superblock pair follows the one that moved the root out of it
    quiet = next(i for i in range(len(marks) - 1) if not any(
        kind == "write" and addr - addr % 4096 in sb_pair for kind, addr, _ in probe_dev.oplog[marks[i]:marks[i + 1]]))
    moved = quiet - 1
    first = moved - (40 if CAMPAIGN else 5)
    base = new_device(tmp_path, name="base.bin")
    assert base.run(age(first)).kind == sim.RETURNED
    config_sweep(base, tmp_path, first, 80 if CAMPAIGN else 10,
                 "config update across the superblock expansion (update %d)" % moved, capsys)


def log_entries(data, where, name):
    # an empty file is whole too: littlefs commits a file's creation at open, its data at close
    text = data.decode()
    if not text:
        return []
    assert text.endswith("\n"), "%s: %s ends mid-line: %r" % (where, name, text[-20:])
    lines = text.splitlines()
    nums = []
    for line in lines:
        assert len(line) == 10 and line.startswith("entry "), "%s: %s has a torn line %r" % (where, name, line)
        nums.append(int(line[6:]))
    assert nums == list(range(nums[0], nums[0] + len(nums))), "%s: %s is not a run of entries" % (where, name)
    return nums


def test_power_cut_rotated_log(tmp_path, capsys):
    appends = 150 if CAMPAIGN else 45
    base = new_device(tmp_path, name="base.bin")
    assert base.run(lambda: None).kind == sim.RETURNED  # the first boot's own flash writes (otadata)
    dev_fns = device_functions(LOG)
    steps = [lambda i=i: dev_fns["append"](i) for i in range(appends)]

    def check(fs, done, current, where):
        names = set(fs.listdir())
        assert names <= {"log.txt", "log.1"}, "%s: %s" % (where, names)
        cur = log_entries(fs.get("log.txt"), where, "log.txt") if "log.txt" in names else []
        old = log_entries(fs.get("log.1"), where, "log.1") if "log.1" in names else []
        assert len("".join("entry %04d\n" % n for n in cur)) <= dev_fns["CAP"]
        if cur and old:
            assert old[-1] + 1 == cur[0], "%s: log.1 ends at %d, log.txt starts at %d" % (where, old[-1], cur[0])
        last = (cur or old or [-1])[-1]
        assert last in (done, current), "%s: last entry %d, expected %d or %d" % (where, last, done, current)

    total, tried = sweep(base, tmp_path, steps, check, "rotated log (append + rename)", capsys)
    assert tried == 2 * total and total >= 2 * appends


@pytest.mark.micropython
def test_power_cut_config_update_under_micropython(tmp_path, capsys):
    """The atomic config update under MicroPython's own VfsLfs2 (RPC mode, 64 KiB heap): a sample of
    cut points by default, every one with OTA_CAMPAIGN=1. The host checks each result."""
    updates = 12
    base = new_device(tmp_path, name="base.bin")
    assert base.run_micropython(textwrap.dedent(CONFIG) + "update(-1)\n", heap=HEAP).kind == sim.RETURNED
    code = textwrap.dedent(CONFIG) + "for i in range(%d):\n    update(i)\n" % updates
    probe_dev = sim.Device(str(tmp_path / "probe.bin"))
    shutil.copyfile(base.path, probe_dev.path)
    out = probe_dev.run_micropython(code, heap=HEAP)
    assert out.kind == sim.RETURNED, out.stderr
    total = out.ops
    points = range(total) if CAMPAIGN else sorted(set(range(0, total, 4)) | {total - 1})
    allowed = {config_text(i) for i in range(-1, updates)}
    seen = set()
    tried = 0
    for mode in (CUT_BEFORE, CUT_TORN):
        latest = -1
        for cut in points:
            dev = sim.Device(str(tmp_path / "cut.bin"))
            shutil.copyfile(base.path, dev.path)
            dev.arm_power_cut(cut, mode)
            assert dev.run_micropython(code, heap=HEAP).kind == sim.POWER_CUT
            tried += 1
            got = devfs.get(dev.path, "ota.json")
            assert got in allowed, "cut %d (%s): torn ota.json %r" % (cut, mode, got[:60])
            version = int(got.split(b",")[0].split(b":")[1])
            assert version >= latest, "cut %d (%s): version %d after %d" % (cut, mode, version, latest)
            latest = version
            seen.add(got)
    # the last cut points leave the device reading it back under MicroPython too
    out = dev.run_micropython("from ota.compat import fs\nprint(fs.open('ota.json').read())", heap=HEAP)
    assert out.kind == sim.RETURNED and out.stdout.strip().encode() == got
    with capsys.disabled():
        print("\nconfig update under MicroPython: %d flash operations, %d power cuts tried" % (total, tried))
    assert len(seen) > updates // 2
