//! `modkv-failpoints`: the `modkv` binary built with the `failpoints` feature, for the fault-injection
//! tests (`tests/tests/failpoints.rs`). Built by
//! `cargo build --release -p modkv --features failpoints --bin modkv-failpoints`, beside the normal
//! `modkv`, which it never replaces.
//!
//! Before the usual `main` it configures the failpoints named in `FAILPOINTS` (`name=action;…`, see
//! `modkv::failpoints`) and makes every panic abort the process on the spot: a failpoint's `panic` is then
//! a crash at that point (nothing after it runs, no orderly stop), on whichever thread or task it fires.

#[path = "../main.rs"]
mod modkv_main;

use std::process::ExitCode;

fn main() -> ExitCode {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!("modkv-failpoints: a panic ends the process here (a crash at this point)");
        std::process::abort();
    }));
    if let Ok(spec) = std::env::var("FAILPOINTS") {
        if let Err(e) = modkv::failpoints::setup(&spec) {
            eprintln!("modkv: FAILPOINTS: {e}");
            return ExitCode::from(2);
        }
        for (name, actions) in fail::list() {
            eprintln!("modkv-failpoints: failpoint {name}={actions}");
        }
    }
    modkv_main::main()
}
