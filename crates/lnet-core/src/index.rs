//! The controller's endpoint table with the indexes the hot paths need: joins, leaves and
//! endpoint creation look endpoints up by sandbox and by network, and with thousands of
//! endpoints a scan of all of them on every call would make their cost grow with the host's
//! size (the join benchmark's scale target is 1,000 endpoints within 1.2× of one).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lnet_store::EndpointRecord;

#[derive(Debug, Default)]
pub(crate) struct Endpoints {
    by_id: BTreeMap<String, EndpointRecord>,
    by_sandbox: HashMap<String, BTreeSet<String>>,
    by_network: HashMap<String, BTreeMap<String, String>>,
}

fn unindex(map: &mut HashMap<String, BTreeSet<String>>, key: &str, id: &str) {
    if let Some(set) = map.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

impl Endpoints {
    /// Inserts or replaces a record, keeping the indexes in step.
    pub(crate) fn insert(&mut self, rec: EndpointRecord) {
        self.unlink(&rec.id);
        if let Some(j) = &rec.join {
            self.by_sandbox
                .entry(j.sandbox_id.clone())
                .or_default()
                .insert(rec.id.clone());
        }
        self.by_network
            .entry(rec.network_id.clone())
            .or_default()
            .insert(rec.name.clone(), rec.id.clone());
        self.by_id.insert(rec.id.clone(), rec);
    }

    fn unlink(&mut self, id: &str) {
        if let Some(old) = self.by_id.get(id) {
            if let Some(j) = &old.join {
                unindex(&mut self.by_sandbox, &j.sandbox_id, id);
            }
            if let Some(m) = self.by_network.get_mut(&old.network_id) {
                m.remove(&old.name);
                if m.is_empty() {
                    self.by_network.remove(&old.network_id);
                }
            }
        }
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<EndpointRecord> {
        self.unlink(id);
        self.by_id.remove(id)
    }

    pub(crate) fn get(&self, id: &str) -> Option<&EndpointRecord> {
        self.by_id.get(id)
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &EndpointRecord> {
        self.by_id.values()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The endpoints whose join record names `sandbox_id` (any join state).
    pub(crate) fn in_sandbox(&self, sandbox_id: &str) -> impl Iterator<Item = &EndpointRecord> {
        self.by_sandbox
            .get(sandbox_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id))
    }

    /// The endpoints of a network.
    pub(crate) fn in_network(&self, network_id: &str) -> impl Iterator<Item = &EndpointRecord> {
        self.by_network
            .get(network_id)
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|id| self.by_id.get(id))
    }

    /// The endpoint of a network with this name.
    pub(crate) fn by_name(&self, network_id: &str, name: &str) -> Option<&EndpointRecord> {
        self.by_network
            .get(network_id)?
            .get(name)
            .and_then(|id| self.by_id.get(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lnet_store::{JoinRecord, JoinState, Lifecycle};

    fn ep(id: &str, net: &str, name: &str, sb: Option<&str>) -> EndpointRecord {
        EndpointRecord {
            schema: 1,
            state: Lifecycle::Ready,
            revision: 0,
            id: id.into(),
            name: name.into(),
            network_id: net.into(),
            mac: None,
            addr_v4: None,
            addr_v6: None,
            aliases: vec![],
            options: Default::default(),
            ports: Vec::new(),
            join: sb.map(|s| JoinRecord {
                sandbox_id: s.into(),
                state: JoinState::Joined,
                host_ifname: None,
                container_ifname: None,
                priority: 0,
                order: 0,
                handover: None,
            }),
            ephemeral: false,
        }
    }

    fn ids<'a>(it: impl Iterator<Item = &'a EndpointRecord>) -> Vec<&'a str> {
        it.map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn indexes_follow_inserts_replacements_and_removals() {
        let mut t = Endpoints::default();
        t.insert(ep("a", "n1", "web", Some("s1")));
        t.insert(ep("b", "n1", "db", None));
        t.insert(ep("c", "n2", "web", Some("s1")));
        assert_eq!(ids(t.in_sandbox("s1")), ["a", "c"]);
        assert_eq!(ids(t.in_network("n1")), ["b", "a"]);
        assert_eq!(t.by_name("n2", "web").map(|e| e.id.as_str()), Some("c"));
        // A leave (join cleared) and a join elsewhere move the sandbox index.
        t.insert(ep("a", "n1", "web", None));
        t.insert(ep("b", "n1", "db", Some("s2")));
        assert_eq!(ids(t.in_sandbox("s1")), ["c"]);
        assert_eq!(ids(t.in_sandbox("s2")), ["b"]);
        t.remove("c");
        assert_eq!(ids(t.in_sandbox("s1")), Vec::<&str>::new());
        assert!(t.by_name("n2", "web").is_none());
        assert!(
            !t.by_sandbox.contains_key("s1") && !t.by_network.contains_key("n2"),
            "no empty index entries"
        );
        assert_eq!(t.len(), 2);
    }
}
