//! The embedded backend: one redb file, one table per record kind, JSON values.
//!
//! JSON rather than a binary codec because the records are small, change rarely, and an
//! operator reading a quarantined record (or a developer reading a bug report) can read it.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;

use crate::records::{EndpointRecord, NetworkRecord, Record, RecordKind, SandboxRecord};
use crate::runtime_dir::RuntimeDir;
use crate::{SCHEMA_VERSION, StoreError};

const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("network");
const ENDPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("endpoint");
const SANDBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("sandbox");
/// Key `<kind>/<id>`, value: JSON of [`Quarantined`].
const QUARANTINE: TableDefinition<&str, &[u8]> = TableDefinition::new("quarantine");

fn table(kind: RecordKind) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match kind {
        RecordKind::Network => NETWORKS,
        RecordKind::Endpoint => ENDPOINTS,
        RecordKind::Sandbox => SANDBOXES,
    }
}

fn backend<E: std::fmt::Display>(op: impl Into<String>) -> impl FnOnce(E) -> StoreError {
    let op = op.into();
    move |e| StoreError::Backend {
        op,
        message: e.to_string(),
    }
}

/// A record that could not be loaded, kept aside with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Quarantined {
    /// Which table it came from.
    pub kind: String,
    /// Its key.
    pub id: String,
    /// Why it was set aside.
    pub reason: String,
    /// The raw bytes as (lossy) text, for an operator to inspect or restore.
    pub raw: String,
    /// When, in Unix seconds.
    pub at_unix: u64,
}

/// Everything in the store, as loaded at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Network records.
    pub networks: Vec<NetworkRecord>,
    /// Endpoint records.
    pub endpoints: Vec<EndpointRecord>,
    /// Sandbox records.
    pub sandboxes: Vec<SandboxRecord>,
    /// Records quarantined by this load.
    pub quarantined: Vec<Quarantined>,
}

/// The store: networks (and the quarantine) in redb on the data root; sandboxes and
/// endpoints there too, or — with [`Store::open_with_runtime`] — as files on the exec root,
/// where they live exactly as long as the kernel objects they describe.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
    runtime: Option<RuntimeDir>,
}

impl Store {
    /// Opens (or creates) the store at `path`, creating parent directories.
    ///
    /// A file proven corrupt — cut short, not a redb file, or failing redb's checks — is
    /// renamed aside (`<path>.corrupt-<unix>`) and a fresh store is created, so that a
    /// damaged file never stops the daemon; the returned notice says where it went. Any
    /// other failure ([`StoreError::Unopenable`], [`StoreError::Format`],
    /// [`StoreError::Locked`]) leaves the file exactly as it was and is returned: a passing
    /// error must never cost the user their records.
    pub fn open(path: &Path) -> Result<(Store, Option<String>), StoreError> {
        Store::open_inner(path, None)
    }

    /// Opens the store with sandbox and endpoint records kept as files under `runtime`
    /// (`<exec-root>/state`): see the `runtime_dir` module for why.
    pub fn open_with_runtime(
        path: &Path,
        runtime: &Path,
    ) -> Result<(Store, Option<String>), StoreError> {
        Store::open_inner(path, Some(runtime))
    }

