//! Files of the PKI: private keys written 0600 from the moment they exist, atomic replacement of
//! everything else, and the permission check a node runs before it trusts a key.
//!
//! Every write goes to a temporary file in the target's directory (so the rename cannot cross a
//! file system), is synced, and is then moved into place; a reader never sees half a file.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::PkiError;

/// Permission bits of files holding private keys.
pub const SECRET_MODE: u32 = 0o600;
/// Permission bits of certificates, CSRs, bundles and state.
pub const PUBLIC_MODE: u32 = 0o644;
/// Permission bits of directories created for key material.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Writes a file holding a secret (a private key) with mode 0600 from creation on. An existing
/// file is refused unless `replace` is true, so a key is never lost by accident.
pub fn write_secret(path: &Path, contents: &[u8], replace: bool) -> Result<(), PkiError> {
    write_atomic(path, contents, SECRET_MODE, replace)
}

/// Writes a file that holds nothing secret (certificate, CSR, bundle, CA state), replacing any
/// existing one atomically.
pub fn write_public(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    if let Some(parent) = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        std::fs::create_dir_all(parent).map_err(|source| PkiError::Io {
            action: "create directory",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    write_atomic(path, contents, PUBLIC_MODE, true)
}

/// Refuses a private key file that group or others may access (any of the 0o077 bits). A node
/// runs this before it loads its key and refuses to start on a failure.
pub fn check_key_permissions(path: &Path) -> Result<(), PkiError> {
    let meta = std::fs::metadata(path).map_err(|e| io_or_missing(path, e, "read", KEY_HINT))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PkiError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Creates a directory (and its parents) for key material with mode 0700; an existing directory
/// is left as it is.
pub fn create_private_dir(path: &Path) -> Result<(), PkiError> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(path)
        .map_err(|source| PkiError::Io {
            action: "create directory",
            path: path.to_path_buf(),
            source,
        })
}

/// The hint given when a node key is missing.
pub(crate) const KEY_HINT: &str = "run `ttx pki request` to generate the node key";

/// Reads a whole file; a missing file is reported with `hint` (the command that makes it).
pub fn read(path: &Path, hint: &str) -> Result<Vec<u8>, PkiError> {
    std::fs::read(path).map_err(|e| io_or_missing(path, e, "read", hint))
}

/// Reads a private key file after [`check_key_permissions`].
pub fn read_secret(path: &Path, hint: &str) -> Result<Vec<u8>, PkiError> {
    if !path.exists() {
        return Err(missing(path, hint));
    }
    check_key_permissions(path)?;
    read(path, hint)
}

/// A [`PkiError::Missing`] for `path` with `hint`.
pub(crate) fn missing(path: &Path, hint: &str) -> PkiError {
    PkiError::Missing {
        path: path.to_path_buf(),
        hint: hint.to_string(),
    }
}

fn io_or_missing(
    path: &Path,
    source: std::io::Error,
    action: &'static str,
    hint: &str,
) -> PkiError {
    if source.kind() == std::io::ErrorKind::NotFound {
        missing(path, hint)
    } else {
        PkiError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

fn write_atomic(path: &Path, contents: &[u8], mode: u32, replace: bool) -> Result<(), PkiError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| PkiError::Io {
            action,
            path,
            source,
        }
    };
    if !replace && path.exists() {
        return Err(PkiError::Exists {
            path: path.to_path_buf(),
        });
    }
    let tmp = temp_path(path)?;
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        file.write_all(contents).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("write", &tmp))?;
        if replace {
            std::fs::rename(&tmp, path).map_err(io("write", path))
        } else {
            // A hard link fails if the target appeared meanwhile: no key is ever clobbered.
            std::fs::hard_link(&tmp, path).map_err(|source| {
                if source.kind() == std::io::ErrorKind::AlreadyExists {
                    PkiError::Exists {
                        path: path.to_path_buf(),
                    }
                } else {
                    io("write", path)(source)
                }
            })
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// A fresh temporary name beside `path` (same directory, hidden, random suffix).
fn temp_path(path: &Path) -> Result<PathBuf, PkiError> {
    let name = path
        .file_name()
        .ok_or_else(|| PkiError::invalid("path", format!("{} names no file", path.display())))?;
    let mut suffix = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix)
        .map_err(|e| PkiError::crypto("drawing random bytes", e))?;
    let tmp_name = format!(".{}.tmp-{}", name.to_string_lossy(), hex::encode(suffix));
    Ok(path.with_file_name(tmp_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn secrets_are_0600_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("a.key");
        write_secret(&key, b"one", false).unwrap();
        assert_eq!(mode(&key), 0o600);
        check_key_permissions(&key).unwrap();
        let err = write_secret(&key, b"two", false).unwrap_err();
        assert!(matches!(err, PkiError::Exists { .. }), "{err}");
        assert_eq!(std::fs::read(&key).unwrap(), b"one");
        write_secret(&key, b"two", true).unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), b"two");
        assert_eq!(mode(&key), 0o600);
        // no temporary files are left behind
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn readable_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("b.key");
        write_secret(&key, b"k", false).unwrap();
        for bad in [0o644, 0o640, 0o604, 0o660, 0o601] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(bad)).unwrap();
            let err = check_key_permissions(&key).unwrap_err();
            assert!(err.to_string().contains("chmod 600"), "{err}");
            assert!(read_secret(&key, "x").is_err());
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        check_key_permissions(&key).unwrap();
    }

    #[test]
    fn missing_files_name_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_secret(&dir.path().join("none.key"), KEY_HINT).unwrap_err();
        assert!(matches!(err, PkiError::Missing { .. }));
        assert!(err.to_string().contains("ttx pki request"), "{err}");
    }

    #[test]
    fn public_files_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let crt = dir.path().join("c.crt");
        write_public(&crt, b"one").unwrap();
        write_public(&crt, b"two").unwrap();
        assert_eq!(std::fs::read(&crt).unwrap(), b"two");
        assert_eq!(mode(&crt), 0o644);
    }
}
