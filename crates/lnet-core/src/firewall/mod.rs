//! The firewall: lnet's nftables tables, kept in step with the records.
//!
//! [`ruleset`] is the fixed part (sets, chains, rules) and [`want`] the per-network and
//! per-port elements derived from records. [`Firewall`] programs them over netlink: every
//! change is one atomic transaction, and the connect path only adds or removes elements —
//! it never reads the ruleset back, and never spawns a process.
//!
//! Living beside other firewalls: an accept in lnet's table does not override a drop in
//! another table's base chain on the same hook (every base chain on a hook must accept a
//! packet). On a host whose `ip filter FORWARD` policy is drop (Docker sets it when it
//! turns on forwarding) lnet's routed traffic would die there. So for every foreign base
//! chain on the forward hook whose policy is drop, lnet prepends two rules per lnet bridge
//! — `iifname <bridge> accept` and `oifname <bridge> accept`, commented `lnet:<bridge>:in`
//! and `:out` — which defer to lnet's own chain, where the real decision is made (a drop
//! there still drops). They are added when a network is made, checked at start, and
//! removed with the network; nothing else in a foreign table is touched, and no policy is
//! changed.

pub mod ruleset;
pub mod want;

use std::collections::BTreeMap;

use lnet_kernel::conntrack::Conntrack;
use lnet_kernel::nft::{
    Batch, Chain, ChainInfo, ChainType, Element, ElementData, Family, Hook, NftSocket, Policy,
    Position, Rule, Set, set_flags,
};
use lnet_store::Proto;

use crate::error::{CoreError, Result};
use ruleset::{CHAINS, ChainSpec, SetName, TABLE, USER_CHAIN, rules};
pub use want::{Drift, NetFw, PortFw, Want, render_element};

fn kernel(ctx: impl Into<String>) -> impl FnOnce(lnet_kernel::KernelError) -> CoreError {
    CoreError::kernel(ctx)
}

fn set_def(s: SetName) -> Set<'static> {
    match s.data() {
        Some(d) => Set::map(s.family(), &TABLE, s.name(), s.key(), d),
        None if s.ranges() => {
            Set::new(s.family(), &TABLE, s.name(), s.key()).flags(set_flags::INTERVAL)
        }
        None => Set::new(s.family(), &TABLE, s.name(), s.key()),
    }
}

fn chain_def(c: &ChainSpec) -> Chain<'static> {
    match c.hook {
        Some((ty, hook, prio)) => {
            Chain::base(c.family, &TABLE, c.name, ty, hook, prio).policy(Policy::Accept)
        }
        None => Chain::regular(c.family, &TABLE, c.name),
    }
}

/// The kernel elements of one [`Want`] entry: a range `first..=last` is a start element
/// and an end element at `last + 1` (none when `last` is the family's last address).
fn elements_of(set: SetName, key: &[u8], value: &[u8]) -> Vec<Element> {
    if set.ranges() {
        let mut out = vec![Element::new(key.to_vec())];
        if let Some(end) = next_addr(value) {
            out.push(Element::new(end).interval_end());
        }
        return out;
    }
    let e = Element::new(key.to_vec());
    vec![if set.data().is_some() {
        e.data(value.to_vec())
    } else {
        e
    }]
}

/// The address after `a` (big-endian bytes), or `None` after the last one.
fn next_addr(a: &[u8]) -> Option<Vec<u8>> {
    let mut v = a.to_vec();
    for b in v.iter_mut().rev() {
        if *b == 0xff {
            *b = 0;
        } else {
            *b += 1;
            return Some(v);
        }
    }
    None
}

/// The address before `a`.
fn prev_addr(a: &[u8]) -> Vec<u8> {
    let mut v = a.to_vec();
    for b in v.iter_mut().rev() {
        if *b == 0 {
            *b = 0xff;
        } else {
            *b -= 1;
            break;
        }
    }
    v
}

