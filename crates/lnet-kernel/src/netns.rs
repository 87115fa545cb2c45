//! Network namespace handles.
//!
//! A [`Netns`] holds an open file descriptor of a network namespace (which
//! keeps the namespace alive) and, when it came from a file, that path.
//! Namespaces that must outlive the process are bind-mounted onto a file
//! ([`Netns::create_at`]), like `ip netns add` and Docker do.
//!
//! Namespace membership is per *thread*. Nothing here changes the namespace
//! of a thread it did not spawn: work inside a namespace happens on a fresh
//! scoped thread ([`Netns::run`], [`crate::Netlink::in_netns`]) that `setns`es
//! and then exits.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::statfs::{NSFS_MAGIC, fstatfs, statfs};

use crate::error::{KernelError, Result};
use crate::link::LOOPBACK_INDEX;
use crate::netlink::Netlink;

/// The calling thread's network namespace, as a file.
const THREAD_SELF_NETNS: &str = "/proc/thread-self/ns/net";
/// How many stacked nsfs mounts `delete_at` removes at most.
const MAX_STACKED_MOUNTS: usize = 16;

/// An open network namespace.
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
    path: Option<PathBuf>,
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn open_ro(path: &Path) -> io::Result<OwnedFd> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    Ok(OwnedFd::from(file))
}

/// Check that `fd` is a network namespace: on nsfs and of type
/// `CLONE_NEWNET`.
fn verify_netns(fd: &OwnedFd, path: &Path) -> Result<()> {
    let fs = fstatfs(fd).map_err(|e| KernelError::nix(format!("statfs {}", path.display()), e))?;
    if fs.filesystem_type() != NSFS_MAGIC {
        return Err(KernelError::NotANetns {
            path: path.to_path_buf(),
            detail: format!(
                "file system magic {:#x} is not nsfs",
                fs.filesystem_type().0
            ),
        });
    }
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd, which
    // is a valid open descriptor for the duration of the call.
    let nstype = unsafe { libc::ioctl(fd.as_raw_fd(), libc::NS_GET_NSTYPE) };
    if nstype < 0 {
        return Err(KernelError::io(
            format!("ioctl NS_GET_NSTYPE on {}", path.display()),
            io::Error::last_os_error(),
        ));
    }
    if nstype != libc::CLONE_NEWNET {
        return Err(KernelError::NotANetns {
            path: path.to_path_buf(),
            detail: format!("namespace type {nstype:#x}, not CLONE_NEWNET"),
        });
    }
    Ok(())
}

impl Netns {
    /// The calling thread's network namespace.
    pub fn current() -> Result<Netns> {
        let fd = open_ro(Path::new(THREAD_SELF_NETNS))
            .map_err(|e| KernelError::io(format!("open {THREAD_SELF_NETNS}"), e))?;
        Ok(Netns { fd, path: None })
    }

    /// Adopt an existing namespace file, such as `/proc/<pid>/ns/net` or a
    /// bind mount made by `ip netns add` or [`Netns::create_at`].
    pub fn open(path: impl AsRef<Path>) -> Result<Netns> {
        let path = path.as_ref();
        let fd = open_ro(path)
            .map_err(|e| KernelError::io(format!("open netns {}", path.display()), e))?;
        verify_netns(&fd, path)?;
        Ok(Netns {
            fd,
            path: Some(path.to_path_buf()),
        })
    }