    fn open_inner(
        path: &Path,
        runtime: Option<&Path>,
    ) -> Result<(Store, Option<String>), StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let shown = path.display().to_string();
        let existed = path.symlink_metadata().is_ok();
        let mut notice = None;
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(e) => match OpenFailure::of(e) {
                OpenFailure::Corrupt(why) => {
                    let aside = format!("{shown}.corrupt-{}", unix_now());
                    std::fs::rename(path, &aside).map_err(|source| StoreError::Io {
                        path: shown.clone(),
                        source,
                    })?;
                    tracing::error!(path = %shown, moved_to = %aside, error = %why,
                        "store file corrupt; moved aside and starting with an empty store");
                    notice = Some(format!(
                        "store file {shown} is corrupt ({why}); it was moved to {aside} and an empty store was created"
                    ));
                    Database::create(path).map_err(backend(format!("create {shown}")))?
                }
                failure => {
                    // A file this open created (and could not finish, on a full disk, say)
                    // holds nothing: leave the directory as it was found.
                    if !existed {
                        let _ = std::fs::remove_file(path);
                    }
                    return Err(failure.into_error(shown));
                }
            },
        };
        let runtime = runtime.map(RuntimeDir::open).transpose()?;
        let store = Store {
            db,
            path: path.to_path_buf(),
            runtime,
        };
        store.ensure_tables()?;
        Ok((store, notice))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn ensure_tables(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(backend("begin write"))?;
        for def in [NETWORKS, ENDPOINTS, SANDBOXES, QUARANTINE] {
            tx.open_table(def).map_err(backend("create table"))?;
        }
        tx.commit().map_err(backend("commit"))
    }

    /// Loads every record. Records that do not parse, or whose schema is newer than this
    /// build, are moved to quarantine in the same pass.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        self.load_only(&RecordKind::ALL)
    }

    /// [`Store::load`] for the records of `kinds` only (a start reads the sandboxes first,
    /// to look at their namespaces while it reads the rest).
    pub fn load_only(&self, kinds: &[RecordKind]) -> Result<Loaded, StoreError> {
        let (mut loaded, bad) = read_all(&self.db, self.runtime.as_ref(), kinds)?;
        for (kind, key, reason, raw) in bad {
            tracing::error!(kind = %kind, id = %key, %reason, "quarantining unreadable record");
            loaded
                .quarantined
                .push(self.quarantine_raw(kind, &key, &reason, raw)?);
        }
        Ok(loaded)
    }

    /// Reads a store without changing it (a read-only open; it fails while another process
    /// has the store open for writing).
    /// Unreadable records are reported in [`Loaded::quarantined`] but left where they are;
    /// the records already in quarantine are returned second.
    pub fn inspect(
        path: &Path,
        runtime: Option<&Path>,
    ) -> Result<(Loaded, Vec<Quarantined>), StoreError> {
        let shown = path.display().to_string();
        let db = redb::ReadOnlyDatabase::open(path)
            .map_err(backend(format!("open {shown} read-only")))?;
        let runtime = runtime
            .filter(|r| r.is_dir())
            .map(RuntimeDir::open)
            .transpose()?;
        let (mut loaded, bad) = read_all(&db, runtime.as_ref(), &RecordKind::ALL)?;
        loaded.quarantined = bad
            .into_iter()
            .map(|(kind, id, reason, raw)| Quarantined {
                kind: kind.as_str().to_string(),
                id,
                reason,
                raw: String::from_utf8_lossy(&raw).into_owned(),
                at_unix: 0,
            })
            .collect();
        let tx = db.begin_read().map_err(backend("begin read"))?;
        let mut quarantined = Vec::new();
        if let Ok(t) = tx.open_table(QUARANTINE) {
            for item in t.iter().map_err(backend("iterate quarantine"))? {
                let (_, v) = item.map_err(backend("read quarantine"))?;
                if let Ok(q) = serde_json::from_slice::<Quarantined>(v.value()) {
                    quarantined.push(q);
                }
            }
        }
        Ok((loaded, quarantined))
    }

    /// Moves a record to quarantine (used by the controller for records that parse but
    /// cannot be valid, such as an endpoint of a network that does not exist).
    pub fn quarantine(&self, kind: RecordKind, id: &str, reason: &str) -> Result<(), StoreError> {
        let raw = self.raw_get(kind, id)?;
        if let Some(raw) = raw {
            self.quarantine_raw(kind, id, reason, raw)?;
        }
        Ok(())
    }

    fn quarantine_raw(
        &self,
        kind: RecordKind,
        id: &str,
        reason: &str,
        raw: Vec<u8>,
    ) -> Result<Quarantined, StoreError> {
        let q = Quarantined {
            kind: kind.as_str().to_string(),
            id: id.to_string(),
            reason: reason.to_string(),
            raw: String::from_utf8_lossy(&raw).into_owned(),
            at_unix: unix_now(),
        };
        let qkey = format!("{kind}/{id}");
        let value = serde_json::to_vec(&q).map_err(|e| StoreError::Encode {
            kind,
            id: id.to_string(),
            message: e.to_string(),
        })?;
        let tx = self.db.begin_write().map_err(backend("begin write"))?;
        {
            let mut qt = tx
                .open_table(QUARANTINE)
                .map_err(backend("open quarantine"))?;
            qt.insert(qkey.as_str(), value.as_slice())
                .map_err(backend("write quarantine"))?;
            if self.runtime_for(kind).is_none() {
                let mut t = tx.open_table(table(kind)).map_err(backend("open table"))?;
                t.remove(id).map_err(backend("remove quarantined record"))?;
            }
        }
        tx.commit().map_err(backend("commit quarantine"))?;
        // Kept in quarantine first, removed second: a crash between leaves it in both, and
        // the next load quarantines it again; never in neither.
        if let Some(rt) = self.runtime_for(kind) {
            rt.remove(kind, id)?;
        }
        Ok(q)
    }

    /// Everything in quarantine.
    pub fn quarantined(&self) -> Result<Vec<Quarantined>, StoreError> {
        let tx = self.db.begin_read().map_err(backend("begin read"))?;
        let t = tx
            .open_table(QUARANTINE)
            .map_err(backend("open quarantine"))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(backend("iterate quarantine"))? {
            let (_, v) = item.map_err(backend("read quarantine"))?;
            if let Ok(q) = serde_json::from_slice::<Quarantined>(v.value()) {
                out.push(q);
            }
        }
        Ok(out)
    }

    /// Reads one record. A record that does not parse reads as an error naming it.
    pub fn get<R: Record>(&self, id: &str) -> Result<Option<R>, StoreError> {
        match self.raw_get(R::KIND, id)? {
            None => Ok(None),
            Some(raw) => decode::<R>(id, &raw)
                .map(Some)
                .map_err(|message| StoreError::Backend {
                    op: format!("decode {} {id}", R::KIND),
                    message,
                }),
        }
    }

    /// The runtime directory, for the kinds that live there.
    fn runtime_for(&self, kind: RecordKind) -> Option<&RuntimeDir> {
        self.runtime
            .as_ref()
            .filter(|_| kind != RecordKind::Network)
    }

    fn raw_get(&self, kind: RecordKind, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(rt) = self.runtime_for(kind) {
            return rt.get(kind, id);
        }
        let tx = self.db.begin_read().map_err(backend("begin read"))?;
        let t = tx.open_table(table(kind)).map_err(backend("open table"))?;
        Ok(t.get(id)
            .map_err(backend("read"))?
            .map(|v| v.value().to_vec()))
    }

    /// Writes `record` atomically if the stored revision equals the record's current
    /// revision (0 means "must not exist yet"), then bumps the record's revision. When this
    /// returns, a network record is on disk (redb commit, fsync); a runtime record has been
    /// renamed into place on the exec root, which survives the process but not a reboot.
    pub fn put<R: Record>(&self, record: &mut R) -> Result<(), StoreError> {
        let expected = record.revision();
        let next = expected + 1;
        let mut copy = record.clone();
        copy.set_revision(next);
        let value = serde_json::to_vec(&copy).map_err(|e| StoreError::Encode {
            kind: R::KIND,
            id: record.id().to_string(),
            message: e.to_string(),
        })?;
        if let Some(rt) = self.runtime_for(R::KIND) {
            let found = rt
                .get(R::KIND, record.id())?
                .map(|raw| stored_revision(&raw));
            check_revision(R::KIND, record.id(), expected, found)?;
            rt.write(R::KIND, record.id(), &value)?;
            record.set_revision(next);
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(backend("begin write"))?;
        {
            let mut t = tx
                .open_table(table(R::KIND))
                .map_err(backend("open table"))?;
            let found = t
                .get(record.id())
                .map_err(backend("read"))?
                .map(|v| stored_revision(v.value()));
            check_revision(R::KIND, record.id(), expected, found)?;
            t.insert(record.id(), value.as_slice())
                .map_err(backend("write"))?;
        }
        tx.commit()
            .map_err(backend(format!("commit {} {}", R::KIND, record.id())))?;
        record.set_revision(next);
        Ok(())
    }

    /// Deletes `record` in one transaction if its stored revision still matches. Deleting a
    /// record that is already gone is not an error (recovery may repeat a delete).
    pub fn delete<R: Record>(&self, record: &R) -> Result<(), StoreError> {
        // What the stored copy must look like for the delete to go ahead; `false`: already gone.
        let may_delete = |found: Option<Option<u64>>| match found {
            None => Ok(false),
            Some(rev) if rev == Some(record.revision()) => Ok(true),
            Some(rev) => Err(StoreError::Conflict {
                kind: R::KIND,
                id: record.id().to_string(),
                expected: Some(record.revision()),
                found: rev,
            }),
        };
        if let Some(rt) = self.runtime_for(R::KIND) {
            let found = rt
                .get(R::KIND, record.id())?
                .map(|raw| stored_revision(&raw));
            return match may_delete(found)? {
                true => rt.remove(R::KIND, record.id()),
                false => Ok(()),
            };
        }
        let tx = self.db.begin_write().map_err(backend("begin write"))?;
        {
            let mut t = tx
                .open_table(table(R::KIND))
                .map_err(backend("open table"))?;
            let found = t
                .get(record.id())
                .map_err(backend("read"))?
                .map(|v| stored_revision(v.value()));
            if !may_delete(found)? {
                return Ok(());
            }
            t.remove(record.id()).map_err(backend("delete"))?;
        }
        tx.commit().map_err(backend(format!(
            "commit delete {} {}",
            R::KIND,
            record.id()
        )))
    }

    /// Writes raw bytes under a key, bypassing encoding. Only for tests that need to plant a
    /// damaged record.
    #[doc(hidden)]
    pub fn put_raw(&self, kind: RecordKind, id: &str, raw: &[u8]) -> Result<(), StoreError> {
        if let Some(rt) = self.runtime_for(kind) {
            return rt.write(kind, id, raw);
        }
        let tx = self.db.begin_write().map_err(backend("begin write"))?;
        {
            let mut t = tx.open_table(table(kind)).map_err(backend("open table"))?;
            t.insert(id, raw).map_err(backend("write"))?;
        }
        tx.commit().map_err(backend("commit"))
    }
}

