//! IP forwarding, and what lnet remembers of having turned it on.
//!
//! A bridge network's containers reach the world only through a host that forwards, so
//! lnet, like Docker, turns `net.ipv4.ip_forward` on (and `net.ipv6.conf.all.forwarding`
//! for IPv6 networks) when it is off ([`crate::Config::enable_ip_forward`]). But forwarding
//! is host-wide: from then on the host routes between all its interfaces, not only lnet's
//! bridges. So where lnet itself turned a family on — and only there: a host that forwarded
//! before lnet came is a router by its operator's choice — that family's forwarded traffic
//! that is not lnet's is dropped, by the `forward_guard` set of lnet's table (see
//! [`crate::firewall::ruleset`]), unless [`crate::Config::ip_forward_no_drop`]. Docker gets
//! the same by setting the `FORWARD` policy to drop; lnet changes no one's policy.
//!
//! What lnet turned on is a fact about this boot's kernel, which resets the sysctls when it
//! boots: it is kept in `<exec-root>/forwarding.json` (the exec root is a tmpfs that dies
//! with a reboot; the kernel's boot id in the file covers one that is not), so it survives a
//! daemon restart and not a reboot. It is written, and the guard put in the firewall, before
//! the sysctl is, so a crash or a failure between them errs towards the guard, never towards
//! a silent router; a family recorded whose
//! sysctl is off at the next start is forgotten (the write never happened, or someone has
//! turned it off since: either way there is nothing of lnet's to guard until lnet turns it on
//! again, which records it again).

use std::path::{Path, PathBuf};

use lnet_kernel::{IpFamily, sysctl};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// The file, under the exec root.
const FILE: &str = "forwarding.json";

/// What `forwarding.json` holds. Fields a later lnet adds are ignored, not refused: an
/// older one must not forget what was turned on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// `/proc/sys/kernel/random/boot_id` when it was written.
    boot_id: String,
    /// lnet turned `net.ipv4.ip_forward` on.
    ipv4: bool,
    /// lnet turned `net.ipv6.conf.all.forwarding` on.
    ipv6: bool,
    /// The daemon runs with `--ip-forward-no-drop`: what it turned on is not guarded. Kept
    /// so that `lnet firewall check` and `lnet doctor` without a daemon compare the
    /// firewall with what the daemon programmed.
    no_drop: bool,
}

/// The forwarding sysctl of a family.
fn key(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "net.ipv4.ip_forward",
        IpFamily::V6 => "net.ipv6.conf.all.forwarding",
    }
}

