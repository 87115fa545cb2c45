//! Where a plugin is, found as libnetwork finds it: a socket `<name>.sock` or
//! `<name>/<name>.sock` in `/run/docker/plugins`, then a spec file `<name>.spec` (holding an
//! address) or `<name>.json` (`{"Name", "Addr", "TLSConfig"}`) in `/etc/docker/plugins` and
//! `/usr/lib/docker/plugins`.

use std::path::{Path, PathBuf};

use crate::client::Addr;

/// The directories plugins are looked for in, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    /// Directories of plugin sockets.
    pub sockets: Vec<PathBuf>,
    /// Directories of spec files.
    pub specs: Vec<PathBuf>,
}

impl Default for Dirs {
    /// Docker's.
    fn default() -> Dirs {
        Dirs {
            sockets: vec!["/run/docker/plugins".into()],
            specs: vec![
                "/etc/docker/plugins".into(),
                "/usr/lib/docker/plugins".into(),
            ],
        }
    }
}

impl Dirs {
    /// Every directory both ways (a test's or a user's own plugin directory).
    pub fn only(dirs: &[PathBuf]) -> Dirs {
        Dirs {
            sockets: dirs.to_vec(),
            specs: dirs.to_vec(),
        }
    }

    /// Where plugin `name` listens; why it was not found, naming where it was looked for.
    pub fn find(&self, name: &str) -> Result<Addr, String> {
        if !valid_name(name) {
            return Err(format!(
                "{name:?} is not a plugin name (letters, digits, '.', '_' and '-')"
            ));
        }
        let mut looked = Vec::new();
        for dir in &self.sockets {
            for p in [
                dir.join(format!("{name}.sock")),
                dir.join(name).join(format!("{name}.sock")),
            ] {
                if is_socket(&p) {
                    return Ok(Addr::Unix(p));
                }
                looked.push(p);
            }
        }
        for dir in &self.specs {
            for ext in ["spec", "json"] {
                let p = dir.join(format!("{name}.{ext}"));
                match std::fs::read_to_string(&p) {
                    Ok(text) => return spec(&p, &text, ext == "json"),
                    Err(_) => looked.push(p),
                }
            }
        }
        Err(format!(
            "no plugin {name:?}: looked for {}",
            looked
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Whether `name` can name a plugin (and so a file in a plugin directory).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// The address a spec file gives: a URL (`.spec`), or the `Addr` of a JSON spec.
fn spec(path: &Path, text: &str, json: bool) -> Result<Addr, String> {
    let url = if json {
        #[derive(serde::Deserialize)]
        struct Spec {
            #[serde(rename = "Addr")]
            addr: String,
            #[serde(rename = "TLSConfig", default)]
            tls: Option<serde_json::Value>,
        }
        let s: Spec = serde_json::from_str(text)
            .map_err(|e| format!("plugin spec {}: not valid: {e}", path.display()))?;
        if s.tls.as_ref().is_some_and(|t| !t.is_null()) {
            return Err(format!(
                "plugin spec {}: TLSConfig is not supported by lnet; serve the plugin on a unix socket",
                path.display()
            ));
        }
        s.addr
    } else {
        text.trim().to_string()
    };
    if let Some(p) = url.strip_prefix("unix://") {
        Ok(Addr::Unix(PathBuf::from(p)))
    } else if let Some(a) = url.strip_prefix("tcp://") {
        Ok(Addr::Tcp(a.trim_end_matches('/').to_string()))
    } else {
        Err(format!(
            "plugin spec {}: address {url:?}: expected unix:///path or tcp://host:port",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_come_before_spec_files_and_bad_names_find_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = Dirs::only(&[dir.path().to_path_buf()]);
        let e = dirs.find("p").unwrap_err();
        assert!(
            e.contains("p.sock") && e.contains("p.spec") && e.contains("p.json"),
            "{e}"
        );
        std::fs::write(dir.path().join("p.spec"), "tcp://127.0.0.1:9999\n").unwrap();
        assert_eq!(dirs.find("p").unwrap(), Addr::Tcp("127.0.0.1:9999".into()));
        std::fs::create_dir(dir.path().join("p")).unwrap();
        let sock = dir.path().join("p").join("p.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(dirs.find("p").unwrap(), Addr::Unix(sock));
        std::fs::write(
            dir.path().join("q.json"),
            r#"{"Name":"q","Addr":"unix:///run/q.sock"}"#,
        )
        .unwrap();
        assert_eq!(dirs.find("q").unwrap(), Addr::Unix("/run/q.sock".into()));
        std::fs::write(dir.path().join("r.spec"), "http://x").unwrap();
        assert!(dirs.find("r").unwrap_err().contains("expected unix"));
        for bad in ["", "../etc", "a/b", ".hidden"] {
            assert!(dirs.find(bad).is_err(), "{bad:?}");
        }
    }
}
