//! The benchmarks of ecst (`cargo bench -p ecst-benches`), each against a
//! hand-written baseline in the same run; `benches/ratios.py` reads the
//! ratios. Nothing to link: the benchmarks are this package's bench targets.