type BadRecord = (RecordKind, String, String, Vec<u8>);

/// Decodes every record of every table; what does not decode is returned aside.
fn read_all(
    db: &impl ReadableDatabase,
    runtime: Option<&RuntimeDir>,
    kinds: &[RecordKind],
) -> Result<(Loaded, Vec<BadRecord>), StoreError> {
    let mut loaded = Loaded::default();
    let mut bad = Vec::new();
    let mut decode_into = |kind: RecordKind, key: String, raw: &[u8]| {
        let res = match kind {
            RecordKind::Network => {
                decode::<NetworkRecord>(&key, raw).map(|r| loaded.networks.push(r))
            }
            RecordKind::Endpoint => {
                decode::<EndpointRecord>(&key, raw).map(|r| loaded.endpoints.push(r))
            }
            RecordKind::Sandbox => {
                decode::<SandboxRecord>(&key, raw).map(|r| loaded.sandboxes.push(r))
            }
        };
        if let Err(reason) = res {
            bad.push((kind, key, reason, raw.to_vec()));
        }
    };
    let tx = db.begin_read().map_err(backend("begin read"))?;
    for &kind in kinds {
        if let Some(rt) = runtime.filter(|_| kind != RecordKind::Network) {
            for (key, raw) in rt.list(kind)? {
                decode_into(kind, key, &raw);
            }
            continue;
        }
        let t = match tx.open_table(table(kind)) {
            Ok(t) => t,
            // A store written before this table existed simply has none of these records.
            Err(redb::TableError::TableDoesNotExist(_)) => continue,
            Err(e) => return Err(backend("open table")(e)),
        };
        for item in t.iter().map_err(backend("iterate"))? {
            let (k, v) = item.map_err(backend("read record"))?;
            decode_into(kind, k.value().to_string(), v.value());
        }
    }
    Ok((loaded, bad))
}

