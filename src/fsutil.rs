//! Durable, atomic, private files: the one place cryptvol writes metadata.
//!
//! Every metadata file (the KMS key store, the account id, the root key,
//! snapshot manifests) must survive a crash at any instant as either the
//! whole old version or the whole new one, and must not be readable by other
//! users of the host. The recipe is the POSIX one:
//!
//! 1. write the new contents to a temporary file in the *same* directory
//!    (created `0600`, `O_EXCL`),
//! 2. `fsync` it,
//! 3. `rename` it over the target (atomic on POSIX file systems),
//! 4. `fsync` the directory so the rename itself is durable.
//!
//! Creating a file that must not be overwritten if it exists (the root key,
//! the account id) uses `link` instead of `rename` in step 3, which fails
//! with `EEXIST` rather than replacing, so two processes racing to create it
//! agree on one winner.
//!
//! Directories are created `0700`; existing directories keep their mode (the
//! user may have chosen it). Process-level exclusion uses `flock(2)` through
//! std's [`File::lock`], released when the [`FileLock`] guard drops (or the
//! process dies, so a `kill -9` never leaves a stale lock).
//!
//! A crash between steps 1 and 3 leaves a `.NAME.tmp-*` file behind; it is
//! harmless and never read.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of directories cryptvol creates: owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of files cryptvol creates: owner read/write only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// A file-system step failed. The message names the step, the path and the
/// OS error, so it is complete on its own (no source chain to walk).
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: {io}", path.display())]
pub struct FsError {
    /// The step that failed, as a verb phrase ("write", "rename", "lock", …).
    pub op: &'static str,
    /// The path the step was acting on.
    pub path: PathBuf,
    /// The OS error.
    pub io: io::Error,
}

impl FsError {
    pub fn new(op: &'static str, path: &Path, io: io::Error) -> FsError {
        FsError {
            op,
            path: path.to_path_buf(),
            io,
        }
    }

    /// The kind of the underlying OS error.
    pub fn kind(&self) -> io::ErrorKind {
        self.io.kind()
    }
}

impl From<FsError> for io::Error {
    fn from(e: FsError) -> io::Error {
        io::Error::new(e.io.kind(), e)
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `path` and any missing ancestors with mode `0700`, fsyncing each
/// new directory's parent so the creation is durable. Existing directories
/// are left as they are. Safe against another process creating the same
/// directories at the same time.
pub fn create_private_dir_all(path: &Path) -> Result<(), FsError> {
    let mut missing = Vec::new();
    let mut cur = path;
    loop {
        match fs::metadata(cur) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                let e = io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "it exists and is not a directory",
                );
                return Err(FsError::new("create directory", cur, e));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(cur);
                match cur.parent() {
                    Some(p) if !p.as_os_str().is_empty() => cur = p,
                    _ => break,
                }
            }
            Err(e) => return Err(FsError::new("inspect", cur, e)),
        }
    }
    for dir in missing.iter().rev() {
        match DirBuilder::new().mode(PRIVATE_DIR_MODE).create(dir) {
            Ok(()) => sync_dir(parent_dir(dir))?,
            // Another process created it between our check and now.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(FsError::new("create directory", dir, e)),
        }
    }
    Ok(())
}

/// `fsync`s a directory, making renames and creations inside it durable.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FsError::new("fsync directory", dir, e))
}

/// Creates a fresh entry `{prefix}{pid}-{n}` in `dir` with `create`,
/// trying the next `n` while the name exists (a leftover from a crashed
/// process that had our pid). Returns its path and what `create` made.
fn create_unique<T>(
    dir: &Path,
    prefix: &str,
    mut create: impl FnMut(&Path) -> io::Result<T>,
) -> Result<(PathBuf, T), (PathBuf, io::Error)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = dir.join(format!("{prefix}{}-{n}", std::process::id()));
        match create(&p) {
            Ok(t) => return Ok((p, t)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err((p, e)),
        }
    }
}

/// Creates a fresh, empty `0600` temporary file next to `target`.
fn create_temp(target: &Path) -> Result<(PathBuf, File), FsError> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    create_unique(parent_dir(target), &format!(".{name}.tmp-"), |tmp| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE_MODE)
            .open(tmp)
    })
    .map_err(|(tmp, e)| FsError::new("create temporary file", &tmp, e))
}

