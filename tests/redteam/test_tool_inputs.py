"""ota-tool on hostile or unusual inputs: "a traceback from ota-tool" is a failure. Every command
should end with its error message and exit code (ota_tool.cli: ToolError -> "error: ...", 1)."""
import os

import pytest

from ota_tool import cli


@pytest.mark.parametrize("what", ["random", "erased", "zeros"])
def test_inspect_a_dump_without_partition_table(tmp_path, what, capsys):
    """A 4 MiB dump that holds no partition table: a flash-encrypted board's dump (README: "A
    flash-encrypted dump cannot be read"), an erased chip, a read from the wrong offset."""
    data = {"random": os.urandom(4 << 20), "erased": b"\xff" * (4 << 20), "zeros": bytes(4 << 20)}[what]
    p = tmp_path / "dump.bin"
    p.write_bytes(data)
    for argv in (["inspect", str(p)], ["inspect", str(p), "--json"]):
        try:
            code = cli.main(argv)
        except SystemExit as e:
            code = e.code
        except Exception as e:  # a traceback for the user
            pytest.fail("ota-tool %s raised %s: %s" % (" ".join(argv[:1] + argv[2:]), type(e).__name__, e))
        assert code in (0, 1), code
