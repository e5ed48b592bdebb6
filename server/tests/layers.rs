//! The top-level modules of `server/src` depend on each other in one direction only: this test reads
//! the sources, collects which module names which (`crate::x`, `use crate::{x, …}`, and `super::x` from
//! a top-level file), leaves out test code and comments, and fails on any circle, naming it and the
//! files that close it.
//!
//! ```text
//!   src/<module>.rs, src/<module>/**.rs ──▶ edges module → module (with the files that make them)
//!        ──▶ depth-first search ──▶ a back edge is a circle ──▶ fail with  a → b → … → a
//! ```
//!
//! Lower layers that need something of a higher one define a trait for it (the pre-put hook in
//! `server::hooks`, the metrics' `MemberView`); the higher layer implements it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// Removes `//` comments and every item marked `#[cfg(test)]` (up to its closing brace or semicolon).
fn without_tests_and_comments(src: &str) -> String {
    let code: String = src
        .lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string literal (a URL) is rare in paths; cutting there only drops text.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = String::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let (brace, semi) = (after.find('{'), after.find(';'));
        let end = match (brace, semi) {
            (_, Some(s)) if brace.is_none_or(|b| s < b) => s + 1,
            (Some(b), _) => {
                let mut depth = 0usize;
                let mut end = after.len();
                for (j, c) in after[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + j + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            _ => after.len(),
        };
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The identifier at the start of `s`.
fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The top-level module names `code` refers to. `top_level` says whether the file is the module's own
/// (`src/x.rs` or `src/x/mod.rs`), where `super::y` names the sibling module `y`.
fn referenced(code: &str, top_level: bool) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut prefixes = vec!["crate::"];
    if top_level {
        prefixes.push("super::");
    }
    for prefix in prefixes {
        for (i, _) in code.match_indices(prefix) {
            if i > 0 && code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let after = &code[i + prefix.len()..];
            if let Some(group) = after.strip_prefix('{') {
                // `crate::{a, b::c, d::{e, f}}`: the first segment of each top-level item.
                let mut depth = 0usize;
                let mut item_start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                            found.insert(ident(&group[j..]).to_string());
                            item_start = false;
                        }
                        c if c.is_whitespace() => {}
                        _ => item_start = false,
                    }
                }
            } else {
                found.insert(ident(after).to_string());
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The files among `files` that are modules declared `#[cfg(test)] mod x;` (and what is under them).
fn test_module_files(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for f in files {
        let code = std::fs::read_to_string(f).unwrap();
        let own_dir = match f.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs") => f.parent().unwrap().to_path_buf(),
            _ => f.with_extension(""),
        };
        for (i, _) in code.match_indices("#[cfg(test)]") {
            let decl = code[i + "#[cfg(test)]".len()..].trim_start();
            if let Some(rest) = decl.strip_prefix("mod ") {
                let name = ident(rest.trim_start());
                if rest.trim_start()[name.len()..].trim_start().starts_with(';') {
                    dirs.push(own_dir.join(name));
                }
            }
        }
    }
    files.iter().filter(|f| dirs.iter().any(|d| f.with_extension("") == *d || f.starts_with(d))).cloned().collect()
}

/// Edges between the top-level modules of `src` (the binary's `main.rs` and `lib.rs` are not modules).
fn graph(src: &Path) -> Graph {
    let mut modules = BTreeMap::new();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let p = e.path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if p.is_dir() || (p.extension().is_some_and(|x| x == "rs") && name != "lib" && name != "main") {
            modules.insert(name, p);
        }
    }
    let mut g = Graph::new();
    for (name, path) in &modules {
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(path, &mut files);
        } else {
            files.push(path.clone());
        }
        let test_only = test_module_files(&files);
        let edges = g.entry(name.clone()).or_default();
        for f in files.into_iter().filter(|f| !test_only.contains(f)) {
            let top_level = f == *path || f == path.join("mod.rs");
            let code = without_tests_and_comments(&std::fs::read_to_string(&f).unwrap());
            for to in referenced(&code, top_level) {
                if to != *name && modules.contains_key(&to) {
                    let shown = f.strip_prefix(src).unwrap().display().to_string();
                    edges.entry(to).or_default().insert(shown);
                }
            }
        }
    }
    g
}

/// The first circle found, as the list of modules along it (first = last).
fn find_circle(g: &Graph) -> Option<Vec<String>> {
    fn visit(g: &Graph, m: &str, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut circle = path[at..].to_vec();
            circle.push(m.to_string());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for to in g.get(m).into_iter().flat_map(|e| e.keys()) {
            if let Some(c) = visit(g, to, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys().find_map(|m| visit(g, m, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_form_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    assert!(g.len() > 10, "found only {:?} under {}", g.keys().collect::<Vec<_>>(), src.display());
    if let Some(circle) = find_circle(&g) {
        let mut why = String::new();
        for pair in circle.windows(2) {
            let files: Vec<&String> = g[&pair[0]][&pair[1]].iter().collect();
            why.push_str(&format!(
                "\n  {} → {}: {}",
                pair[0],
                pair[1],
                files.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        panic!("the top-level modules depend on each other in a circle: {}{why}", circle.join(" → "));
    }
}

#[test]
fn the_checker_sees_every_kind_of_reference_and_finds_circles() {
    let code = without_tests_and_comments(
        "use crate::{a, b::{c, d}, e::F};\n// crate::commented\nfn f() { crate::g::h(); super::i::j(); }\n\
         #[cfg(test)]\nmod tests { use crate::hidden; }\n#[cfg(test)]\nuse crate::hidden_too;\n",
    );
    let found = referenced(&code, true);
    assert_eq!(found, ["a", "b", "e", "g", "i"].iter().map(|s| s.to_string()).collect());
    assert!(!referenced(&code, false).contains("i"));

    let mut g = Graph::new();
    let edge = |g: &mut Graph, a: &str, b: &str| {
        g.entry(a.into()).or_default().entry(b.into()).or_default().insert(format!("{a}.rs"));
    };
    edge(&mut g, "api", "server");
    edge(&mut g, "server", "raft");
    assert_eq!(find_circle(&g), None);
    edge(&mut g, "raft", "api");
    assert_eq!(find_circle(&g).unwrap(), ["api", "server", "raft", "api"]);
}
