//! `modkv plugin new`: a ready plugin crate, outside any repository.
//!
//! ```text
//!   <dir>/Cargo.toml     cdylib, the SDK (a path dependency on this checkout's plugin-sdk/), the size
//!                        profile, an empty [workspace] (a crate of its own wherever it is made)
//!   <dir>/src/lib.rs     a route (#[route]) and/or a pre-put hook with a metric (impl Plugin), and a test
//!   <dir>/<name>.toml    the grants the code needs, the other settings commented
//!   <dir>/README.md      build, check, deploy
//! ```
//!
//! The plugin's name is the crate's (`env!("CARGO_PKG_NAME")` in the code), so the manifest, the
//! `.wasm` cargo writes and the TOML agree by construction.

use std::path::{Path, PathBuf};

/// What to make.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub routes: Vec<String>,
    pub hooks: Vec<String>,
    /// The SDK folder (`plugin-sdk/` of a modkv checkout).
    pub sdk: PathBuf,
}

/// A file of the crate: its path under the crate folder and its text.
pub type File = (PathBuf, String);

/// Checks `spec` and returns the crate's files. With neither a route nor a hook the plugin serves
/// `/<name>`.
pub fn files(spec: &Spec) -> Result<Vec<File>, String> {
    let name = spec.name.as_str();
    let valid = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.len() <= 64;
    if !valid {
        return Err(format!(
            "{name:?} is not a plugin name: a letter, then ASCII letters, digits, '-' or '_' (it is the crate's \
             name, the .wasm file's and the TOML's)"
        ));
    }
    let mut routes = spec.routes.clone();
    if routes.is_empty() && spec.hooks.is_empty() {
        routes.push(format!("/{name}"));
    }
    for r in &routes {
        if !r.starts_with('/') || r.len() < 2 || r.contains(['"', '\\', ' ']) {
            return Err(format!("route {r:?}: a route is a path prefix like /{name}"));
        }
    }
    for h in &spec.hooks {
        if h.contains(['"', '\\']) {
            return Err(format!("hooked prefix {h:?}: no quotes or backslashes, please"));
        }
    }
    let sdk = spec.sdk.display().to_string();
    if sdk.contains(['"', '\\']) {
        return Err(format!("SDK path {sdk:?}: no quotes or backslashes, please"));
    }
    let ty = camel(name);
    let ns = format!("{}/", name);
    Ok(vec![
        (PathBuf::from("Cargo.toml"), cargo_toml(name, &sdk)),
        (PathBuf::from("src/lib.rs"), lib_rs(name, &ty, &ns, &routes, &spec.hooks)),
        (PathBuf::from(format!("{name}.toml")), plugin_toml(name, &ns, &routes, &spec.hooks)),
        (PathBuf::from("README.md"), readme(name, &routes, &spec.hooks)),
        (PathBuf::from(".gitignore"), "/target\n".to_string()),
    ])
}

/// Writes the files into `dir`, which must not exist or be empty.
pub fn write(dir: &Path, files: &[File]) -> Result<(), String> {
    if dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!("{} exists and is not empty", dir.display()));
    }
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn camel(s: &str) -> String {
    s.split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

fn list(items: &[String]) -> String {
    items.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
}

fn cargo_toml(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

# A modkv plugin is a WebAssembly component: `cargo build --target wasm32-wasip2 --release` writes
# target/wasm32-wasip2/release/{file}.wasm (cargo spells '-' as '_'; the server treats them alike).
[lib]
crate-type = ["cdylib"]

[dependencies]
# The SDK of the modkv checkout this crate was made from (it is not on crates.io).
modkv-plugin-sdk = {{ path = "{sdk}" }}

# Small components: the server instantiates a plugin for its calls, and size is most of that cost.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
debug = false

# A crate of its own, even when made inside another workspace's folder.
[workspace]
"#,
        file = name.replace('-', "_")
    )
}

