//! Prints what one pre-put call into a plugin costs in the host, without a server around it (figures
//! only, nothing asserted; `make bench` runs it on json-guard):
//! `cargo run --release -p modkv --example plugin-call-cost -- <plugin.wasm> [plugin.toml]`.
use std::sync::{Arc, Weak};
use std::time::Instant;

use modkv::plugin::caller::Caller;
use modkv::plugin::config::PluginConfig;
use modkv::plugin::host::{wit, PluginInfo, Runtime};
use modkv::plugin::instances::Instances;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let wasm = std::fs::read(&args[1]).expect("plugin file");
    let toml = args.get(2).map(|p| std::fs::read_to_string(p).expect("toml")).unwrap_or_default();
    let runtime = Runtime::new(None).expect("runtime");
    let (component, _) = runtime.compile(&wasm).expect("compile");
    let pre = runtime.prepare(&component).expect("link");
    let config = PluginConfig::parse(&toml).expect("toml");
    let info = Arc::new(PluginInfo::new(
        "bench".into(),
        config,
        "bench.toml".into(),
        Vec::new(),
        Weak::<modkv::server::EtcdServer>::new(),
    ));
    let req = wit::PutRequest {
        key: b"json/k".to_vec(),
        value: format!(r#"{{"v":"{}"}}"#, "x".repeat(248)).into_bytes(),
        lease: 0,
        in_txn: false,
        caller: None,
    };
    let n = 20000;
    for round in 0..2 {
        for calls in [1u32, 8, 64] {
            let instances = Instances::new(calls);
            let t = Instant::now();
            for _ in 0..n {
                let d = instances.pre_put(&runtime, &pre, &info, &[], &Caller::default(), &req).await.expect("call");
                assert!(matches!(d, wit::PutDecision::Allow));
            }
            if round == 1 {
                // Round 0 warms up.
                println!(
                    "plugin-call-cost: calls-per-instance {calls}: {:.2} µs per pre-put call",
                    t.elapsed().as_secs_f64() * 1e6 / n as f64
                );
            }
        }
    }
    // Calls spaced out as sequential puts space them (caches go cold in between).
    let instances = Instances::new(64);
    let mut spent = std::time::Duration::ZERO;
    let spaced = 2000;
    for _ in 0..spaced {
        std::thread::sleep(std::time::Duration::from_micros(400));
        let t = Instant::now();
        instances.pre_put(&runtime, &pre, &info, &[], &Caller::default(), &req).await.expect("call");
        spent += t.elapsed();
    }
    println!(
        "plugin-call-cost: calls 400 µs apart, calls-per-instance 64: {:.2} µs per pre-put call",
        spent.as_secs_f64() * 1e6 / spaced as f64
    );
    runtime.stop();
}