/// What must change to turn `have` into `want`: elements to add, and elements to remove
/// (keys that are extra, or present with another value).
pub fn diff(want: &Want, have: &Want) -> (Want, Want) {
    let (mut add, mut remove) = (Want::new(), Want::new());
    let empty = BTreeMap::new();
    for set in SetName::ALL {
        let w = want.sets.get(&set).unwrap_or(&empty);
        let h = have.sets.get(&set).unwrap_or(&empty);
        for (k, v) in w {
            match h.get(k) {
                Some(hv) if hv == v => {}
                Some(_) => {
                    remove
                        .sets
                        .entry(set)
                        .or_default()
                        .insert(k.clone(), Vec::new());
                    add.sets
                        .entry(set)
                        .or_default()
                        .insert(k.clone(), v.clone());
                }
                None => {
                    add.sets
                        .entry(set)
                        .or_default()
                        .insert(k.clone(), v.clone());
                }
            }
        }
        for (k, v) in h {
            if !w.contains_key(k) {
                remove
                    .sets
                    .entry(set)
                    .or_default()
                    .insert(k.clone(), v.clone());
            }
        }
    }
    (add, remove)
}

/// A base chain's type, hook and priority.
type BaseHook = (ChainType, Hook, i32);

/// What [`Firewall::inspect_base`] found.
#[derive(Debug, Default)]
struct Base {
    table: bool,
    user_chain: bool,
    missing_sets: Vec<SetName>,
    wrong_sets: Vec<SetName>,
    missing_chains: Vec<&'static str>,
    wrong_hooks: Vec<(&'static str, Option<BaseHook>)>,
    wrong_rules: Vec<(&'static str, usize, usize)>,
}

impl Base {
    fn drift(&self) -> Vec<Drift> {
        let d = |kind, what: String| Drift { kind, what };
        if !self.table {
            return vec![d("missing", format!("table inet {TABLE}"))];
        }
        let mut out = Vec::new();
        if !self.user_chain {
            out.push(d("missing", format!("chain inet {TABLE} {USER_CHAIN}")));
        }
        for s in &self.missing_sets {
            out.push(d("missing", format!("set inet {TABLE} {}", s.name())));
        }
        for s in &self.wrong_sets {
            out.push(d(
                "different",
                format!("set inet {TABLE} {}: not {}", s.name(), s.declaration()),
            ));
        }
        for c in &self.missing_chains {
            out.push(d("missing", format!("chain inet {TABLE} {c}")));
        }
        for (c, hook) in &self.wrong_hooks {
            out.push(d(
                "different",
                format!("chain inet {TABLE} {c}: hook {hook:?}"),
            ));
        }
        for (c, have, want) in &self.wrong_rules {
            out.push(d(
                "different",
                format!("chain inet {TABLE} {c}: {have} rule(s), not the {want} lnet wants"),
            ));
        }
        out
    }
}

/// Whether a set in the kernel has the key, value and flags lnet gives `set`.
fn set_matches(set: SetName, info: &lnet_kernel::nft::SetInfo) -> bool {
    let len = |t: &[lnet_kernel::nft::DataType]| -> u32 {
        if t.len() == 1 {
            t[0].byte_len()
        } else {
            t.iter().map(|d| d.byte_len().next_multiple_of(4)).sum()
        }
    };
    let interval = info.flags & set_flags::INTERVAL != 0;
    info.key_len == len(set.key())
        && info.data_len == set.data().map(len)
        && interval == set.ranges()
}

fn element_drift(add: &Want, remove: &Want) -> Vec<Drift> {
    let mut d = Vec::new();
    for (kind, w) in [("missing", add), ("extra", remove)] {
        for (set, elems) in &w.sets {
            for (k, v) in elems {
                d.push(Drift {
                    kind,
                    what: format!("element {} {}", set.name(), render_element(*set, k, v)),
                });
            }
        }
    }
    d
}

/// Why a comment marks a foreign rule as lnet's: `lnet:<bridge>:in|out`.
fn foreign_comment(bridge: &str, dir: &str) -> String {
    format!("{}:{bridge}:{dir}", crate::config::instance())
}

fn foreign_bridge(comment: &str) -> Option<&str> {
    let rest = comment
        .strip_prefix(crate::config::instance())?
        .strip_prefix(':')?;
    rest.strip_suffix(":in")
        .or_else(|| rest.strip_suffix(":out"))
}

/// lnet's nftables state in one network namespace (the host's).
#[derive(Debug)]
pub struct Firewall {
    nft: NftSocket,
    ct: Option<Conntrack>,
    batch: Batch,
    deferred: bool,
}

impl Firewall {
    /// The netlink port lnet's changes come from: notifications carrying it are lnet's own.
    pub fn portid(&self) -> u32 {
        self.nft.portid()
    }

    /// A firewall programming the calling thread's network namespace.
    pub fn new() -> Result<Firewall> {
        Ok(Firewall {
            nft: NftSocket::new().map_err(kernel("open an nftables netlink socket"))?,
            ct: None,
            batch: Batch::new(),
            deferred: false,
        })
    }

    /// While deferred, element and foreign-rule changes are not sent: start-up recovery
    /// repairs every object first and then makes the whole firewall match the records in
    /// one transaction ([`Firewall::reconcile_elements`], [`Firewall::sync_foreign`]),
    /// which is faster and reports exactly what was wrong.
    pub fn set_deferred(&mut self, deferred: bool) {
        self.deferred = deferred;
    }

    fn commit(&mut self, what: &str) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let res = self.nft.commit(&self.batch);
        self.batch.clear();
        res.map_err(kernel(what.to_string()))
    }

    /// What of lnet's table is there and how it differs. Read-only.
    fn inspect_base(&mut self) -> Result<Base> {
        let mut base = Base::default();
        let tables = self
            .nft
            .tables(Family::Inet)
            .map_err(kernel("list inet tables"))?;
        if !tables.iter().any(|t| *t == *TABLE) {
            base.missing_sets = SetName::ALL.to_vec();
            base.missing_chains = CHAINS.iter().map(|c| c.name).collect();
            return Ok(base);
        }
        base.table = true;
        let sets = self
            .nft
            .sets(Family::Inet, &TABLE)
            .map_err(kernel(format!("list sets of inet {TABLE}")))?;
        for s in SetName::ALL {
            match sets.iter().find(|i| i.name == s.name()) {
                None => base.missing_sets.push(s),
                Some(i) if !set_matches(s, i) => base.wrong_sets.push(s),
                Some(_) => {}
            }
        }
        let chains = self
            .nft
            .chains(Family::Inet, &TABLE)
            .map_err(kernel(format!("list chains of inet {TABLE}")))?;
        base.user_chain = chains.iter().any(|c| c.name == USER_CHAIN);
        for c in &CHAINS {
            let Some(info) = chains.iter().find(|i| i.name == c.name) else {
                base.missing_chains.push(c.name);
                continue;
            };
            if info.hook != c.hook {
                base.wrong_hooks.push((c.name, info.hook));
                continue;
            }
            let have = self
                .nft
                .rules(c.family, &TABLE, c.name)
                .map_err(kernel(format!(
                    "list rules of chain inet {TABLE} {}",
                    c.name
                )))?;
            let want = rules(c);
            let same = have.len() == want.len()
                && have
                    .iter()
                    .zip(&want)
                    .all(|(h, (w, _))| h.exprs == w.exprs());
            if !same {
                base.wrong_rules.push((c.name, have.len(), want.len()));
            }
        }
        Ok(base)
    }

    /// Compares lnet's table, sets, chains and rules with the kernel's (not elements: see
    /// [`Firewall::check_elements`]). Read-only.
    pub fn check_base(&mut self) -> Result<Vec<Drift>> {
        Ok(self.inspect_base()?.drift())
    }

    /// Makes lnet's table, sets and chains exist with the right types and hooks, and its
    /// chains hold exactly its rules — one transaction; the `user` chain and the elements
    /// of sets that were right are left as they are. Returns what was wrong before.
    pub fn ensure_base(&mut self) -> Result<Vec<Drift>> {
        let base = self.inspect_base()?;
        let drift = base.drift();
        if drift.is_empty() {
            return Ok(drift);
        }
        let b = &mut self.batch;
        b.clear();
        b.add_table(Family::Inet, &TABLE);
        b.add_chain(&Chain::regular(Family::Inet, &TABLE, USER_CHAIN));
        // Empty every chain of ours that exists, so that sets and chains can be replaced
        // (a base chain's hook cannot be changed, a set's type neither: they are deleted
        // and made again), then rebuild. One transaction: no packet sees it half written.
        for c in CHAINS
            .iter()
            .filter(|c| !base.missing_chains.contains(&c.name))
        {
            b.flush_chain(c.family, &TABLE, c.name);
        }
        for (name, _) in &base.wrong_hooks {
            b.delete_chain(Family::Inet, &TABLE, name);
        }
        for s in &base.wrong_sets {
            b.delete_set(s.family(), &TABLE, s.name());
        }
        for s in SetName::ALL {
            b.add_set(&set_def(s));
        }
        for c in &CHAINS {
            b.add_chain(&chain_def(c));
        }
        for c in &CHAINS {
            for (r, _) in rules(c) {
                b.add_rule(&r);
            }
        }
        tracing::info!(?drift, "programming lnet's nftables ruleset");
        self.commit("program lnet's nftables table")?;
        Ok(drift)
    }

    /// Adds `add` and removes `remove`, in one transaction.
    pub fn apply(&mut self, add: &Want, remove: &Want) -> Result<()> {
        if self.deferred {
            return Ok(());
        }
        self.apply_now(add, remove)
    }

    fn apply_now(&mut self, add: &Want, remove: &Want) -> Result<()> {
        self.batch.clear();
        // The kernel elements of each non-empty set of `w`.
        let kernel_elements = |w: &Want| -> Vec<(SetName, Vec<Element>)> {
            w.sets
                .iter()
                .filter(|(_, elems)| !elems.is_empty())
                .map(|(set, elems)| {
                    let e = elems
                        .iter()
                        .flat_map(|(k, v)| elements_of(*set, k, v))
                        .collect();
                    (*set, e)
                })
                .collect()
        };
        for (set, e) in kernel_elements(remove) {
            self.batch
                .destroy_elements(set.family(), &TABLE, set.name(), &e);
        }
        for (set, e) in kernel_elements(add) {
            if set.data().is_some() {
                // A key already mapped to another value would fail the add: re-point it.
                self.batch
                    .destroy_elements(set.family(), &TABLE, set.name(), &e);
            }
            self.batch
                .add_elements(set.family(), &TABLE, set.name(), &e);
        }
        match self.commit("update lnet's nftables sets") {
            // With lnet's table gone, what was to be removed is gone too.
            Err(CoreError::Kernel { source, .. }) if source.is_not_found() && add.is_empty() => {
                Ok(())
            }
            Err(CoreError::Kernel { source, .. }) if source.is_not_found() => {
                Err(CoreError::Forbidden(format!(
                    "lnet's nftables table inet {TABLE} or one of its sets is missing ({source}); restart lnet to restore its firewall"
                )))
            }
            other => other,
        }
    }

    /// Every element of lnet's sets, as the kernel holds them.
    pub fn elements(&mut self) -> Result<Want> {
        let mut have = Want::new();
        for set in SetName::ALL {
            let elems = self
                .nft
                .set_elements(set.family(), &TABLE, set.name())
                .map_err(kernel(format!("list set {}", set.name())))?;
            let m = have.sets.entry(set).or_default();
            if set.ranges() {
                // Start and end elements, paired in address order; where one range ends
                // and the next starts at the same address, the end comes first.
                let mut sorted = elems;
                sorted.sort_by(|a, b| a.key.cmp(&b.key).then(b.interval_end.cmp(&a.interval_end)));
                let mut open: Option<Vec<u8>> = None;
                for e in sorted {
                    match (e.interval_end, open.take()) {
                        (true, Some(start)) => {
                            m.insert(start, prev_addr(&e.key));
                        }
                        (true, None) => {}
                        (false, prev) => {
                            // A start right after another start: the first one is open.
                            if let Some(start) = prev {
                                let all = vec![0xff; start.len()];
                                m.insert(start, all);
                            }
                            open = Some(e.key);
                        }
                    }
                }
                if let Some(start) = open {
                    let all = vec![0xff; start.len()];
                    m.insert(start, all);
                }
                continue;
            }
            for e in elems {
                let v = match e.data {
                    Some(ElementData::Value(v)) => v,
                    _ => Vec::new(),
                };
                m.insert(e.key, v);
            }
        }
        Ok(have)
    }

    /// Compares the elements of lnet's sets with `want`. Read-only.
    pub fn check_elements(&mut self, want: &Want) -> Result<Vec<Drift>> {
        let have = self.elements()?;
        let (add, remove) = diff(want, &have);
        Ok(element_drift(&add, &remove))
    }

    /// Makes the elements of lnet's sets exactly `want` (one read, one transaction).
    pub fn reconcile_elements(&mut self, want: &Want) -> Result<Vec<Drift>> {
        let have = self.elements()?;
        let (add, remove) = diff(want, &have);
        let drift = element_drift(&add, &remove);
        if !drift.is_empty() {
            self.apply_now(&add, &remove)?;
        }
        Ok(drift)
    }

    /// Forgets UDP conntrack entries of published ports that are going away, so a client
    /// that keeps sending is not still NATed to the old container (UDP "connections" never
    /// end by themselves). Best effort: a failure is logged, not returned.
    pub fn flush_udp(&mut self, ports: &[PortFw]) {
        let udp: Vec<&PortFw> = ports.iter().filter(|p| p.proto == Proto::Udp).collect();
        if udp.is_empty() {
            return;
        }
        if self.ct.is_none() {
            match Conntrack::new() {
                Ok(c) => self.ct = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open conntrack to flush UDP entries");
                    return;
                }
            }
        }
        let ct = self.ct.as_mut().expect("set above");
        for v6 in [false, true] {
            let res = ct.delete_where(v6, |e| {
                e.orig.proto == 17
                    && udp.iter().any(|p| {
                        p.host_ip.is_ipv6() == v6
                            && e.orig.dport == p.host_port
                            && (p.host_ip.is_unspecified() || e.orig.dst == p.host_ip)
                    })
            });
            match res {
                Ok(n) if n > 0 => tracing::debug!(entries = n, "flushed UDP conntrack entries"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "flushing UDP conntrack entries"),
            }
        }
    }

