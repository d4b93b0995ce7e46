"""Development tooling: the servers from Maven jars, the private stack of tests and benchmarks, the provider
mirror server, `make run`, the fault and operation harnesses. Nothing in flashes/, services/ or schemas/
imports it (tests/test_devtools.py checks), and the image does not ship it.
"""
