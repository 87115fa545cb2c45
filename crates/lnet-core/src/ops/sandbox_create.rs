//! Sandbox create: validate → record `creating` (with the namespace path and files directory,
//! chosen first) → create and bind-mount the namespace → write `resolv.conf` and `hosts` →
//! record `ready`. An error undoes every step; a crash after the first write is rolled back
//! at start.

use std::path::PathBuf;

use lnet_kernel::Netns;
use lnet_store::{Lifecycle, SCHEMA_VERSION, SandboxRecord};

use crate::error::{CoreError, Result};
use crate::files::{self, DnsSettings};
use crate::ids;
use crate::kernel::SandboxKernel;
use crate::options::SandboxOptions;
use crate::state::{Cx, SandboxEntry, State};

use super::sandbox_support::open_sandbox_kernel;

/// Validates a hostname or domain name: dot-separated labels of letters, digits and '-',
/// each 1–63 characters, not starting or ending with '-', 253 characters in all.
fn validate_dns_name(field: &str, name: &str) -> Result<()> {
    let ok = name.len() <= 253
        && name.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(CoreError::invalid(
            field,
            name,
            "expected dot-separated labels of letters, digits and '-', each 1 to 63 characters, 253 in all",
        ))
    }
}

fn validate(container_id: &str, o: &SandboxOptions) -> Result<()> {
    ids::validate_name("container", container_id)?;
    if !o.hostname.is_empty() {
        validate_dns_name("hostname", &o.hostname)?;
    }
    if !o.domainname.is_empty() {
        validate_dns_name("domainname", &o.domainname)?;
    }
    for d in &o.dns_search {
        if d != "." {
            validate_dns_name("dns-search", d)?;
        }
    }
    for opt in &o.dns_options {
        if opt.is_empty() || opt.chars().any(char::is_whitespace) {
            return Err(CoreError::invalid(
                "dns-option",
                opt,
                "an option is one word, such as ndots:2 or rotate",
            ));
        }
        if let Some(n) = opt.strip_prefix("ndots:")
            && n.parse::<u32>().is_err()
        {
            return Err(CoreError::invalid(
                "dns-option",
                opt,
                "invalid number for ndots option: expected ndots:N with N a whole number >= 0",
            ));
        }
    }
    for (name, _) in &o.extra_hosts {
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '#') {
            return Err(CoreError::invalid(
                "add-host",
                name,
                "a host name must be non-empty, without whitespace or '#'",
            ));
        }
    }
    if o.handover && (o.host_mode || o.netns_path.is_none()) {
        return Err(CoreError::invalid(
            "handover",
            "true",
            "an engine's sandbox names its namespace (the plugin protocol's SandboxKey) and does not use host networking",
        ));
    }
    if o.host_mode && o.netns_path.is_some() {
        return Err(CoreError::invalid(
            "netns",
            o.netns_path
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string()),
            "a host-mode sandbox uses the host's namespace; give no namespace path",
        ));
    }
    Ok(())
}

/// The kernel's part of a sandbox create, run without the state lock (the caller holds the
/// new sandbox's key): its namespace (when lnet makes it), its resolv.conf, its kernel
/// handles.
pub(crate) fn make_sandbox(cx: &Cx, rec: &SandboxRecord) -> Result<Option<SandboxKernel>> {
    if rec.owns_netns {
        Netns::create_at(&rec.netns_path).map_err(CoreError::kernel(format!(
            "create network namespace {}",
            rec.netns_path.display()
        )))?;
    }
    if rec.handover {
        return Ok(None);
    }
    write_resolv_conf(cx, rec)?;
    Ok(if rec.host_mode {
        None
    } else {
        Some(open_sandbox_kernel(rec)?)
    })
}

impl State {
    /// Validates and journals sandbox `id` as `creating`; its entry is in memory from now
    /// (not live), so that a concurrent create sees its container's name taken.
    pub(crate) fn sandbox_create_begin(
        &mut self,
        cx: &Cx,
        id: &str,
        container_id: &str,
        o: SandboxOptions,
    ) -> Result<SandboxRecord> {
        validate(container_id, &o)?;
        if let Some(s) = self
            .sandboxes
            .values()
            .find(|s| s.rec.container_id == container_id)
        {
            return Err(CoreError::NameInUse {
                kind: "sandbox",
                name: container_id.into(),
                scope: format!(" (sandbox {})", ids::short_id(&s.rec.id)),
            });
        }
        if let Some(p) = o.netns_path.as_ref().filter(|_| !o.handover) {
            // Check the runtime's namespace before anything is written.
            Netns::open(p).map_err(|e| {
                CoreError::invalid(
                    "netns",
                    p.display(),
                    format!("not a network namespace that can be opened: {e}"),
                )
            })?;
        }
        let (netns_path, owns_netns) = match (&o.netns_path, o.host_mode) {
            (Some(p), _) => (p.clone(), false),
            (None, true) => (self.host_netns_path(cx)?, false),
            (None, false) => (
                lnet_store::default_netns_path(&cx.config.exec_root, id),
                true,
            ),
        };
        let mut rec = SandboxRecord {
            schema: SCHEMA_VERSION,
            state: Lifecycle::Creating,
            revision: 0,
            id: id.to_string(),
            container_id: container_id.to_string(),
            netns_path,
            owns_netns,
            files_dir: cx.config.sandboxes_dir().join(id),
            hostname: o.hostname,
            domainname: o.domainname,
            dns: o.dns,
            dns_search: o.dns_search,
            dns_options: o.dns_options,
            extra_hosts: o.extra_hosts,
            host_mode: o.host_mode,
            handover: o.handover,
        };
        cx.store.put(&mut rec)?;
        crate::failpoint::hit("sandbox-create:recorded");
        self.sandboxes
            .insert(id.to_string(), SandboxEntry::new(rec.clone(), None));
        Ok(rec)
    }