/// Compare-and-swap: the stored revision must be the one the caller read (none: absent).
fn check_revision(
    kind: RecordKind,
    id: &str,
    expected: u64,
    found: Option<Option<u64>>,
) -> Result<(), StoreError> {
    let ok = match found {
        None => expected == 0,
        Some(rev) => rev == Some(expected),
    };
    if ok {
        return Ok(());
    }
    Err(StoreError::Conflict {
        kind,
        id: id.to_string(),
        expected: (expected != 0).then_some(expected),
        found: found.flatten(),
    })
}

/// Why redb would not open a database file, sorted by what lnet may do about it: only a
/// file whose bytes are proven wrong may be moved aside. Anything else — descriptors, a
/// read-only or full file system, permissions, a failing disk, a format from another
/// version — says nothing about the records in it, and moving the file would lose them.
#[derive(Debug)]
enum OpenFailure {
    Locked,
    Corrupt(String),
    Format(String),
    Unopenable(std::io::Error),
    Other(redb::DatabaseError),
}

impl OpenFailure {
    fn of(e: redb::DatabaseError) -> OpenFailure {
        use redb::{DatabaseError as D, StorageError as S};
        use std::io::ErrorKind;
        match e {
            D::DatabaseAlreadyOpen | D::LockProtocolMismatch => OpenFailure::Locked,
            D::UpgradeRequired(v) => OpenFailure::Format(format!(
                "it is in redb file format {v}, which must be upgraded before this lnet can read it"
            )),
            // redb reports a format newer than its own as corruption; it is not.
            D::Storage(S::Corrupted(m)) if m.starts_with("Expected file format version") => {
                OpenFailure::Format(format!("it was written by a newer lnet ({m})"))
            }
            D::Storage(S::Corrupted(m)) => OpenFailure::Corrupt(m),
            // Cut short, or not a redb file at all.
            D::Storage(S::Io(io))
                if matches!(io.kind(), ErrorKind::UnexpectedEof | ErrorKind::InvalidData) =>
            {
                OpenFailure::Corrupt(io.to_string())
            }
            D::Storage(S::Io(io)) => OpenFailure::Unopenable(io),
            other => OpenFailure::Other(other),
        }
    }