    /// Base chains of other tables on the forward hook (families ip, ip6, inet).
    fn foreign_forward_chains(&mut self) -> Result<Vec<ChainInfo>> {
        let mut out = Vec::new();
        for family in [Family::Ip, Family::Ip6, Family::Inet] {
            let tables = self
                .nft
                .tables(family)
                .map_err(kernel(format!("list {} tables", family.name())))?;
            for t in tables {
                if family == Family::Inet && *t == *TABLE {
                    continue;
                }
                let chains = self
                    .nft
                    .chains(family, &t)
                    .map_err(kernel(format!("list chains of {} {t}", family.name())))?;
                out.extend(
                    chains
                        .into_iter()
                        .filter(|c| matches!(c.hook, Some((_, Hook::Forward, _)))),
                );
            }
        }
        Ok(out)
    }

    /// Plans into the batch what makes every foreign forward chain whose policy is drop
    /// accept traffic of `bridges` (see the module doc), and removes lnet's rules there for
    /// bridges not in `bridges`, or from chains whose policy is no longer drop, when `prune`
    /// is set. Returns the
    /// drift; the batch holds the fix.
    fn plan_foreign<B: AsRef<str>>(&mut self, bridges: &[B], prune: bool) -> Result<Vec<Drift>> {
        let mut drift = Vec::new();
        self.batch.clear();
        for c in self.foreign_forward_chains()? {
            let where_ = format!("{} {} {}", c.family.name(), c.table, c.name);
            let rules = self
                .nft
                .rules(c.family, &c.table, &c.name)
                .map_err(kernel(format!("list rules of {where_}")))?;
            let drops = c.policy == Some(Policy::Drop);
            if drops {
                for br in bridges.iter().map(AsRef::as_ref) {
                    for dir in ["in", "out"] {
                        let comment = foreign_comment(br, dir);
                        if rules.iter().any(|r| r.comment.as_deref() == Some(&comment)) {
                            continue;
                        }
                        let r = Rule::new(c.family, &c.table, &c.name).position(Position::Prepend);
                        let r = if dir == "in" {
                            r.iifname(br)
                        } else {
                            r.oifname(br)
                        };
                        self.batch.add_rule(&r.accept().comment(&comment));
                        drift.push(Drift {
                            kind: "missing",
                            what: format!("rule in {where_}: {comment}"),
                        });
                    }
                }
            }
            for r in rules.iter().filter(|_| prune) {
                let Some(br) = r.comment.as_deref().and_then(foreign_bridge) else {
                    continue;
                };
                if !(drops && bridges.iter().any(|b| b.as_ref() == br)) {
                    self.batch
                        .delete_rule(c.family, &c.table, &c.name, r.handle);
                    drift.push(Drift {
                        kind: "extra",
                        what: format!(
                            "rule in {where_}: {}",
                            r.comment.as_deref().unwrap_or_default()
                        ),
                    });
                }
            }
        }
        Ok(drift)
    }

