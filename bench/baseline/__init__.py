"""The naive bot the benchmarks measure the real one against (see `bench.baseline.app`)."""
