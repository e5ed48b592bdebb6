//! modkv-bench: etcd's `benchmark` tool's equal for modkv and etcd 3.4, and the side-by-side runner
//! (`modkv-bench report`, `make bench-report`). The code is in `tests/src/bench/` (see its `mod.rs`).
//!
//! ```text
//! modkv-bench --endpoints 127.0.0.1:2379 --clients 100 --conns 10 --total 20000 --val-size 256 put
//! modkv-bench --endpoints 127.0.0.1:2379 --consistency s --clients 100 --conns 10 range foo
//! modkv-bench --endpoints 127.0.0.1:2379 watch-latency --streams 10 --watchers-per-stream 10 --total 200
//! modkv-bench --endpoint http://127.0.0.1:2379 --mode par --clients 100 --conns 10 --total 20000
//! ```
//!
//! Prints figures, asserts nothing (the exit code is 1 only if nothing could be measured).

#[path = "../bench/mod.rs"]
mod bench;

/// mimalloc, as the server: the load generator shares the machine with the server it measures, and glibc's
/// malloc took ≈ 12 % of its CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(bench::main());
}
