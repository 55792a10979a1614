"""Shared by the tests and the benchmarks, and nothing else: seeded data generators, scratch
databases, servers on loopback. Importable from the repository root (the editable install puts it
on the path); not part of the distribution."""