/// Writes `contents` to a new temporary file next to `target` and fsyncs it.
fn write_temp(target: &Path, contents: &[u8]) -> Result<PathBuf, FsError> {
    let (tmp, mut file) = create_temp(target)?;
    if let Err(e) = file.write_all(contents).and_then(|()| file.sync_all()) {
        let _ = fs::remove_file(&tmp);
        return Err(FsError::new("write", &tmp, e));
    }
    Ok(tmp)
}

/// Replaces `path` with `contents` atomically and durably: after a crash at
/// any point the file holds either its old or its new contents, and once
/// this returns the new contents survive power loss. The file gets mode
/// `0600`. The parent directory must exist.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), FsError> {
    let tmp = write_temp(path, contents)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(FsError::new("rename a temporary file over", path, e));
    }
    sync_dir(parent_dir(path))
}

/// Creates `path` with `contents` (mode `0600`) only if it does not exist,
/// atomically and durably. Returns `false`, leaving the existing file
/// untouched, if it already existed — also when another process created it
/// first. Readers never see a partly written file.
pub fn create_new_atomic(path: &Path, contents: &[u8]) -> Result<bool, FsError> {
    let tmp = write_temp(path, contents)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(parent_dir(path))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(FsError::new("create", path, e)),
    }
}

/// What [`ensure_private`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Private {
    /// A file of secrets or key-store state: no group/other bits at all.
    File,
    /// A directory of such files: no group/other bits at all.
    Dir,
    /// A directory that may be listed by others but not changed by them
    /// (the data dir: its key files are private on their own, but whoever
    /// can write the directory can swap them).
    DirNotWritable,
}

/// Refuses a key-store file or directory that group or others may read or
/// write (or change, for [`Private::DirNotWritable`]), or that another user
/// owns: a `cp` without `-p`, a permissive umask or a restore from a backup
/// can leave one so, and silently using it would hide that the secrets may
/// be exposed. The error names the path, its mode or owner, and the fix. A
/// path that does not exist passes (cryptvol creates it private).
pub fn ensure_private(path: &Path, kind: Private) -> Result<(), FsError> {
    use std::os::unix::fs::MetadataExt;
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(FsError::new("inspect", path, e)),
    };
    let mode = meta.mode() & 0o7777;
    let (bad_bits, fix, exposure) = match kind {
        Private::File => (0o077, "chmod 600", "read or change it"),
        Private::Dir => (0o077, "chmod 700", "list or change what it holds"),
        Private::DirNotWritable => (0o022, "chmod go-w", "replace the files in it"),
    };
    let refuse = |why: String| {
        FsError::new(
            "use",
            path,
            io::Error::new(io::ErrorKind::PermissionDenied, why),
        )
    };
    if mode & bad_bits != 0 {
        return Err(refuse(format!(
            "it has mode {mode:04o}, so other users can {exposure}, and cryptvol refuses to use              it. Restrict it with `{fix} {}` (and treat the keys as exposed if others could read              them)",
            path.display()
        )));
    }
    let (owner, me) = (meta.uid(), crate::secmem::effective_uid());
    if owner != me && owner != 0 {
        return Err(refuse(format!(
            "it belongs to uid {owner}, but cryptvol runs as uid {me}; the owner could change              it, so cryptvol refuses to use it. Run cryptvol as its owner, or take it over with              `chown {me} {}`",
            path.display()
        )));
    }
    Ok(())
}