    /// Records the sandbox `ready` once its namespace and files are made; a failed create
    /// is undone.
    pub(crate) fn sandbox_create_end(
        &mut self,
        cx: &Cx,
        rec: SandboxRecord,
        made: Result<Option<SandboxKernel>>,
    ) -> Result<String> {
        let id = rec.id.clone();
        self.sandboxes.remove(&id);
        let mut entry = match made {
            Ok(kernel) => SandboxEntry::new(rec.clone(), kernel),
            Err(e) => {
                tracing::warn!(sandbox = %rec.container_id, error = %e, "sandbox create failed; undoing");
                if let Err(undo) = remove_sandbox_artifacts(&rec) {
                    tracing::error!(error = %undo, "undoing sandbox create failed; start-up will roll it back");
                    return Err(e);
                }
                if let Err(undo) = cx.store.delete(&rec) {
                    tracing::error!(error = %undo, "removing the creating sandbox record failed; start-up will roll it back");
                }
                return Err(e);
            }
        };
        self.sandboxes.insert(id.clone(), entry);
        if let Err(e) = self.write_hosts(cx, &id) {
            let entry = self.sandboxes.remove(&id).expect("inserted above");
            drop(entry);
            let _ = remove_sandbox_artifacts(&rec);
            let _ = cx.store.delete(&rec);
            return Err(e);
        }
        crate::failpoint::hit("sandbox-create:kernel-done");
        entry = self.sandboxes.remove(&id).expect("inserted above");
        entry.rec.state = Lifecycle::Ready;
        if let Err(e) = cx.store.put(&mut entry.rec) {
            drop(entry.kernel.take());
            drop(entry.ns.take());
            let _ = remove_sandbox_artifacts(&rec);
            let _ = cx.store.delete(&rec);
            return Err(e.into());
        }
        tracing::info!(sandbox = %rec.container_id, key = %entry.rec.netns_path.display(), "sandbox created");
        self.sandboxes.insert(id.clone(), entry);
        Ok(id)
    }

    /// The path of the host's own namespace, bind-mounted once at `<exec-root>/netns/default`
    /// (as libnetwork does) so host-mode sandboxes have a key like any other.
    pub(crate) fn host_netns_path(&mut self, cx: &Cx) -> Result<PathBuf> {
        let path = cx.config.exec_root.join("netns").join("default");
        if !Netns::is_mounted_at(&path) {
            self.host
                .ns()
                .bind_at(&path)
                .map_err(CoreError::kernel(format!(
                    "bind the host namespace at {}",
                    path.display()
                )))?;
        }
        Ok(path)
    }
}

/// Creates the sandbox's files directory and writes its `resolv.conf` from the host's and the
/// record's DNS settings.
pub(crate) fn write_resolv_conf(cx: &Cx, rec: &SandboxRecord) -> Result<()> {
    std::fs::create_dir_all(&rec.files_dir)
        .map_err(CoreError::io(format!("create {}", rec.files_dir.display())))?;
    let host_resolv = std::fs::read_to_string(&cx.config.host_resolv_conf).unwrap_or_default();
    let user = DnsSettings {
        servers: &rec.dns,
        search: &rec.dns_search,
        options: &rec.dns_options,
    };
    files::write_atomic(
        &rec.files_dir.join("resolv.conf"),
        &files::sandbox_resolv_conf(&host_resolv, &user, rec.host_mode),
    )
}

/// Removes what a sandbox made: its namespace (only if lnet created it) and its files.
/// Idempotent.
pub(crate) fn remove_sandbox_artifacts(rec: &SandboxRecord) -> Result<()> {
    if rec.owns_netns {
        Netns::delete_at(&rec.netns_path).map_err(CoreError::kernel(format!(
            "delete network namespace {}",
            rec.netns_path.display()
        )))?;
    }
    match std::fs::remove_dir_all(&rec.files_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CoreError::io(format!("remove {}", rec.files_dir.display()))(e)),
    }
}