    /// Create a new network namespace and bind-mount it at `path`.
    ///
    /// Creates the parent directory and an empty file at `path` if missing
    /// (an existing empty regular file is reused; anything else, or a
    /// namespace already mounted there, is an error). The namespace is
    /// created on a helper thread (`unshare(CLONE_NEWNET)`), bind-mounted,
    /// and its loopback interface is brought up. On failure everything done
    /// is undone (unmount, remove the file if it was created here).
    pub fn create_at(path: impl AsRef<Path>) -> Result<Netns> {
        let path = path.as_ref();
        let op = || format!("create netns at {}", path.display());

        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            fs::create_dir_all(parent).map_err(|e| {
                KernelError::io(
                    format!("{}: create directory {}", op(), parent.display()),
                    e,
                )
            })?;
        }
        if Netns::is_mounted_at(path) {
            return Err(KernelError::AlreadyMounted {
                path: path.to_path_buf(),
            });
        }
        let mut file_guard = FileGuard { path, armed: false };
        match fs::symlink_metadata(path) {
            Ok(md) if md.file_type().is_file() && md.len() == 0 => {}
            Ok(_) => {
                return Err(KernelError::invalid(
                    op(),
                    "path exists and is not an empty regular file",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o444)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(path)
                    .map_err(|e| KernelError::io(format!("{}: create file", op()), e))?;
                file_guard.armed = true;
            }
            Err(e) => return Err(KernelError::io(format!("{}: stat", op()), e)),
        }

        let fd = thread::scope(|s| {
            s.spawn(|| -> Result<OwnedFd> {
                // This thread is ours and ends right after; its namespace
                // change never leaks to another thread.
                unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(|e| KernelError::nix(format!("{}: unshare(CLONE_NEWNET)", op()), e))?;
                mount(
                    Some(THREAD_SELF_NETNS),
                    path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| KernelError::nix(format!("{}: bind-mount", op()), e))?;
                let mut mount_guard = MountGuard { path, armed: true };
                let fd = open_ro(path)
                    .map_err(|e| KernelError::io(format!("{}: open after mount", op()), e))?;
                verify_netns(&fd, path)?;
                Netlink::new()?.set_up(LOOPBACK_INDEX)?;
                mount_guard.armed = false;
                Ok(fd)
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })?;
        file_guard.armed = false;
        Ok(Netns {
            fd,
            path: Some(path.to_path_buf()),
        })
    }

    /// Bind-mount this namespace at `path` (creating the parent directory and
    /// an empty file), so that it can be opened by path like one made by
    /// [`Netns::create_at`]. Idempotent when this same namespace is already
    /// mounted there; another namespace there is [`KernelError::AlreadyMounted`].
    pub fn bind_at(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let op = || format!("bind netns {} at {}", self.describe(), path.display());
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            fs::create_dir_all(parent).map_err(|e| {
                KernelError::io(
                    format!("{}: create directory {}", op(), parent.display()),
                    e,
                )
            })?;
        }
        if Netns::is_mounted_at(path) {
            let there = Netns::open(path)?;
            if there.inode()? == self.inode()? {
                return Ok(());
            }
            return Err(KernelError::AlreadyMounted {
                path: path.to_path_buf(),
            });
        }
        let mut file_guard = FileGuard { path, armed: false };
        if fs::symlink_metadata(path).is_err() {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .map_err(|e| KernelError::io(format!("{}: create file", op()), e))?;
            file_guard.armed = true;
        }
        // The magic link of our own fd names the namespace; mount follows it.
        let source = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        mount(
            Some(source.as_str()),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| KernelError::nix(format!("{}: bind-mount", op()), e))?;
        file_guard.armed = false;
        Ok(())
    }

    /// Remove the namespace bind mount at `path` and the file (idempotent).
    ///
    /// Unmounts only if `path` is an nsfs mount (lazily, `MNT_DETACH`: the
    /// namespace lives on while something still holds it open), then removes
    /// the file. Returns whether anything was there. A directory at `path`
    /// is an error.
    pub fn delete_at(path: impl AsRef<Path>) -> Result<bool> {
        let path = path.as_ref();
        let mut existed = false;
        for _ in 0..MAX_STACKED_MOUNTS {
            if !Netns::is_mounted_at(path) {
                break;
            }
            match umount2(path, MntFlags::MNT_DETACH) {
                Ok(()) => existed = true,
                Err(Errno::EINVAL | Errno::ENOENT) => break,
                Err(e) => {
                    return Err(KernelError::nix(
                        format!("delete netns at {}: unmount", path.display()),
                        e,
                    ));
                }
            }
        }
        match fs::symlink_metadata(path) {
            Ok(md) if md.file_type().is_dir() => Err(KernelError::invalid(
                format!("delete netns at {}", path.display()),
                "path is a directory",
            )),
            Ok(_) => match fs::remove_file(path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(existed),
                Err(e) => Err(KernelError::io(
                    format!("delete netns at {}: remove file", path.display()),
                    e,
                )),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(existed),
            Err(e) => Err(KernelError::io(
                format!("delete netns at {}: stat", path.display()),
                e,
            )),
        }
    }

    /// True when `path` is an nsfs mount (a namespace bind mount).
    pub fn is_mounted_at(path: impl AsRef<Path>) -> bool {
        statfs(path.as_ref()).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
    }

    /// Run `f` on a freshly spawned thread that has entered this namespace,
    /// and return its result. The calling thread is not affected. Panics in
    /// `f` are resumed on the calling thread.
    ///
    /// Use it for sysctls and for creating sockets inside the namespace (a
    /// socket stays in the namespace it was created in).
    pub fn run<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        // Already there (the host namespace, from the controller's threads): no thread.
        let here = std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino());
        if here.is_ok_and(|ino| self.inode().is_ok_and(|mine| mine == ino)) {
            return Ok(f());
        }
        thread::scope(|s| {
            s.spawn(|| {
                self.enter_on_this_thread()?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Runs `f(i)` inside `namespaces[i]` for every `i` and returns the results in order.
    /// The work is spread over at most `threads` spawned threads, each moving from one
    /// namespace to the next (`setns`), so a thousand namespaces cost a few threads, not a
    /// thousand as [`Netns::run`] each would. What `f` opens (sockets) stays in the
    /// namespace it was opened in; the threads end with the call. Panics in `f` are resumed
    /// on the calling thread.
    pub fn run_in_each<R, F>(namespaces: &[&Netns], threads: usize, f: F) -> Vec<Result<R>>
    where
        F: Fn(usize) -> R + Sync,
        R: Send,
    {
        if namespaces.is_empty() {
            return Vec::new();
        }
        let per = namespaces.len().div_ceil(threads.max(1));
        let f = &f;
        thread::scope(|s| {
            let handles: Vec<_> = namespaces
                .chunks(per)
                .enumerate()
                .map(|(c, chunk)| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .enumerate()
                            .map(|(i, ns)| ns.enter_on_this_thread().map(|()| f(c * per + i)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }

    /// `setns` the calling thread into this namespace. Only for threads
    /// this crate spawned itself.
    pub(crate) fn enter_on_this_thread(&self) -> Result<()> {
        setns(&self.fd, CloneFlags::CLONE_NEWNET)
            .map_err(|e| KernelError::nix(format!("setns into netns {}", self.describe()), e))
    }

    /// The namespace file descriptor (e.g. for `IFLA_NET_NS_FD`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The file this namespace was opened from or mounted at, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The namespace inode number: equal for two handles of the same
    /// namespace (what `ip netns identify` compares).
    pub fn inode(&self) -> Result<u64> {
        let file = fs::File::from(
            self.fd
                .try_clone()
                .map_err(|e| KernelError::io(format!("dup netns {}", self.describe()), e))?,
        );
        let md = file
            .metadata()
            .map_err(|e| KernelError::io(format!("stat netns {}", self.describe()), e))?;
        Ok(md.ino())
    }

    /// Another handle to the same namespace (`dup`).
    pub fn try_clone(&self) -> Result<Netns> {
        Ok(Netns {
            fd: self
                .fd
                .try_clone()
                .map_err(|e| KernelError::io(format!("dup netns {}", self.describe()), e))?,
            path: self.path.clone(),
        })
    }

    /// A short description for messages: the path, or the fd number.
    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => format!("fd {}", self.fd.as_raw_fd()),
        }
    }
}

/// Removes a file created by `create_at` unless disarmed.
struct FileGuard<'a> {
    path: &'a Path,
    armed: bool,
}

impl Drop for FileGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(self.path);
        }
    }
}

/// Unmounts a bind mount made by `create_at` unless disarmed.
struct MountGuard<'a> {
    path: &'a Path,
    armed: bool,
}

impl Drop for MountGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = umount2(self.path, MntFlags::MNT_DETACH);
        }
    }
}

