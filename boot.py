# Runs first at every boot. Deliberately empty of update logic: main.py confirms a new image only
# after the network and the update server answer, and nothing here may keep main.py from running.
