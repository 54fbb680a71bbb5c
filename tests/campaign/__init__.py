"""The robustness campaign (issue "Prove it"): power loss, network faults, hostile input.

Each section is a module with a `run(mode, ...)` that returns its figures; bench/campaign.py prints
them as a table (quick and full modes) and the tests here run the quick mode.
"""
