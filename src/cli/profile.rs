//! Which node the CLI talks to and with which token, for every operator, not only the node's
//! Unix user: `--dir DIR` (the node's own data dir), or `--api URL` with `--token-file FILE`
//! (or `TTX_API` / `TTX_TOKEN`), or a named profile of the per-user config
//! `~/.config/ttx/config.toml` (like `~/.rtrc` or kubectl contexts):
//!
//! ```toml
//! default = "noc-a"            # the profile used when none is named
//!
//! [profiles.noc-a]
//! api = "http://127.0.0.1:7700"
//! token_file = "~/.config/ttx/noc-a.token"
//!
//! [profiles.lab]
//! dir = "/srv/ttx/lab"         # the data dir (its run/node.json and admin.token)
//! ```
//!
//! What is given on the command line or in the environment wins over the profile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

use super::{Failure, FailureKind, Global};

/// The node and credentials chosen for this run.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The node's data dir, if known.
    pub dir: Option<PathBuf>,
    /// The node's API URL, if given (wins over `dir`'s `run/node.json`).
    pub api: Option<String>,
    /// A file holding the token (wins over `dir`'s `admin.token`; `TTX_TOKEN` wins over it).
    pub token_file: Option<PathBuf>,
}

/// One profile of the per-user config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The node's API URL.
    pub api: Option<String>,
    /// The node's data dir.
    pub dir: Option<PathBuf>,
    /// A file holding the operator's token.
    pub token_file: Option<PathBuf>,
}

/// The per-user config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The profile used when none is named.
    pub default: Option<String>,
    /// Named profiles.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// Where the per-user config lives: `$TTX_CONFIG`, else `$XDG_CONFIG_HOME/ttx/config.toml`,
/// else `~/.config/ttx/config.toml`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TTX_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("ttx").join("config.toml"))
}

/// `~/x` is `$HOME/x`.
fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => Path::new(&home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// Reads the per-user config; a file that is not there is an empty config.
pub fn load_user_config(path: &Path) -> Result<UserConfig, Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(UserConfig::default()),
        Err(e) => {
            return Err(Failure::new(
                FailureKind::Invalid,
                format!("cannot read {}: {e}", path.display()),
            ))
        }
    };
    toml::from_str(&text).map_err(|e| {
        Failure::new(
            FailureKind::Invalid,
            format!("invalid {}: {}", path.display(), e.message()),
        )
    })
}

/// Combines the command line (and its environment variables) with the named or default
/// profile.
pub fn resolve(g: &Global, config: &UserConfig, config_file: &Path) -> Result<Target, Failure> {
    let name = g.profile.clone().or_else(|| {
        // The default profile applies only when the command line names no node at all.
        (g.dir.is_none() && g.api.is_none())
            .then(|| config.default.clone())
            .flatten()
    });
    let profile = match &name {
        Some(n) => config.profiles.get(n).cloned().ok_or_else(|| {
            let names: Vec<&str> = config.profiles.keys().map(String::as_str).collect();
            Failure::new(
                FailureKind::NotFound,
                format!(
                    "no profile {n:?} in {}{}",
                    config_file.display(),
                    if names.is_empty() {
                        String::new()
                    } else {
                        format!(" (profiles: {})", names.join(", "))
                    }
                ),
            )
        })?,
        None => Profile::default(),
    };
    let given_node = g.dir.is_some() || g.api.is_some();
    let (dir, api) = if given_node {
        (g.dir.clone(), g.api.clone())
    } else {
        (profile.dir.map(|d| expand_home(&d)), profile.api)
    };
    Ok(Target {
        dir,
        api,
        token_file: g
            .token_file
            .clone()
            .or(profile.token_file)
            .map(|f| expand_home(&f)),
    })
}

static TARGET: OnceLock<Result<Target, Failure>> = OnceLock::new();

/// Records this run's global options (once, at start).
pub fn init(g: &Global) {
    let _ = TARGET.set((|| {
        let path = config_path().unwrap_or_else(|| PathBuf::from("~/.config/ttx/config.toml"));
        let config = load_user_config(&path)?;
        resolve(g, &config, &path)
    })());
}

/// The node and credentials chosen for this run.
pub fn target() -> Result<Target, Failure> {
    TARGET
        .get()
        .cloned()
        .unwrap_or_else(|| Ok(Target::default()))
}

