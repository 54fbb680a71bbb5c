# The simulated hardware's side of a self-test: what the running firmware was built to do
# (images made by ota_tool.images carry these flags, e.g. {"selftest_fails": true}). On a real
# board a self-test reads sensors and reaches the server instead.
from espsim import chip as _chip


def firmware_flags():
    return _chip.get().firmware_flags()


def healthy():
    return not firmware_flags().get("selftest_fails")