/// Binds a Unix socket at `path` that only its owner can connect to, with
/// no instant at which it exists with a wider mode: it is bound inside a
/// fresh `0700` directory next to `path`, made `0600`, then renamed into
/// place (a socket is bound to its inode, so the listener follows).
///
/// A socket already at `path` that nobody answers on is a stale one from a
/// killed server and is replaced; a live one, or anything that is not a
/// socket, is refused and left alone.
pub fn bind_private_socket(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::os::unix::net::{UnixListener, UnixStream};
    match fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; refusing to replace it (choose another --socket path)",
                    path.display()
                ),
            ))
        }
        Ok(_) if UnixStream::connect(path).is_ok() => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by a running server", path.display()),
            ))
        }
        Ok(_) => fs::remove_file(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    remove_dead_staging(parent_dir(path));
    // A short name: a socket path has to fit in 108 bytes.
    let (staging, ()) = create_unique(parent_dir(path), ".cv-", |d| {
        DirBuilder::new().mode(PRIVATE_DIR_MODE).create(d)
    })
    .map_err(|(_, e)| e)?;
    let staged = staging.join("s");
    let bound = UnixListener::bind(&staged).and_then(|l| {
        fs::set_permissions(&staged, fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
        fs::rename(&staged, path)?;
        Ok(l)
    });
    let _ = fs::remove_file(&staged);
    let _ = fs::remove_dir(&staging);
    bound
}

/// Removes the staging directories `bind_private_socket` left in `dir`
/// when its process was killed in the middle (`.cv-PID-N`, PID gone).
fn remove_dead_staging(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(".cv-"))
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let _ = fs::remove_file(e.path().join("s"));
        let _ = fs::remove_dir(e.path());
    }
}

/// Reads a whole file, naming the path in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, FsError> {
    fs::read(path).map_err(|e| FsError::new("read", path, e))
}