fn lib_rs(name: &str, ty: &str, ns: &str, routes: &[String], hooks: &[String]) -> String {
    let mut s = String::new();
    let what: Vec<String> = routes
        .iter()
        .map(|r| format!("`GET {r}/<rest>` counts the keys under `{ns}<rest>`"))
        .chain(hooks.iter().map(|h| {
            format!("puts under `{h}` are refused when their value is longer than `[config] max-value-bytes`")
        }))
        .collect();
    s.push_str(&format!("//! `{name}`: {}.\n", what.join("; ")));
    s.push_str(
        "//!\n//! A plugin is known by its crate's name (`Cargo.toml`), which names its `.wasm` and its TOML too.\n",
    );
    s.push_str("use modkv_plugin_sdk::prelude::*;\n\n");
    // (its doc comment, the function)
    let route_fn = |r: &str| {
        let doc = format!(
            "/// `GET {r}/a` → `{{\"prefix\": \"{ns}a\", \"count\": 2, \"revision\": 7}}`: the keys under \
             `{ns}a`\n/// and the store's revision, read through the host (the read grant `{ns}` in {name}.toml \
             allows it).\n"
        );
        let body = format!(
            r#"fn count(req: Request) -> kv::Result<Response> {{
    let rest = req.path_under("{r}").unwrap_or_default().trim_start_matches('/');
    let prefix = format!("{ns}{{}}", http::percent_decode(rest));
    let res = kv::Range::prefix(&prefix).limit(1).get()?;
    Ok(Response::json(200, &json!({{ "prefix": prefix, "count": res.count, "revision": res.revision }})))
}}
"#
        );
        (doc, body)
    };
    if hooks.is_empty() {
        let rs: Vec<String> = routes.iter().map(|r| format!("{r:?}")).collect();
        let (doc, body) = route_fn(&routes[0]);
        s.push_str(&doc);
        s.push_str(&format!("#[route({}, method = \"GET\", stateless)]\n", rs.join(", ")));
        s.push_str(&body);
    } else {
        let mut manifest = String::from("Manifest::new(env!(\"CARGO_PKG_NAME\"), env!(\"CARGO_PKG_VERSION\"))");
        for r in routes {
            manifest.push_str(&format!("\n            .route({r:?})"));
        }
        for h in hooks {
            manifest.push_str(&format!("\n            .hook_prefix({h:?})"));
        }
        manifest.push_str("\n            .metric(MetricDef::counter(\"rejected\", \"Puts refused for their size\"))");
        s.push_str(&format!("pub struct {ty};\n\nimpl Plugin for {ty} {{\n"));
        s.push_str(&format!("    fn manifest() -> Manifest {{\n        {manifest}\n    }}\n"));
        if !routes.is_empty() {
            s.push_str(
                "\n    fn handle_http(req: Request) -> Response {\n        \
                 if let Some(refused) = method_not_allowed(&req) {\n            return refused;\n        }\n        \
                 count(req).into_response()\n    }\n",
            );
        }
        s.push_str(
            r#"
    /// A value longer than `[config] max-value-bytes` (default 64) is refused, and counted.
    fn pre_put(put: Put) -> Decision {
        let max: usize = config::parse("max-value-bytes").unwrap_or(64);
        if put.value.len() > max {
            metrics::counter("rejected").inc();
            return Decision::reject(format!("{} is {} bytes long, more than {max}", put.key_str(), put.value.len()));
        }
        Decision::Allow
    }
}

export!("#,
        );
        s.push_str(&format!("{ty});\n"));
        if !routes.is_empty() {
            let (doc, body) = route_fn(&routes[0]);
            s.push('\n');
            s.push_str(&doc);
            s.push_str(&body);
            s.push_str(
                r#"
fn method_not_allowed(req: &Request) -> Option<Response> {
    let ok = req.method == "GET" || req.method == "HEAD";
    (!ok).then(|| Response::error(405, "method not allowed: use GET").with_header("allow", "GET, HEAD"))
}
"#,
            );
        }
    }
    let mut checks = format!("        assert_eq!(m.name, {name:?});\n");
    checks.push_str(&match routes.is_empty() {
        true => "        assert!(m.routes.is_empty());\n".to_string(),
        false => format!("        assert_eq!(m.routes, [{}]);\n", list(routes)),
    });
    let hooked: Vec<String> = hooks.iter().map(|h| format!("{h:?}.as_bytes()")).collect();
    checks.push_str(&match hooks.is_empty() {
        true => "        assert!(m.hooked_prefixes.is_empty());\n".to_string(),
        false => format!("        assert_eq!(m.hooked_prefixes, [{}]);\n", hooked.join(", ")),
    });
    let ty_of = if hooks.is_empty() { "Count" } else { ty };
    s.push_str(&format!(
        r#"
#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn manifest_names_the_crate() {{
        let m = {ty_of}::manifest();
{checks}    }}
}}
"#
    ));
    s
}

