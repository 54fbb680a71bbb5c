# Runs first at every boot (and soft reset). Free of update logic but this: while the running image
# is on probation the watchdog is armed before anything else runs, so a crash or a hang here or in
# main.py cannot leave the image unconfirmed and not rolled back (ota/probation.py). main.py
# confirms a new image only after the network and the update server answer. Nothing here may raise:
# on an ESP32 main.py does not run after a boot.py that raised.
try:
    from ota import probation

    probation.start()
except Exception as e:
    import sys

    if "ota" in sys.modules:  # (without the library there is nothing to guard)
        print("ota: boot.py: %r" % (e,))
