//! Examples live in `examples/`; benchmarks in `benches/`.
