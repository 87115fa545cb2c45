//! The names containers resolve: per network, each name (container, endpoint, alias) with
//! its addresses, and each address with the name its PTR answers. Derived from records,
//! rebuilt or amended by the daemon; lookups are by the asking sandbox's networks, so a
//! container sees only the names of networks it is on.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// One network's names.
#[derive(Debug, Clone, Default)]
struct Net {
    /// The network's name, lowercase (for `name.network`).
    name: String,
    /// No forwarding for sandboxes on internal networks only.
    internal: bool,
    /// Lowercase name → addresses, in the order they were added.
    by_name: HashMap<String, Vec<IpAddr>>,
    /// Address → `name.network`, the PTR answer.
    by_addr: HashMap<IpAddr, String>,
}

/// The name tables of every network with DNS. Each network's table is shared, so a copy
/// of the whole is cheap and a change to one network copies only that network's table
/// (a connect on one network of a thousand does not rebuild the others).
#[derive(Debug, Clone, Default)]
pub struct Names {
    nets: HashMap<String, Arc<Net>>,
}

/// Lowercase, without the trailing dot: names are case-insensitive.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Names {
    /// No names.
    pub fn new() -> Names {
        Names::default()
    }

    /// Declares a network (`id` is how views name it).
    pub fn add_network(&mut self, id: &str, name: &str, internal: bool) {
        let net = Arc::make_mut(self.nets.entry(id.to_string()).or_default());
        net.name = normalize(name);
        net.internal = internal;
    }

    /// Network `id`'s table taken from `from` (or removed, when `from` has none): the
    /// other networks' tables are not touched.
    pub fn replace_network(&mut self, id: &str, from: &Names) {
        match from.nets.get(id) {
            Some(net) => {
                self.nets.insert(id.to_string(), net.clone());
            }
            None => {
                self.nets.remove(id);
            }
        }
    }

    /// Adds an endpoint's names and addresses on network `id`; the first name answers
    /// PTR queries for the addresses. Several endpoints may share a name (an alias): all
    /// their addresses answer it.
    pub fn add(&mut self, id: &str, names: &[&str], addrs: &[IpAddr]) {
        let net = Arc::make_mut(self.nets.entry(id.to_string()).or_default());
        for n in names {
            let list = net.by_name.entry(normalize(n)).or_default();
            for a in addrs {
                if !list.contains(a) {
                    list.push(*a);
                }
            }
        }
        if let Some(primary) = names.first() {
            let ptr = if net.name.is_empty() {
                normalize(primary)
            } else {
                format!("{}.{}", normalize(primary), net.name)
            };
            for a in addrs {
                net.by_addr.insert(*a, ptr.clone());
            }
        }
    }

    /// Removes an endpoint's names and addresses from network `id`.
    pub fn remove(&mut self, id: &str, names: &[&str], addrs: &[IpAddr]) {
        let Some(net) = self.nets.get_mut(id).map(Arc::make_mut) else {
            return;
        };
        for n in names {
            let key = normalize(n);
            if let Some(list) = net.by_name.get_mut(&key) {
                list.retain(|a| !addrs.contains(a));
                if list.is_empty() {
                    net.by_name.remove(&key);
                }
            }
        }
        for a in addrs {
            net.by_addr.remove(a);
        }
    }

    /// The addresses `qname` has for a sandbox on networks `view`: a plain name on any of
    /// them, or `name.network` on that one. `None`: no such name (forward it); an empty
    /// list cannot happen.
    pub fn lookup<V: AsRef<str>>(&self, view: &[V], qname: &str) -> Option<Vec<IpAddr>> {
        let mut out = Vec::new();
        self.lookup_into(view, &normalize(qname), &mut out)
            .then_some(out)
    }

    /// [`Names::lookup`] of a name already normalized, into `out` (cleared first, no
    /// allocation once it has room); whether the name exists.
    pub fn lookup_into<V: AsRef<str>>(&self, view: &[V], q: &str, out: &mut Vec<IpAddr>) -> bool {
        out.clear();
        let mut found = false;
        for id in view {
            let Some(net) = self.nets.get(id.as_ref()) else {
                continue;
            };
            let hit = net.by_name.get(q).or_else(|| {
                let prefix = q.strip_suffix(net.name.as_str())?.strip_suffix('.')?;
                net.by_name.get(prefix)
            });
            if let Some(addrs) = hit {
                found = true;
                for a in addrs {
                    if !out.contains(a) {
                        out.push(*a);
                    }
                }
            }
        }
        found
    }

    /// The name of address `ip` for a sandbox on networks `view`.
    pub fn reverse<V: AsRef<str>>(&self, view: &[V], ip: IpAddr) -> Option<&str> {
        view.iter()
            .filter_map(|id| self.nets.get(id.as_ref()))
            .find_map(|n| n.by_addr.get(&ip).map(String::as_str))
    }

    /// Whether names not found are forwarded upstream: not when every network of the
    /// sandbox is internal (nothing there reaches the outside, not even by DNS).
    pub fn forwards<V: AsRef<str>>(&self, view: &[V]) -> bool {
        view.iter()
            .any(|id| self.nets.get(id.as_ref()).is_none_or(|n| !n.internal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn table() -> Names {
        let mut n = Names::new();
        n.add_network("a", "Front", false);
        n.add_network("b", "back", true);
        n.add(
            "a",
            &["web", "web-ep", "www"],
            &[ip("10.0.0.2"), ip("fd00::2")],
        );
        n.add("a", &["api", "www"], &[ip("10.0.0.3")]);
        n.add("b", &["db"], &[ip("10.1.0.2")]);
        n
    }

    #[test]
    fn names_are_scoped_by_network_and_case_insensitive() {
        let n = table();
        assert_eq!(
            n.lookup(&["a"], "WEB."),
            Some(vec![ip("10.0.0.2"), ip("fd00::2")])
        );
        assert_eq!(n.lookup(&["a"], "web.front"), n.lookup(&["a"], "web"));
        assert_eq!(n.lookup(&["a"], "db"), None, "not on the asker's networks");
        assert_eq!(n.lookup(&["a", "b"], "db.back"), Some(vec![ip("10.1.0.2")]));
        assert_eq!(n.lookup(&["a", "b"], "db.front"), None);
        assert_eq!(
            n.lookup(&["a"], "www"),
            Some(vec![ip("10.0.0.2"), ip("fd00::2"), ip("10.0.0.3")]),
            "an alias answers with every holder"
        );
    }

    #[test]
    fn ptr_names_and_removal() {
        let mut n = table();
        assert_eq!(n.reverse(&["a"], ip("10.0.0.3")), Some("api.front"));
        assert_eq!(n.reverse(&["b"], ip("10.0.0.3")), None);
        n.remove("a", &["api", "www"], &[ip("10.0.0.3")]);
        assert_eq!(n.lookup(&["a"], "api"), None);
        assert_eq!(
            n.lookup(&["a"], "www"),
            Some(vec![ip("10.0.0.2"), ip("fd00::2")])
        );
        assert_eq!(n.reverse(&["a"], ip("10.0.0.3")), None);
    }

    #[test]
    fn internal_only_sandboxes_do_not_forward() {
        let n = table();
        assert!(n.forwards(&["a"]));
        assert!(!n.forwards(&["b"]));
        assert!(n.forwards(&["a", "b"]));
    }

    #[test]
    fn one_networks_table_is_replaced_without_touching_the_others() {
        let mut n = table();
        let mut part = Names::new();
        part.add_network("a", "front", false);
        part.add("a", &["new"], &[ip("10.0.0.9")]);
        n.replace_network("a", &part);
        assert_eq!(n.lookup(&["a"], "new"), Some(vec![ip("10.0.0.9")]));
        assert_eq!(n.lookup(&["a"], "web"), None, "the old table of a is gone");
        assert_eq!(n.lookup(&["b"], "db.back"), Some(vec![ip("10.1.0.2")]));
        n.replace_network("a", &Names::new());
        assert_eq!(n.lookup(&["a"], "new"), None);
        assert!(n.forwards(&["a"]), "an unknown network forwards");
    }
}