fn boot_id() -> String {
    // Not per namespace; unreadable only on a kernel without it, where every record then
    // counts as this boot's.
    sysctl::get("kernel.random.boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// What lnet turned on, as recorded on the exec root.
#[derive(Debug)]
pub struct Forwarding {
    path: PathBuf,
    rec: Record,
}

impl Forwarding {
    /// Reads the record under `exec_root`. None, or one of another boot, means lnet turned
    /// nothing on. A file that does not parse is moved aside (`forwarding.json.bad`) and
    /// reported in the returned notice: the start goes on as if lnet had turned nothing on.
    pub fn load(exec_root: &Path) -> (Forwarding, Option<String>) {
        let path = exec_root.join(FILE);
        let fresh = Record {
            boot_id: boot_id(),
            ..Record::default()
        };
        let (rec, notice) = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (fresh, None),
            Err(e) => {
                let n = format!(
                    "cannot read {}: {e}; taking it that lnet turned no IP forwarding on",
                    path.display()
                );
                (fresh, Some(n))
            }
            Ok(raw) => match serde_json::from_slice::<Record>(&raw) {
                Ok(r) if r.boot_id == fresh.boot_id => (r, None),
                // Written before a reboot, on an exec root that is not a tmpfs.
                Ok(_) => (fresh, None),
                Err(e) => {
                    let aside = path.with_extension("json.bad");
                    let moved = std::fs::rename(&path, &aside)
                        .map(|()| format!("moved to {}", aside.display()))
                        .unwrap_or_else(|e| format!("could not be moved aside: {e}"));
                    let n = format!(
                        "{} is not valid ({e}) and {moved}; taking it that lnet turned no IP forwarding on",
                        path.display()
                    );
                    (fresh, Some(n))
                }
            },
        };
        if let Some(n) = &notice {
            tracing::warn!("{n}");
        }
        (Forwarding { path, rec }, notice)
    }

    /// The families whose forwarding lnet turned on.
    pub fn turned_on(&self) -> Vec<IpFamily> {
        [(IpFamily::V4, self.rec.ipv4), (IpFamily::V6, self.rec.ipv6)]
            .into_iter()
            .filter_map(|(f, on)| on.then_some(f))
            .collect()
    }

    /// The families whose forwarded traffic that is not lnet's is dropped.
    pub fn guarded(&self) -> Vec<IpFamily> {
        if self.rec.no_drop {
            return Vec::new();
        }
        self.turned_on()
    }

    fn on(&mut self, family: IpFamily) -> &mut bool {
        match family {
            IpFamily::V4 => &mut self.rec.ipv4,
            IpFamily::V6 => &mut self.rec.ipv6,
        }
    }

    /// Writes the record (a crash leaves the old one or the new one).
    fn save(&self) -> Result<()> {
        let raw = serde_json::to_string(&self.rec).expect("the record serializes");
        crate::files::write_atomic(&self.path, &raw)
    }

    /// Sets whether what lnet turned on goes unguarded (the daemon's
    /// `--ip-forward-no-drop`), and records it when something is turned on (in memory even
    /// when the write fails).
    pub(crate) fn set_no_drop(&mut self, no_drop: bool) -> Result<()> {
        if self.rec.no_drop == no_drop {
            return Ok(());
        }
        self.rec.no_drop = no_drop;
        if self.turned_on().is_empty() {
            return Ok(());
        }
        self.save()
    }

    /// The first half of turning forwarding of `family` on, in the calling thread's
    /// network namespace: when it is off, records that lnet turns it on, and says so
    /// (true). The caller then puts the guard ([`Forwarding::guarded`]) in the firewall and
    /// only then calls [`Forwarding::turn_on`], so that no failure or crash in between
    /// leaves the host routing unguarded. A sysctl already on is left alone: writing
    /// `forwarding` resets per-interface settings.
    pub(crate) fn record_on(&mut self, family: IpFamily) -> Result<bool> {
        let key = key(family);
        let cur = sysctl::get(key).map_err(CoreError::kernel(format!("read {key}")))?;
        if cur.trim() == "1" {
            return Ok(false);
        }
        if !*self.on(family) {
            *self.on(family) = true;
            if let Err(e) = self.save() {
                *self.on(family) = false;
                return Err(e);
            }
        }
        Ok(true)
    }

    /// Writes the forwarding sysctl of `family` (see [`Forwarding::record_on`]). Left
    /// recorded if this fails: the next start forgets it, the sysctl being off.
    pub(crate) fn turn_on(&self, family: IpFamily) -> Result<()> {
        let key = key(family);
        sysctl::set(key, "1").map_err(CoreError::kernel(format!("enable {key}")))?;
        tracing::info!(
            sysctl = key,
            guarded = !self.rec.no_drop,
            "turned IP forwarding on; forwarded traffic that is not lnet's is dropped unless --ip-forward-no-drop"
        );
        Ok(())
    }

    /// Forgets the families recorded whose forwarding is off now in the calling thread's
    /// network namespace (see the module doc). What it forgot.
    pub(crate) fn forget_off(&mut self) -> Result<Vec<IpFamily>> {
        let mut gone = Vec::new();
        for family in self.turned_on() {
            // A kernel without IPv6 has no such sysctl: nothing forwards that family.
            let off = sysctl::get(key(family)).map_or(true, |v| v.trim() != "1");
            if off {
                *self.on(family) = false;
                gone.push(family);
            }
        }
        if !gone.is_empty() {
            self.save()?;
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_another_boot_or_none_turned_nothing_on() {
        let dir = tempfile::tempdir().unwrap();
        let (f, notice) = Forwarding::load(dir.path());
        assert_eq!((f.turned_on(), notice), (vec![], None));

        let mut rec = Record {
            boot_id: boot_id(),
            ipv4: true,
            ipv6: false,
            no_drop: false,
        };
        let write = |r: &Record| {
            std::fs::write(dir.path().join(FILE), serde_json::to_vec(r).unwrap()).unwrap()
        };
        write(&rec);
        let (f, _) = Forwarding::load(dir.path());
        assert_eq!(f.turned_on(), [IpFamily::V4]);
        assert_eq!(f.guarded(), [IpFamily::V4]);

        rec.no_drop = true;
        write(&rec);
        let (f, _) = Forwarding::load(dir.path());
        assert_eq!((f.turned_on(), f.guarded()), (vec![IpFamily::V4], vec![]));

        rec.boot_id = "another boot".into();
        write(&rec);
        assert_eq!(Forwarding::load(dir.path()).0.turned_on(), []);
    }

    #[test]
    fn a_damaged_record_is_moved_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{\"ipv4\": tru").unwrap();
        let (f, notice) = Forwarding::load(dir.path());
        assert_eq!(f.turned_on(), []);
        let notice = notice.expect("a notice");
        assert!(
            notice.contains("forwarding.json") && notice.contains("moved to"),
            "{notice}"
        );
        assert!(dir.path().join("forwarding.json.bad").exists());
        assert!(!dir.path().join(FILE).exists());
    }

    #[test]
    fn no_drop_is_recorded_only_with_something_turned_on() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, _) = Forwarding::load(dir.path());
        f.set_no_drop(true).unwrap();
        assert!(!dir.path().join(FILE).exists(), "nothing to record");
        f.rec.ipv6 = true;
        f.set_no_drop(false).unwrap();
        let (again, _) = Forwarding::load(dir.path());
        assert_eq!(again.guarded(), [IpFamily::V6]);
    }
}