fn plugin_toml(name: &str, ns: &str, routes: &[String], hooks: &[String]) -> String {
    let line = |setting: String, comment: &str| format!("{setting:<32} # {comment}\n");
    let mut s = format!(
        "# {name}.toml: the operator's settings for plugin {name}. Put it beside {name}.wasm in the server's\n\
         # --plugin-dir. Every key is optional; nothing is granted unless listed. The reference: the SDK's docs\n\
         # (modkv_plugin_sdk::toml_reference, plugin-sdk/src/toml.md).\n\n"
    );
    s += &line(format!("# routes = [{}]", list(routes)), "narrows the routes the code declares");
    s += &line(format!("# hooked-prefixes = [{}]", list(hooks)), "narrows the key prefixes the code hooks");
    s += &line(
        "# failure-mode = \"fail-closed\"".into(),
        "a failing hook refuses the put (\"fail-open\": lets it through)",
    );
    s += "\n[grants]\n";
    let read = format!("read = [\"{ns}\"]");
    let read = if routes.is_empty() { format!("# {read}") } else { read };
    s += &line(read, "key prefixes kv::get / kv::range may read (\"\" = every key)");
    s += &line(format!("# write = [\"{ns}\"]"), "key prefixes kv::put / kv::delete may write");
    s += "\n# [limits]\n";
    s += &line("# memory-bytes = 67108864".into(), "linear memory per instance (default 64 MiB)");
    s += &line("# time-ms = 1000".into(), "per call (default 1000)");
    if !hooks.is_empty() {
        s += "\n[config]\n";
        s += &line("max-value-bytes = 64".into(), "longer values under the hooked prefixes are refused");
    }
    s
}

fn readme(name: &str, routes: &[String], hooks: &[String]) -> String {
    let file = name.replace('-', "_");
    let mut s = format!(
        r#"# {name}

A modkv plugin, made with `modkv plugin new`.

```sh
rustup target add wasm32-wasip2                  # once
cargo test                                       # the unit tests, on the host
cargo build --target wasm32-wasip2 --release
modkv plugin check target/wasm32-wasip2/release/{file}.wasm --toml {name}.toml
cp target/wasm32-wasip2/release/{file}.wasm {name}.toml /path/to/plugin-dir/
```

The server picks up new and changed files in its `--plugin-dir` by itself. A plugin is known by its
name, `{name}` (the crate's): its files must be `{name}.wasm` (or `{file}.wasm`) and `{name}.toml`.
"#
    );
    for r in routes {
        s.push_str(&format!("\n`curl -s localhost:2379{r}/a` counts the keys under `{name}/a`.\n"));
    }
    for h in hooks {
        s.push_str(&format!(
            "\n`etcdctl put {h}k <a value longer than max-value-bytes>` is refused by the plugin, and counted in\n\
             `modkv_plugin_{}_rejected_total` on `/metrics`.\n",
            name.replace('-', "_")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, routes: &[&str], hooks: &[&str]) -> Spec {
        Spec {
            name: name.into(),
            routes: routes.iter().map(|s| s.to_string()).collect(),
            hooks: hooks.iter().map(|s| s.to_string()).collect(),
            sdk: "/src/modkv/plugin-sdk".into(),
        }
    }

    #[test]
    fn a_crate_named_after_the_plugin() {
        let f = files(&spec("my-counter", &["/count"], &["limited/"])).unwrap();
        let names: Vec<String> = f.iter().map(|(p, _)| p.display().to_string()).collect();
        assert_eq!(names, ["Cargo.toml", "src/lib.rs", "my-counter.toml", "README.md", ".gitignore"]);
        assert!(f[0].1.contains("name = \"my-counter\"\n"), "{}", f[0].1);
        assert!(f[0].1.contains("modkv-plugin-sdk = { path = \"/src/modkv/plugin-sdk\" }"), "{}", f[0].1);
        assert!(f[0].1.contains("crate-type = [\"cdylib\"]") && f[0].1.contains("opt-level = \"s\""));
        let lib = &f[1].1;
        assert!(lib.contains("pub struct MyCounter;") && lib.contains(".hook_prefix(\"limited/\")"), "{lib}");
        assert!(lib.contains("Manifest::new(env!(\"CARGO_PKG_NAME\")"), "{lib}");
        assert!(f[2].1.contains("\nread = [\"my-counter/\"]"), "{}", f[2].1);
        assert!(f[2].1.contains("\nmax-value-bytes = 64"), "{}", f[2].1);
        // A route alone is a function with its route.
        let f = files(&spec("hi", &[], &[])).unwrap();
        assert!(f[1].1.contains("#[route(\"/hi\", method = \"GET\", stateless)]\nfn count("), "{}", f[1].1);
    }

    #[test]
    fn refuses_names_that_cannot_name_files() {
        for bad in ["", "1x", "a b", "a/b", "a.b"] {
            assert!(files(&spec(bad, &[], &[])).unwrap_err().contains("is not a plugin name"), "{bad}");
        }
        assert!(files(&spec("a", &["count"], &[])).unwrap_err().contains("a route is a path prefix like /a"));
        assert_eq!(camel("my-counter_x"), "MyCounterX");
    }
}