    /// Compares everything — lnet's table, chains and rules, the elements with `want`, and
    /// lnet's accept rules in other tables with what `bridges` need. Read-only; empty when
    /// all agree.
    pub fn check(&mut self, want: &Want, bridges: &[String]) -> Result<Vec<Drift>> {
        let mut drift = self.check_base()?;
        if !drift.iter().any(|d| d.what.starts_with("table")) {
            drift.extend(self.check_elements(want)?);
        }
        drift.extend(self.check_foreign(bridges)?);
        Ok(drift)
    }

    /// Compares lnet's accept rules in other tables' forward chains with what `bridges`
    /// need. Read-only.
    pub fn check_foreign(&mut self, bridges: &[String]) -> Result<Vec<Drift>> {
        let drift = self.plan_foreign(bridges, true);
        self.batch.clear();
        drift
    }

    /// Makes lnet's accept rules in other tables' forward chains exactly what `bridges`
    /// need (one transaction). Returns what it changed.
    pub fn sync_foreign(&mut self, bridges: &[String]) -> Result<Vec<Drift>> {
        let drift = self.plan_foreign(bridges, true)?;
        self.commit("update lnet's accept rules in other tables' forward chains")?;
        Ok(drift)
    }

    /// Adds lnet's accept rules for one new bridge to other tables' drop-policy forward
    /// chains, leaving every other rule alone.
    pub fn add_foreign(&mut self, bridge: &str) -> Result<()> {
        if self.deferred {
            return Ok(());
        }
        self.plan_foreign(&[bridge], false)?;
        self.commit("add lnet's accept rules to other tables' forward chains")
    }

