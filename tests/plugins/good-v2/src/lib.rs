//! `good`, version 2 (for the hot reload test).
const VERSION: &str = "2";
include!("../../good/src/current.rs");
