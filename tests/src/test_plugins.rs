//! The test plugins of `tests/plugins/` (their own Cargo workspace of small guest crates): [`built`] builds
//! them once per test binary for wasm32-wasip2 into `$CARGO_TARGET_DIR/test-plugins`; [`install`] puts
//! one into a member's plugin dir as an operator's deploy would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use crate::workspace_root;

/// The suite's target dir (`$CARGO_TARGET_DIR`, relative to the workspace, else `<workspace>/target`)
/// joined with `sub`: where a guest crate is built, so a second run only relinks.
pub fn target_dir(sub: &str) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()).map(PathBuf::from) {
        Some(t) if t.is_absolute() => t,
        Some(t) => workspace_root().join(t),
        None => workspace_root().join("target"),
    }
    .join(sub)
}

/// Runs `cargo <args>` in the guest crate or workspace `dir` with `target` as its target dir, failing
/// the test with cargo's output (and `hint`) if it fails; prints how long it took. Returns its stdout.
pub fn cargo_in(dir: &Path, target: &Path, args: &[&str], hint: &str) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let out = Command::new(cargo)
        .current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap_or_else(|e| panic!("run cargo {args:?}: {e}"));
    assert!(
        out.status.success(),
        "cargo {args:?} in {} failed ({hint}):\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("cargo {args:?} in {} took {:?}", dir.display(), started.elapsed());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the test plugins (once per test binary) and returns the directory holding the `.wasm` files.
pub fn built() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = target_dir("test-plugins");
        cargo_in(
            &workspace_root().join("tests/plugins"),
            &target,
            &["build", "--release", "--target", "wasm32-wasip2"],
            "is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`",
        );
        target.join("wasm32-wasip2/release")
    })
}

/// Copies the built plugin `crate_name` into `dir` as `<name>.wasm`, atomically (written under a name the
/// server ignores, then renamed), as an operator's deploy would.
pub fn install(dir: &Path, crate_name: &str, name: &str) {
    let src = built().join(format!("{}.wasm", crate_name.replace('-', "_")));
    write_atomic(dir, &format!("{name}.wasm"), &std::fs::read(&src).unwrap_or_else(|e| panic!("{src:?}: {e}")));
}

/// Installs crate `crate_name` as plugin `name` with `toml` as its settings file (`<name>.toml`).
pub fn install_with(dir: &Path, crate_name: &str, name: &str, toml: &str) {
    install(dir, crate_name, name);
    std::fs::write(dir.join(format!("{name}.toml")), toml).unwrap();
}

/// The settings the tests give the `good` plugin: its grants (reads under good/, writes under good/ and
/// guard/) and a `greeting` its routes answer with.
pub const GOOD_TOML: &str = r#"
[grants]
read = ["good/"]
write = ["good/", "guard/"]

[config]
greeting = "hello from config"
"#;

/// The settings the tests give the hostile plugins: `spin` (loops) fails open after 200 ms, `hog` (grows
/// its memory) is capped at 16 MiB.
pub const SPIN_TOML: &str = "failure-mode = \"fail-open\"\n[limits]\ntime-ms = 200\n";
pub const HOG_TOML: &str = "[limits]\nmemory-bytes = 16777216\n";

/// Writes `data` to `dir/name` atomically: under a name the server ignores, then renamed.
pub fn write_atomic(dir: &Path, name: &str, data: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}
