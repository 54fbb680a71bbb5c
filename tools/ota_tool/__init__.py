"""Host side of the `ota` project: releases, keys, the update server, the simulated ESP32, board tools."""

__version__ = "0.1.0"
