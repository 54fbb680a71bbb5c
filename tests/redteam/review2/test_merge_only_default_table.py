"""Promise (SECURITY/README fix 5): `flash --merge-only` refuses output == input. The partition
table input defaults to the project's partitions.csv when --partitions is left out, and that input
is not checked: `-o partitions.csv` (run in the project) writes the merged image over it (exit 0),
and every later command that reads the default table then fails with an internal error."""
import shutil

from ota_tool import cli, images, sim


def test_merge_only_does_not_overwrite_the_default_partition_table(tmp_path, monkeypatch, capsys):
    table = tmp_path / "partitions.csv"
    shutil.copy(sim.DEFAULT_PARTITIONS, table)  # the project's partitions.csv (a copy: review/ only)
    monkeypatch.setattr(sim, "DEFAULT_PARTITIONS", str(table))
    before = table.read_bytes()
    (tmp_path / "app.bin").write_bytes(images.app_image("1.0.0", size=64 * 1024))
    (tmp_path / "bl.bin").write_bytes(images.bootloader_image("esp32", {"chip": "esp32", "chip_rev": 300,
                                                                        "rollback": True, "mac": "24:0a:c4:00:00:01"}))
    monkeypatch.chdir(tmp_path)
    rc = cli.main(["flash", "--merge-only", "-f", "app.bin", "--bootloader", "bl.bin", "-o", str(table)])
    assert table.read_bytes() == before, "the default partition table was overwritten with a merged image"
    assert rc == 2