    fn into_error(self, path: String) -> StoreError {
        match self {
            OpenFailure::Locked => StoreError::Locked { path },
            OpenFailure::Format(detail) => StoreError::Format { path, detail },
            // What a caller that cannot move the file aside reports.
            OpenFailure::Corrupt(detail) => StoreError::Backend {
                op: format!("open {path}"),
                message: format!("the file is corrupt: {detail}"),
            },
            OpenFailure::Unopenable(os_error) => {
                let fix = fix_for(&os_error);
                StoreError::Unopenable {
                    path,
                    os_error,
                    fix,
                }
            }
            OpenFailure::Other(e) => StoreError::Backend {
                op: format!("open {path}"),
                message: e.to_string(),
            },
        }
    }
}

/// What a user can do about an operating-system error opening the store.
fn fix_for(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const EIO: i32 = 5;
    match (e.kind(), e.raw_os_error()) {
        (_, Some(EMFILE | ENFILE)) => {
            "Too few file descriptors: raise the open-file limit (`ulimit -n`, or LimitNOFILE= in the service unit) and start again"
        }
        (K::PermissionDenied, _) => {
            "lnet must read and write the file and its directory: run it as root, and check their owner and mode and any security module (SELinux, AppArmor) that denies it"
        }
        (K::ReadOnlyFilesystem, _) => {
            "Its file system is read-only: remount it read-write, or give lnet a writable --data-root"
        }
        (K::StorageFull | K::QuotaExceeded, _) => {
            "Its file system is full: free some space and start again"
        }
        (K::IsADirectory, _) => {
            "The path is a directory, not a file: move it away, or give lnet another --data-root"
        }
        (K::OutOfMemory, _) => "The system is out of memory: free some and start again",
        (_, Some(EIO)) => {
            "The disk failed to read or write it: check the kernel log (dmesg) and the disk, then start again or restore the file from a backup"
        }
        _ => "Fix what the error names and start again",
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn stored_revision(raw: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Rev {
        revision: u64,
    }
    serde_json::from_slice::<Rev>(raw).ok().map(|r| r.revision)
}

fn decode<R: Record>(key: &str, raw: &[u8]) -> Result<R, String> {
    #[derive(serde::Deserialize)]
    struct Schema {
        schema: u32,
    }
    let schema = serde_json::from_slice::<Schema>(raw)
        .map_err(|e| format!("not a readable {} record: {e}", R::KIND))?
        .schema;
    if schema > SCHEMA_VERSION {
        return Err(format!(
            "schema version {schema} is newer than this lnet understands ({SCHEMA_VERSION}); upgrade lnet to use it"
        ));
    }
    let rec: R = serde_json::from_slice(raw)
        .map_err(|e| format!("not a readable {} record: {e}", R::KIND))?;
    if rec.id() != key {
        return Err(format!(
            "record id {:?} does not match its key {key:?}",
            rec.id()
        ));
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{IpamSpec, Lifecycle};
    use std::collections::BTreeMap;

    fn net(id: &str) -> NetworkRecord {
        NetworkRecord {
            schema: SCHEMA_VERSION,
            state: Lifecycle::Creating,
            revision: 0,
            id: id.into(),
            name: format!("n-{id}"),
            driver: "bridge".into(),
            scope: "local".into(),
            created_unix_nanos: 1,
            ipam: IpamSpec {
                driver: "default".into(),
                ..Default::default()
            },
            pools: vec![],
            enable_ipv6: false,
            internal: false,
            attachable: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            driver_state: serde_json::Value::Null,
        }
    }

    #[test]
    fn put_get_cas_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lnet.db");
        {
            let (s, notice) = Store::open(&path).unwrap();
            assert!(notice.is_none());
            let mut n = net("a");
            s.put(&mut n).unwrap();
            assert_eq!(n.revision, 1);
            // A stale writer (revision 0 = "create") must lose.
            let mut stale = net("a");
            let err = s.put(&mut stale).unwrap_err();
            assert!(
                matches!(
                    err,
                    StoreError::Conflict {
                        expected: None,
                        found: Some(1),
                        ..
                    }
                ),
                "{err}"
            );
            n.state = Lifecycle::Ready;
            s.put(&mut n).unwrap();
            assert_eq!(n.revision, 2);
            let got: NetworkRecord = s.get("a").unwrap().unwrap();
            assert_eq!(got, n);
            let mut other = net("b");
            s.put(&mut other).unwrap();
            s.delete(&other).unwrap();
            s.delete(&other).unwrap(); // already gone: fine
            assert!(s.get::<NetworkRecord>("b").unwrap().is_none());
        }
        let (s, _) = Store::open(&path).unwrap();
        let loaded = s.load().unwrap();
        assert_eq!(loaded.networks.len(), 1);
        assert_eq!(loaded.networks[0].state, Lifecycle::Ready);
        assert_eq!(loaded.networks[0].revision, 2);
    }

    #[test]
    fn unreadable_and_future_records_are_quarantined_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Store::open(&dir.path().join("lnet.db")).unwrap();
        let mut good = net("good");
        s.put(&mut good).unwrap();
        s.put_raw(RecordKind::Network, "garbage", b"{not json")
            .unwrap();
        let mut future = serde_json::to_value(net("future")).unwrap();
        future["schema"] = serde_json::json!(SCHEMA_VERSION + 1);
        s.put_raw(RecordKind::Network, "future", future.to_string().as_bytes())
            .unwrap();
        s.put_raw(RecordKind::Endpoint, "e1", br#"{"schema":1,"id":"e1"}"#)
            .unwrap();

        let loaded = s.load().unwrap();
        assert_eq!(loaded.networks.len(), 1);
        assert_eq!(loaded.networks[0].id, "good");
        let mut ids: Vec<_> = loaded.quarantined.iter().map(|q| q.id.clone()).collect();
        ids.sort();
        assert_eq!(ids, ["e1", "future", "garbage"]);
        let fut = loaded
            .quarantined
            .iter()
            .find(|q| q.id == "future")
            .unwrap();
        assert!(fut.reason.contains("newer"), "{}", fut.reason);
        // Quarantine is durable and the bad records no longer load.
        let again = s.load().unwrap();
        assert!(again.quarantined.is_empty());
        assert_eq!(s.quarantined().unwrap().len(), 3);
    }

    #[test]
    fn inspect_reads_without_changing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lnet.db");
        {
            let (s, _) = Store::open(&path).unwrap();
            s.put(&mut net("good")).unwrap();
            s.put_raw(RecordKind::Network, "garbage", b"{not json")
                .unwrap();
        }
        let (loaded, q) = Store::inspect(&path, None).unwrap();
        assert_eq!(loaded.networks.len(), 1);
        assert_eq!(loaded.quarantined.len(), 1, "reported");
        assert!(q.is_empty(), "nothing moved to quarantine");
        // Still there for the next real load, which quarantines it.
        let (s, _) = Store::open(&path).unwrap();
        assert_eq!(s.load().unwrap().quarantined.len(), 1);
    }

    fn sandbox(id: &str) -> SandboxRecord {
        serde_json::from_value(serde_json::json!({
            "schema": SCHEMA_VERSION, "state": "ready", "revision": 0, "id": id,
            "container_id": format!("c-{id}"), "netns_path": "/run/x", "owns_netns": true,
            "files_dir": "/var/y"
        }))
        .unwrap()
    }

    #[test]
    fn runtime_records_live_in_files_with_the_same_guarantees() {
        let dir = tempfile::tempdir().unwrap();
        let (db, state) = (
            dir.path().join("data/lnet.db"),
            dir.path().join("run/state"),
        );
        {
            let (s, _) = Store::open_with_runtime(&db, &state).unwrap();
            let mut sb = sandbox("s1");
            s.put(&mut sb).unwrap();
            assert!(
                state.join("sandbox/s1.json").is_file(),
                "a file, not a redb row"
            );
            let mut stale = sandbox("s1");
            assert!(matches!(
                s.put(&mut stale),
                Err(StoreError::Conflict { .. })
            ));
            sb.hostname = "h".into();
            s.put(&mut sb).unwrap();
            assert_eq!(s.get::<SandboxRecord>("s1").unwrap().unwrap().hostname, "h");
            let mut gone = sandbox("s2");
            s.put(&mut gone).unwrap();
            s.delete(&gone).unwrap();
            s.delete(&gone).unwrap();
            s.put(&mut net("n")).unwrap();
            s.put_raw(RecordKind::Endpoint, "junk", b"{").unwrap();
            // A write torn before its rename leaves only a temporary file behind.
            std::fs::write(state.join("sandbox/.s3.tmp"), b"{half").unwrap();
        }
        let (s, _) = Store::open_with_runtime(&db, &state).unwrap();
        let loaded = s.load().unwrap();
        assert_eq!(loaded.networks.len(), 1, "networks stay in redb");
        let ids: Vec<_> = loaded
            .sandboxes
            .iter()
            .map(|s| (s.id.as_str(), s.revision))
            .collect();
        assert_eq!(ids, [("s1", 2)]);
        assert_eq!(loaded.quarantined.len(), 1);
        assert_eq!(loaded.quarantined[0].id, "junk");
        assert!(
            !state.join("endpoint/junk.json").exists(),
            "moved to quarantine"
        );
        assert!(
            !state.join("sandbox/.s3.tmp").exists(),
            "torn write cleaned up"
        );
        assert_eq!(s.quarantined().unwrap().len(), 1);
        assert!(s.put_raw(RecordKind::Sandbox, "../escape", b"{}").is_err());
        drop(s);
        let (inspected, q) = Store::inspect(&db, Some(&state)).unwrap();
        assert_eq!(inspected.sandboxes.len(), 1);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn load_only_reads_the_kinds_asked_for_and_quarantines_only_among_them() {
        let dir = tempfile::tempdir().unwrap();
        let (db, state) = (
            dir.path().join("data/lnet.db"),
            dir.path().join("run/state"),
        );
        let (s, _) = Store::open_with_runtime(&db, &state).unwrap();
        s.put(&mut sandbox("s1")).unwrap();
        s.put(&mut net("n1")).unwrap();
        s.put_raw(RecordKind::Endpoint, "junk", b"{").unwrap();

        let first = s.load_only(&[RecordKind::Sandbox]).unwrap();
        assert_eq!(first.sandboxes.len(), 1);
        assert!(first.networks.is_empty() && first.endpoints.is_empty());
        assert!(first.quarantined.is_empty(), "endpoints were not read");
        assert!(state.join("endpoint/junk.json").exists());

        let rest = s
            .load_only(&[RecordKind::Network, RecordKind::Endpoint])
            .unwrap();
        assert!(rest.sandboxes.is_empty());
        assert_eq!(rest.networks.len(), 1);
        assert_eq!(rest.quarantined.len(), 1);
        assert_eq!(rest.quarantined[0].id, "junk");
    }

    #[test]
    fn a_garbage_database_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lnet.db");
        std::fs::write(&path, vec![0xA5u8; 8192]).unwrap();
        let (s, notice) = Store::open(&path).unwrap();
        let notice = notice.expect("a notice about the moved file");
        assert!(notice.contains("corrupt"), "{notice}");
        assert!(s.load().unwrap().networks.is_empty());
        let moved = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("lnet.db.corrupt-")
            });
        assert!(moved);
    }

    /// A database cut short (a full disk, a copy interrupted): the store still opens —
    /// repaired by redb, or moved aside with a notice — and takes new records.
    #[test]
    fn a_truncated_database_file_still_opens() {
        for keep in [4096usize, 3, 2] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("lnet.db");
            {
                let (s, _) = Store::open(&path).unwrap();
                for i in 0..50 {
                    s.put(&mut net(&format!("n{i}"))).unwrap();
                }
            }
            let len = std::fs::metadata(&path).unwrap().len() as usize;
            let cut = if keep > 100 { keep } else { len / keep };
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..cut.min(len)]).unwrap();
            let (s, notice) =
                Store::open(&path).unwrap_or_else(|e| panic!("cut at {cut} of {len} bytes: {e}"));
            let loaded = s.load().unwrap();
            // Whatever is not there any more is said: a notice, or every record intact.
            assert!(
                notice.is_some() || loaded.networks.len() == 50,
                "cut at {cut} of {len} bytes: {} networks and no notice",
                loaded.networks.len()
            );
            s.put(&mut net("after")).unwrap();
            assert!(s.load().unwrap().networks.iter().any(|n| n.id == "after"));
        }
    }

    /// A store with records in it, and its bytes.
    fn store_with_networks(path: &Path) -> Vec<u8> {
        {
            let (s, _) = Store::open(path).unwrap();
            for i in 0..5 {
                s.put(&mut net(&format!("n{i}"))).unwrap();
            }
        }
        std::fs::read(path).unwrap()
    }

    fn siblings(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Both commit slots of a redb file claim a file format: offset 64 and 64 + 128 (redb
    /// 4's header layout; if redb moves them this test fails, rather than passing blind).
    fn set_format_version(bytes: &mut [u8], v: u8) {
        bytes[64] = v;
        bytes[64 + 128] = v;
    }

    #[test]
    fn a_store_from_a_newer_or_older_format_is_refused_and_left_alone() {
        for (version, says) in [(9u8, "newer lnet"), (2, "upgraded")] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("lnet.db");
            let mut bytes = store_with_networks(&path);
            set_format_version(&mut bytes, version);
            std::fs::write(&path, &bytes).unwrap();
            let err = Store::open(&path).unwrap_err();
            assert!(matches!(err, StoreError::Format { .. }), "{err}");
            let msg = err.to_string();
            for part in [path.to_str().unwrap(), says, "left as it is"] {
                assert!(msg.contains(part), "{part:?} missing from: {msg}");
            }
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "the file is untouched"
            );
            assert_eq!(siblings(dir.path()), ["lnet.db"], "nothing moved aside");
            // Put back as it was written, every record is there.
            set_format_version(&mut bytes, 3);
            std::fs::write(&path, &bytes).unwrap();
            let (s, notice) = Store::open(&path).unwrap();
            assert!(notice.is_none());
            assert_eq!(s.load().unwrap().networks.len(), 5);
        }
    }

    #[test]
    fn an_os_error_at_open_is_returned_with_its_fix_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: an OS error that is no corruption.
        let path = dir.path().join("lnet.db");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), b"x").unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Unopenable { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(path.to_str().unwrap()), "{msg}");
        assert!(msg.contains("a directory, not a file"), "{msg}");
        assert!(path.join("keep").is_file(), "left as it was");
        assert_eq!(siblings(dir.path()), ["lnet.db"]);
    }

    #[test]
    fn classification_moves_aside_only_what_is_proven_corrupt() {
        use redb::{DatabaseError as D, StorageError as S};
        use std::io::{Error, ErrorKind};
        let corrupt = |e: D| matches!(OpenFailure::of(e), OpenFailure::Corrupt(_));
        assert!(corrupt(D::Storage(S::Corrupted("bad page".into()))));
        assert!(corrupt(D::Storage(S::Io(Error::from(
            ErrorKind::UnexpectedEof
        )))));
        assert!(corrupt(D::Storage(S::Io(Error::new(
            ErrorKind::InvalidData,
            "Not a redb database: magic number mismatch"
        )))));
        for errno in [5, 13, 23, 24, 28, 30, 122, 12] {
            let e = D::Storage(S::Io(Error::from_raw_os_error(errno)));
            let f = OpenFailure::of(e);
            assert!(
                matches!(f, OpenFailure::Unopenable(_)),
                "errno {errno}: {f:?}"
            );
            let err = f.into_error("/x/lnet.db".into()).to_string();
            assert!(
                !err.contains("Fix what the error names"),
                "errno {errno} has a specific fix: {err}"
            );
        }
        assert!(matches!(
            OpenFailure::of(D::UpgradeRequired(2)),
            OpenFailure::Format(_)
        ));
        assert!(matches!(
            OpenFailure::of(D::Storage(S::Corrupted(
                "Expected file format version <= 3, found 9".into()
            ))),
            OpenFailure::Format(_)
        ));
        assert!(matches!(
            OpenFailure::of(D::DatabaseAlreadyOpen),
            OpenFailure::Locked
        ));
    }

    #[test]
    fn a_second_open_of_the_same_file_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lnet.db");
        let (_s, _) = Store::open(&path).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("another process"));
    }
}