/// Prepare the **calling process** to `exec` a command as if inside a
/// container: in a private mount namespace of its own, in the network
/// namespace at `netns`, with each `(source, target)` of `binds`
/// bind-mounted over its target (e.g. a sandbox's `hosts` over
/// `/etc/hosts`).
///
/// In order: `unshare(CLONE_NEWNS)`, every mount made private
/// (recursively, so nothing done here propagates back to the host's mount
/// namespace), `setns` into `netns`, then the bind mounts. Every target
/// must already exist (a bind mount covers a file, it does not create one);
/// sources and targets are files or directories alike.
///
/// The process **must be single-threaded**: the kernel refuses a new mount
/// namespace to a thread sharing its file-system context, and a network
/// namespace entered by one thread is not the namespace of the others. That
/// means no async runtime, thread pool or helper thread may be alive when
/// this is called; it is checked first (`/proc/self/task`), so the error
/// says so instead of `EINVAL`. Call it right before `exec`: nothing done
/// here is undone, and the mounts vanish when the last process in the new
/// mount namespace exits.
///
/// To stay in the current network namespace (a host-network sandbox), pass
/// `/proc/self/ns/net`.
pub fn enter_for_exec(netns: &Path, binds: &[(&Path, &Path)]) -> Result<()> {
    let op = format!("enter netns {} for exec", netns.display());
    let threads = fs::read_dir("/proc/self/task")
        .map_err(|e| KernelError::io(format!("{op}: list /proc/self/task"), e))?
        .count();
    if threads != 1 {
        return Err(KernelError::invalid(
            op,
            format!("the process has {threads} threads; it must be single-threaded"),
        ));
    }
    // Opened (and checked to be a netns) before anything changes, so a wrong
    // path fails with the process as it was.
    let ns = Netns::open(netns)?;
    for (source, target) in binds {
        for p in [source, target] {
            fs::metadata(p)
                .map_err(|e| KernelError::io(format!("{op}: bind {}", p.display()), e))?;
        }
    }
    unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| KernelError::nix(format!("{op}: unshare(CLONE_NEWNS)"), e))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| KernelError::nix(format!("{op}: make every mount private"), e))?;
    setns(ns.fd(), CloneFlags::CLONE_NEWNET)
        .map_err(|e| KernelError::nix(format!("{op}: setns"), e))?;
    for (source, target) in binds {
        mount(
            Some(*source),
            *target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            KernelError::nix(
                format!(
                    "{op}: bind-mount {} over {}",
                    source.display(),
                    target.display()
                ),
                e,
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enter_for_exec_refuses_a_multithreaded_process() {
        // A test binary always has a main thread besides the test's, so this is the refusal
        // path, before anything changes (and needs no root).
        let e = enter_for_exec(Path::new("/proc/self/ns/net"), &[]).unwrap_err();
        assert!(e.to_string().contains("it must be single-threaded"), "{e}");
    }
}
