"""Benchmarks: `./scripts/bench [--quick]` runs bench.run; the other modules are its parts."""
