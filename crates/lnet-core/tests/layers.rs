//! lnet-core's modules in layers that only point down, with no cycle, and nothing generic
//! naming the bridge driver: read from the sources, so a change that breaks the picture
//! fails here, not in review.
//!
//! The picture (a module may use its own layer's modules and those of layers above it here):
//!
//! 1. plain types: config, drift, error, failpoint, ids, index, ipam, keys, options, ports,
//!    want
//! 2. the kernel: files, firewall, forwarding, hostports, kernel, reaper, reconcile, testing,
//!    watcher
//! 3. drivers: driver, drivers, ipam_driver
//! 4. the state: state
//! 5. operations and checks: doctor, heal, ops, recovery
//! 6. the controller: controller (and lib.rs, which re-exports)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const LAYERS: &[&[&str]] = &[
    &[
        "config",
        "drift",
        "error",
        "failpoint",
        "ids",
        "index",
        "ipam",
        "keys",
        "options",
        "ports",
        "want",
    ],
    &[
        "files",
        "firewall",
        "forwarding",
        "hostports",
        "kernel",
        "reaper",
        "reconcile",
        "testing",
        "watcher",
    ],
    &["driver", "drivers", "ipam_driver"],
    &["state"],
    &["doctor", "heal", "ops", "recovery"],
    &["controller", "lib"],
];

/// Every `.rs` file under `dir`, with its path relative to `src`.
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

/// The top module a source file belongs to (`ops/join.rs` → `ops`).
fn module_of(rel: &str) -> String {
    rel.split('/')
        .next()
        .unwrap()
        .trim_end_matches(".rs")
        .to_string()
}

/// The code of a file without its comments (doc links are not dependencies).
fn code(src: &str) -> String {
    src.lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `module → modules it names as crate::<module>`.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 20, "read the sources");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, src) in files {
        let from = module_of(&rel);
        let code = code(&src);
        let used = out.entry(from.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != from {
                used.insert(name);
            }
        }
    }
    out
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

#[test]
fn every_module_has_a_layer_and_uses_only_its_own_and_lower_ones() {
    let mut wrong = Vec::new();
    for (from, used) in edges() {
        let Some(lf) = layer_of(&from) else {
            wrong.push(format!("{from} has no layer: add it to LAYERS"));
            continue;
        };
        for to in used {
            match layer_of(&to) {
                // Items of lib.rs itself (crate::Controller, …) are the top layer's.
                None if to.chars().next().is_some_and(char::is_uppercase) => {
                    if lf < LAYERS.len() - 1 {
                        wrong.push(format!("{from} (layer {}) uses crate::{to}", lf + 1));
                    }
                }
                None => wrong.push(format!("{from} uses crate::{to}, which has no layer")),
                Some(lt) if lt > lf => wrong.push(format!(
                    "{from} (layer {}) uses {to} (layer {})",
                    lf + 1,
                    lt + 1
                )),
                Some(_) => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn no_module_depends_on_itself_through_others() {
    let edges = edges();
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for n in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(n, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        if let Some(cycle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            panic!("a module cycle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn nothing_outside_the_drivers_names_the_bridge_driver() {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let named: Vec<String> = files
        .iter()
        .filter(|(rel, _)| !rel.starts_with("drivers/"))
        .filter(|(_, src)| {
            let c = code(src);
            c.contains("drivers::bridge")
                || c.contains("BridgeConfig")
                || c.contains("\"bridge\" =>")
        })
        .map(|(rel, _)| rel.clone())
        .collect();
    assert!(named.is_empty(), "{named:?}");
}