    /// Removes lnet's rules for `bridge` from foreign forward chains.
    pub fn remove_foreign(&mut self, bridge: &str) -> Result<()> {
        if self.deferred {
            return Ok(());
        }
        self.batch.clear();
        for c in self.foreign_forward_chains()? {
            let rules = self
                .nft
                .rules(c.family, &c.table, &c.name)
                .map_err(kernel(format!("list rules of {} {}", c.table, c.name)))?;
            for r in rules {
                if r.comment.as_deref().and_then(foreign_bridge) == Some(bridge) {
                    self.batch
                        .delete_rule(c.family, &c.table, &c.name, r.handle);
                }
            }
        }
        self.commit("remove lnet's accept rules from other tables' forward chains")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_adds_missing_removes_extra_and_repoints_changed() {
        let mut want = Want::new();
        let mut have = Want::new();
        let s = SetName::Snat4;
        want.sets
            .entry(s)
            .or_default()
            .insert(b"a".to_vec(), b"1".to_vec());
        want.sets
            .entry(s)
            .or_default()
            .insert(b"b".to_vec(), b"2".to_vec());
        have.sets
            .entry(s)
            .or_default()
            .insert(b"b".to_vec(), b"9".to_vec());
        have.sets
            .entry(s)
            .or_default()
            .insert(b"c".to_vec(), b"3".to_vec());
        let (add, remove) = diff(&want, &have);
        let keys = |w: &Want| w.sets[&s].keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&add), [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(keys(&remove), [b"b".to_vec(), b"c".to_vec()]);
        let (add, remove) = diff(&want, &want);
        assert!(add.is_empty() && remove.is_empty());
    }

    #[test]
    fn ranges_become_start_and_end_elements() {
        let e = elements_of(SetName::Subnets4, &[10, 0, 0, 0], &[10, 0, 0, 255]);
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].key.as_slice(), e[0].interval_end),
            (&[10, 0, 0, 0][..], false)
        );
        assert_eq!(
            (e[1].key.as_slice(), e[1].interval_end),
            (&[10, 0, 1, 0][..], true)
        );
        // The last range of the family has no end element.
        assert_eq!(
            elements_of(SetName::Subnets4, &[255, 0, 0, 0], &[255; 4]).len(),
            1
        );
        assert_eq!(next_addr(&[10, 0, 0, 255]), Some(vec![10, 0, 1, 0]));
        assert_eq!(prev_addr(&[10, 0, 1, 0]), vec![10, 0, 0, 255]);
        assert_eq!(next_addr(&[255; 4]), None);
    }

    #[test]
    fn foreign_comments_round_trip() {
        assert_eq!(foreign_bridge(&foreign_comment("br-1", "in")), Some("br-1"));
        assert_eq!(
            foreign_bridge(&foreign_comment("br:x", "out")),
            Some("br:x")
        );
        assert_eq!(foreign_bridge("docker"), None);
        assert_eq!(foreign_bridge("lnet:br-1"), None);
    }
}
