//! Benchmark tooling: the `ws-load` load generator and reference servers
//! built on other libraries. See `docs/benchmarks.md`.
