# Where the pieces of the project live, whether installed editable (a checkout) or from a wheel.
import os

import espsim
import ota

DEVICE_LIB = os.path.dirname(os.path.dirname(os.path.abspath(ota.__file__)))  # the folder holding `ota/`
SIM_MODULES = os.path.join(os.path.dirname(os.path.abspath(espsim.__file__)), "modules")
SIM_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(espsim.__file__)))  # the folder holding `espsim/`