/// An advisory `flock(2)` on a lock file, held until this guard drops.
/// Locks taken through separate `FileLock`s exclude each other even inside
/// one process (each opens its own file description).
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Blocks until it holds an exclusive lock on `path` (created `0600` if
    /// missing).
    pub fn exclusive(path: &Path) -> Result<FileLock, FsError> {
        let file = open_lock_file(path)?;
        // XXX: `File::lock` is stable since Rust 1.89 and Cargo.toml's
        // `rust-version` still says 1.80; `lib.rs` forbids `unsafe`, which
        // rules out calling `libc::flock` directly. Raise `rust-version`.
        #[allow(clippy::incompatible_msrv)]
        file.lock().map_err(|e| FsError::new("lock", path, e))?;
        Ok(FileLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Blocks until it holds a shared lock on `path` (created `0600` if
    /// missing): many readers at once, no writer.
    pub fn shared(path: &Path) -> Result<FileLock, FsError> {
        let file = open_lock_file(path)?;
        #[allow(clippy::incompatible_msrv)]
        file.lock_shared()
            .map_err(|e| FsError::new("lock", path, e))?;
        Ok(FileLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Takes an exclusive lock on `path` if no one else holds one, without
    /// waiting; `Ok(None)` when it is held elsewhere. Creates the file when
    /// missing.
    pub fn try_exclusive(path: &Path) -> Result<Option<FileLock>, FsError> {
        let file = open_lock_file(path)?;
        Self::try_lock(file, path)
    }

    /// Like [`FileLock::try_exclusive`], but on an existing file only
    /// (`Ok(None)` if it does not exist): for probing whether the holder of
    /// a lock is still alive without leaving a file behind.
    pub fn try_exclusive_existing(path: &Path) -> Result<Option<FileLock>, FsError> {
        match File::open(path) {
            Ok(file) => Self::try_lock(file, path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FsError::new("open", path, e)),
        }
    }

    fn try_lock(file: File, path: &Path) -> Result<Option<FileLock>, FsError> {
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLock {
                file,
                path: path.to_path_buf(),
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(FsError::new("lock", path, e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlocking first just
        // makes the release independent of when the descriptor is closed.
        #[allow(clippy::incompatible_msrv)]
        let _ = self.file.unlock();
    }
}

fn open_lock_file(path: &Path) -> Result<File, FsError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
        .map_err(|e| FsError::new("open lock file", path, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Barrier};

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_sockets_are_owner_only_replace_only_stale_sockets_and_leave_nothing() {
        use std::io::{Read, Write};
        use std::os::unix::net::UnixStream;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("nbd.sock");
        let l = bind_private_socket(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        // The listener answers at the final path.
        let mut c = UnixStream::connect(&path).unwrap();
        let (mut a, _) = l.accept().unwrap();
        a.write_all(b"hi").unwrap();
        let mut buf = [0u8; 2];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        // Live: refused.
        let e = bind_private_socket(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        // Stale (its server is gone, the file stays): replaced.
        drop((a, c, l));
        assert!(path.exists());
        let _l2 = bind_private_socket(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        // Not a socket: refused and left intact.
        let file = d.path().join("precious");
        fs::write(&file, b"data").unwrap();
        let e = bind_private_socket(&file).unwrap_err();
        assert!(e.to_string().contains("is not a socket"), "{e}");
        assert_eq!(fs::read(&file).unwrap(), b"data");
        // A dead process's staging directory is cleared by the next bind.
        let dead = d.path().join(".cv-999999999-0");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join("s"), b"").unwrap();
        let _l3 = bind_private_socket(&d.path().join("other.sock")).unwrap();
        assert!(!dead.exists());
        // No staging directories left behind.
        let mut names: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["nbd.sock", "other.sock", "precious"]);
    }

    #[test]
    fn write_atomic_replaces_contents_with_private_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode(&p), 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.json")]);
    }

    #[test]
    fn create_new_atomic_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("root.key");
        assert!(create_new_atomic(&p, b"first").unwrap());
        assert!(!create_new_atomic(&p, b"second").unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn create_private_dir_all_makes_0700_dirs_and_tolerates_existing() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_private_dir_all(&deep).unwrap();
        create_private_dir_all(&deep).unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&deep), 0o700);
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = create_private_dir_all(&file.join("sub")).unwrap_err();
        assert!(
            err.to_string().to_lowercase().contains("not a directory"),
            "{err}"
        );
    }

    #[test]
    fn ensure_private_refuses_group_or_other_access_naming_mode_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("keys.json");
        assert!(ensure_private(&f, Private::File).is_ok(), "missing passes");
        fs::write(&f, b"{}").unwrap();
        for mode in [0o640, 0o604, 0o620, 0o602, 0o660, 0o644] {
            fs::set_permissions(&f, fs::Permissions::from_mode(mode)).unwrap();
            let msg = ensure_private(&f, Private::File).unwrap_err().to_string();
            assert!(
                msg.contains(&format!("{mode:04o}"))
                    && msg.contains(&format!("chmod 600 {}", f.display())),
                "{msg}"
            );
        }
        for mode in [0o600, 0o400] {
            fs::set_permissions(&f, fs::Permissions::from_mode(mode)).unwrap();
            ensure_private(&f, Private::File).unwrap();
        }
        let d = dir.path().join("kms");
        create_private_dir_all(&d).unwrap();
        ensure_private(&d, Private::Dir).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o750)).unwrap();
        let msg = ensure_private(&d, Private::Dir).unwrap_err().to_string();
        assert!(msg.contains("0750") && msg.contains("chmod 700"), "{msg}");
        // The data dir may be listable, not writable.
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private(&d, Private::DirNotWritable).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o775)).unwrap();
        let msg = ensure_private(&d, Private::DirNotWritable)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("0775") && msg.contains("chmod go-w"), "{msg}");
    }

    #[test]
    fn ensure_private_refuses_files_owned_by_another_user() {
        if crate::secmem::effective_uid() != 0 {
            eprintln!("SKIPPED ensure_private_refuses_files_owned_by_another_user: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("root.key");
        fs::write(&f, [0u8; 32]).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        // Root's own files pass; one that uid 65534 owns (and could rewrite) does not.
        std::os::unix::fs::chown(&f, Some(65534), None).unwrap();
        let msg = ensure_private(&f, Private::File).unwrap_err().to_string();
        assert!(
            msg.contains("uid 65534") && msg.contains("chown 0"),
            "{msg}"
        );
    }

    #[test]
    fn errors_name_the_step_and_path() {
        let err = write_atomic(Path::new("/nonexistent-dir-xyz/f"), b"x").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent-dir-xyz/"), "{msg}");
        assert!(msg.starts_with("cannot "), "{msg}");
    }

    #[test]
    fn exclusive_lock_serializes_read_modify_write() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("lock");
        let counter = dir.path().join("counter");
        write_atomic(&counter, b"0").unwrap();
        let threads = 8;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (lock, counter, barrier) = (lock.clone(), counter.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..20 {
                        let _g = FileLock::exclusive(&lock).unwrap();
                        let n: u32 = String::from_utf8(fs::read(&counter).unwrap())
                            .unwrap()
                            .parse()
                            .unwrap();
                        write_atomic(&counter, (n + 1).to_string().as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(fs::read(&counter).unwrap(), b"160");
    }
}
