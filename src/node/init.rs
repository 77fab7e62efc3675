//! `ttx init`, all or nothing: the data dir is built in a staging directory beside the target
//! and moved into place only once every step worked (config, store, first admin, token). A
//! failure at any step removes the staging directory, so the target is left as it was and a
//! second `ttx init` starts from scratch.

use std::path::{Path, PathBuf};

use super::{io_err, open_exclusive, NodeError};
use crate::config::Config;
use crate::datadir::DataDir;
use crate::store::{WriteOp, WriteRequest};

/// Creates a node's data dir (as `ttx init`): an owner-only directory, the config, the store,
/// and the first admin's token (`DIR/admin.token`, 0600), which it also returns. Refuses a
/// directory that already holds a config or a store; leaves nothing behind when it fails.
pub fn init_data_dir(dir: &DataDir, config: &Config) -> Result<String, NodeError> {
    refuse_existing(dir)?;
    config.validate()?;
    let staging = Staging::create(dir.root())?;
    let token = build(&staging.dir(), config)?;
    staging.install(dir.root())?;
    Ok(token)
}

/// Refuses a directory that already holds a node's config or store.
pub fn refuse_existing(dir: &DataDir) -> Result<(), NodeError> {
    if dir.database().exists() || dir.config().exists() {
        return Err(NodeError::Exists(dir.root().to_path_buf()));
    }
    Ok(())
}

/// A data dir being built in an owner-only staging directory beside its target, moved into
/// place by [`Staging::install`] only once every step worked; dropped without installing, it
/// is removed, so a failure (or a refusal) leaves the target as it was. `ttx init` and
/// `ttx standby clone` both build through it.
pub struct Staging {
    path: PathBuf,
    installed: bool,
}

impl Staging {
    /// Creates `PARENT/.NAME.init-PID` beside `root`.
    pub fn create(root: &Path) -> Result<Staging, NodeError> {
        Ok(Staging {
            path: create_staging(root)?,
            installed: false,
        })
    }

    /// The staging directory, laid out as a data dir.
    pub fn dir(&self) -> DataDir {
        DataDir::new(&self.path)
    }

    /// Moves everything built into `root` (refusing, and moving nothing, if any entry is
    /// already there).
    pub fn install(mut self, root: &Path) -> Result<(), NodeError> {
        move_into_place(&self.path, root)?;
        self.installed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.installed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Writes the node's config file `DIR/ttx.toml`.
pub fn write_config(dir: &DataDir, config: &Config) -> Result<(), NodeError> {
    let text = format!(
        "# ttx node config. See config/node.example.toml in the ttx source for every option.\n{}",
        config.to_toml()
    );
    std::fs::write(dir.config(), text).map_err(io_err(&dir.config()))
}

/// `PARENT/.NAME.init-PID` beside `root`, owner-only (its parents are created if need be).
fn create_staging(root: &Path) -> Result<PathBuf, NodeError> {
    let parent = match root.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ttx".into());
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let staging = parent.join(format!(".{name}.init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging); // a leftover of a killed init by this pid
    crate::pki::files::create_private_dir(&staging).map_err(|e| NodeError::Io {
        path: staging.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(staging)
}

/// Every step of a new data dir, in `dir` (the staging directory).
fn build(dir: &DataDir, config: &Config) -> Result<String, NodeError> {
    write_config(dir, config)?;
    let token = crate::api::auth::new_token();
    {
        let (store, _lock) = open_exclusive(dir, config)?;
        let added = store.writer.write_blocking(WriteRequest {
            actor: "init".into(),
            idempotency: None,
            op: WriteOp::AddOperator {
                name: "admin".into(),
                role: crate::model::event::Role::Admin,
                token_sha256: crate::api::auth::token_sha256(&token),
            },
        });
        store.writer.shutdown();
        added?;
    }
    crate::pki::files::write_secret(&dir.admin_token(), format!("{token}\n").as_bytes(), false)
        .map_err(|e| NodeError::Io {
            path: dir.admin_token(),
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok(token)
}

/// Moves the built data dir to `root`: one rename when `root` does not exist or is empty,
/// else entry by entry into the existing directory, refusing (and moving back) if any entry
/// is already there. `root` ends owner-only.
fn move_into_place(staging: &Path, root: &Path) -> Result<(), NodeError> {
    let empty = match std::fs::read_dir(root) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(io_err(root)(e)),
    };
    if empty {
        std::fs::rename(staging, root).map_err(io_err(root))?;
    } else {
        let names: Vec<_> = std::fs::read_dir(staging)
            .map_err(io_err(staging))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        if let Some(taken) = names.iter().map(|n| root.join(n)).find(|p| p.exists()) {
            return Err(NodeError::InTheWay {
                dir: root.to_path_buf(),
                path: taken,
            });
        }
        let mut moved = Vec::new();
        for name in &names {
            if let Err(e) = std::fs::rename(staging.join(name), root.join(name)) {
                for back in moved.iter().rev() {
                    let _ = std::fs::rename(root.join(back), staging.join(back));
                }
                return Err(io_err(&root.join(name))(e));
            }
            moved.push(name.clone());
        }
        std::fs::remove_dir(staging).map_err(io_err(staging))?;
    }
    use std::os::unix::fs::PermissionsExt;
    // An existing directory keeps its mode otherwise: the store and tokens are owner-only.
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).map_err(io_err(root))
}
