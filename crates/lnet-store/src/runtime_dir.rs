//! The runtime half of the store: sandbox and endpoint records as one JSON file each under
//! `<exec-root>/state/`, written by rename.
//!
//! Why a second backend: a sandbox and the endpoints joined to it describe kernel objects —
//! a network namespace, veth pairs — that live exactly as long as the running system. They
//! must survive the daemon dying (so it can find and reconcile what it made), but not a
//! reboot, which takes the objects with it. A rename on the exec root (a tmpfs, `/run/lnet`)
//! has exactly that durability, at the cost of a `write` and a `rename` (tens of µs) instead
//! of a disk flush (hundreds): the join/leave hot path pays no fsync, and after a reboot the
//! records are gone together with what they described. Networks, which must outlive reboots,
//! stay in redb on the data root.
//!
//! A write is atomic (temporary file, then rename over the old one): a reader or a crash sees
//! the old record or the new one. One process owns the directory (the redb lock on the data
//! root is held by the same process), so compare-and-swap reads the stored revision and
//! writes without further locking.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::StoreError;
use crate::records::RecordKind;

/// The directory holding the runtime records.
#[derive(Debug)]
pub(crate) struct RuntimeDir {
    root: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Record ids become file names: refuse anything that could leave the directory.
fn check_id(kind: RecordKind, id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.starts_with('.') || id.contains(['/', '\0']) {
        return Err(StoreError::Encode {
            kind,
            id: id.to_string(),
            message: "a record id must be non-empty, not start with '.', and contain no '/'".into(),
        });
    }
    Ok(())
}

impl RuntimeDir {
    pub(crate) fn open(root: &Path) -> Result<RuntimeDir, StoreError> {
        for kind in [RecordKind::Endpoint, RecordKind::Sandbox] {
            let dir = root.join(kind.as_str());
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(RuntimeDir {
            root: root.to_path_buf(),
        })
    }

    fn file(&self, kind: RecordKind, id: &str) -> PathBuf {
        self.root.join(kind.as_str()).join(format!("{id}.json"))
    }

    pub(crate) fn get(&self, kind: RecordKind, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_id(kind, id)?;
        let path = self.file(kind, id);
        match fs::read(&path) {
            Ok(raw) => Ok(Some(raw)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    pub(crate) fn write(&self, kind: RecordKind, id: &str, raw: &[u8]) -> Result<(), StoreError> {
        check_id(kind, id)?;
        let path = self.file(kind, id);
        let tmp = self.root.join(kind.as_str()).join(format!(".{id}.tmp"));
        let res = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(raw)?;
            fs::rename(&tmp, &path)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map_err(io_err(&path))
    }

    pub(crate) fn remove(&self, kind: RecordKind, id: &str) -> Result<(), StoreError> {
        check_id(kind, id)?;
        let path = self.file(kind, id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Every record file of a kind as (id, bytes). Leftover temporary files of an
    /// interrupted write are removed: the rename never happened, so the old record stands.
    pub(crate) fn list(&self, kind: RecordKind) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let dir = self.root.join(kind.as_str());
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            let raw = fs::read(entry.path()).map_err(io_err(&entry.path()))?;
            out.push((id.to_string(), raw));
        }
        out.sort();
        Ok(out)
    }
}