/// Checks an API URL: `http://HOST:PORT` (the API is plain HTTP on loopback), no path.
pub fn check_url(url: &str) -> Result<String, Failure> {
    let bad = |why: &str| {
        Failure::new(
            FailureKind::Invalid,
            format!("invalid API URL {url:?}: {why} (use e.g. http://127.0.0.1:7700)"),
        )
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("it must start with http://"))?;
    let host_port = rest.trim_end_matches('/');
    if host_port.is_empty() || host_port.contains('/') || host_port.contains('@') {
        return Err(bad("give only the host and port"));
    }
    let port = host_port
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    if port.is_none() {
        return Err(bad("the port is missing"));
    }
    Ok(format!("http://{host_port}"))
}

/// The token: `TTX_TOKEN`, else the token file (`--token-file` or the profile's), else the
/// data dir's `admin.token`. A token file others can read is refused, as ssh refuses a key.
pub fn token(target: &Target) -> Result<String, Failure> {
    if let Ok(t) = std::env::var("TTX_TOKEN") {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    let (file, hint) = match (&target.token_file, &target.dir) {
        (Some(f), _) => (f.clone(), ""),
        (None, Some(d)) => (
            crate::datadir::DataDir::new(d).admin_token(),
            " (give --token-file FILE or set TTX_TOKEN to use your own)",
        ),
        (None, None) => {
            return Err(Failure::new(
                FailureKind::Unauthorized,
                "no token: give --token-file FILE or set TTX_TOKEN",
            ))
        }
    };
    check_private(&file)?;
    let text = std::fs::read_to_string(&file).map_err(|e| {
        Failure::new(
            FailureKind::Unauthorized,
            format!("cannot read the token {}: {e}{hint}", file.display()),
        )
    })?;
    let t = text.trim();
    if t.is_empty() {
        return Err(Failure::new(
            FailureKind::Unauthorized,
            format!("the token file {} is empty", file.display()),
        ));
    }
    Ok(t.to_string())
}

#[cfg(unix)]
fn check_private(file: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(file) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Failure::new(
                FailureKind::Unauthorized,
                format!(
                    "the token file {} is readable by others (mode {mode:o}): chmod 600 {}",
                    file.display(),
                    file.display()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_file: &Path) -> Result<(), Failure> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global() -> Global {
        Global::default()
    }

    #[test]
    fn the_command_line_wins_over_the_profile() {
        let config: UserConfig = toml::from_str(
            r#"
default = "a"
[profiles.a]
api = "http://127.0.0.1:7001"
token_file = "/t/a"
[profiles.b]
dir = "/srv/b"
"#,
        )
        .unwrap();
        let path = Path::new("/x/config.toml");
        let t = resolve(&global(), &config, path).unwrap();
        assert_eq!(t.api.as_deref(), Some("http://127.0.0.1:7001"));
        assert_eq!(t.token_file, Some(PathBuf::from("/t/a")));
        let g = Global {
            profile: Some("b".into()),
            ..global()
        };
        assert_eq!(
            resolve(&g, &config, path).unwrap().dir,
            Some(PathBuf::from("/srv/b"))
        );
        let g = Global {
            dir: Some("/other".into()),
            ..global()
        };
        let t = resolve(&g, &config, path).unwrap();
        assert_eq!((t.dir, t.api), (Some(PathBuf::from("/other")), None));
        let g = Global {
            profile: Some("c".into()),
            ..global()
        };
        let e = resolve(&g, &config, path).unwrap_err();
        assert_eq!(
            e.message,
            "no profile \"c\" in /x/config.toml (profiles: a, b)"
        );
        assert!(toml::from_str::<UserConfig>("[profiles.a]\nurl = 'x'").is_err());
    }

    #[test]
    fn api_urls_are_plain_http_host_and_port() {
        assert_eq!(
            check_url("http://127.0.0.1:7700/").unwrap(),
            "http://127.0.0.1:7700"
        );
        assert!(check_url("https://127.0.0.1:7700").is_err());
        assert!(check_url("http://127.0.0.1").is_err());
        assert!(check_url("http://127.0.0.1:7700/v1").is_err());
    }
}
