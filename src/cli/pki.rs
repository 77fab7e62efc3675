//! `ttx pki …`: the federation PKI from the command line — CA admin commands (`init-ca`, `sign`,
//! `revoke`, `crl`), node commands (`request`, `install`, `issue`) and `show` for any
//! certificate, CRL or CSR. Human text by default, one stable JSON object with `--json`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Subcommand;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::{Failure, FailureKind};
use crate::config::{Config, ConfigError};
use crate::datadir::DataDir;
use crate::identity::NodeIdentity;
use crate::pki::{self, Inspection, PkiError, Reason, DEFAULT_CA_DAYS, DEFAULT_NODE_DAYS};

/// The PKI commands.
#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create a federation CA in a new directory (CA key 0600, CA certificate, empty state).
    InitCa {
        /// The federation the CA serves (its nodes are ttx://FEDERATION/SITE/NODE).
        #[arg(long)]
        federation: String,
        /// The CA directory to create.
        #[arg(long, value_name = "CA_DIR")]
        out: PathBuf,
        /// Validity of the CA certificate, in days.
        #[arg(long, default_value_t = DEFAULT_CA_DAYS)]
        days: u32,
    },
    /// Generate the node key (if none) and a CSR for this node's identity in DIR/tls.
    Request {
        /// The node's data directory.
        #[arg(long, env = "TTX_DIR")]
        dir: PathBuf,
    },
    /// Sign a node CSR: the certificate names ttx://FEDERATION/SITE/NODE whatever the CSR asks.
    Sign {
        /// The CA directory.
        #[arg(long, value_name = "CA_DIR")]
        ca: PathBuf,
        /// The CSR file (PEM).
        csr: PathBuf,
        /// The node's site.
        #[arg(long)]
        site: String,
        /// The node's name within its site.
        #[arg(long)]
        node: String,
        /// Validity of the certificate, in days.
        #[arg(long, default_value_t = DEFAULT_NODE_DAYS)]
        days: u32,
        /// Where to write the certificate (PEM).
        #[arg(long, value_name = "CERT")]
        out: PathBuf,
    },
    /// Install a signed certificate and its CA into DIR/tls (the CA joins the bundle).
    Install {
        /// The node's data directory.
        #[arg(long, env = "TTX_DIR")]
        dir: PathBuf,
        /// The node certificate (PEM).
        cert: PathBuf,
        /// The CA certificate that issued it (PEM).
        ca_cert: PathBuf,
    },
    /// Request, sign and install in one go (labs and tests: needs the CA directory at hand).
    Issue {
        /// The CA directory.
        #[arg(long, value_name = "CA_DIR")]
        ca: PathBuf,
        /// The node's site (must match DIR/ttx.toml).
        #[arg(long)]
        site: String,
        /// The node's name (must match DIR/ttx.toml).
        #[arg(long)]
        node: String,
        /// The node's data directory.
        #[arg(long, env = "TTX_DIR")]
        dir: PathBuf,
        /// Validity of the certificate, in days.
        #[arg(long, default_value_t = DEFAULT_NODE_DAYS)]
        days: u32,
    },
    /// Revoke a certificate issued by the CA, by serial or by certificate file.
    Revoke {
        /// The CA directory.
        #[arg(long, value_name = "CA_DIR")]
        ca: PathBuf,
        /// The serial to revoke (hex, as `ttx pki show` prints it).
        #[arg(long, conflicts_with = "cert", required_unless_present = "cert")]
        serial: Option<String>,
        /// The certificate file to revoke.
        cert: Option<PathBuf>,
        /// Why it is revoked.
        #[arg(long, default_value = "unspecified", value_parser = reason_parser())]
        reason: Reason,
    },
    /// Write a signed CRL of every certificate revoked by the CA (`--ca CA_DIR --out FILE`),
    /// or install one on a node (`ttx pki crl install FILE`).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Crl {
        /// On a node: install a CRL.
        #[command(subcommand)]
        node_cmd: Option<super::trust::CrlCommand>,
        /// The CA directory.
        #[arg(long, value_name = "CA_DIR", required = true)]
        ca: Option<PathBuf>,
        /// Where to write the CRL (PEM).
        #[arg(long, value_name = "FILE", required = true)]
        out: Option<PathBuf>,
    },
    /// Refuse a key (SPKI SHA-256) whatever its certificate says (DIR/tls/deny.txt), and reload
    /// the running node: its connections close.
    Deny {
        /// The key's SPKI SHA-256 (from `ttx pki show` or `ttx peer pending`).
        spki: String,
        /// Which node.
        #[command(flatten)]
        node: super::client::NodeDir,
    },
    /// Lift a denial made by `ttx pki deny`, and reload the running node.
    Undeny {
        /// The key's SPKI SHA-256.
        spki: String,
        /// Which node.
        #[command(flatten)]
        node: super::client::NodeDir,
    },
    /// Trust or stop trusting a CA on this node: add, remove (each reloads the running node).
    Trust {
        /// What to do.
        #[command(subcommand)]
        cmd: super::trust::TrustCommand,
    },
    /// Show a certificate, bundle, CRL or CSR: identity, serial, expiry, SPKI SHA-256.
    Show {
        /// The file to show.
        file: PathBuf,
    },
    /// Make the running node re-read its certificate, CAs, CRLs, deny list and pins (also SIGHUP);
    /// live connections of peers now revoked, expired or denied are closed.
    Reload {
        /// Which node.
        #[command(flatten)]
        node: super::client::NodeDir,
    },
}

fn reason_parser() -> impl TypedValueParser<Value = Reason> {
    PossibleValuesParser::new(Reason::ALL.map(Reason::as_str))
        .map(|name| name.parse::<Reason>().expect("a listed reason parses"))
}

/// Runs one PKI command, printing human text or (with `json`) one JSON object.
pub fn run(cmd: PkiCommand, json: bool) -> anyhow::Result<()> {
    let (value, text) = match cmd {
        PkiCommand::Reload { node } => return super::peers::reload(node, json),
        PkiCommand::InitCa {
            federation,
            out,
            days,
        } => {
            let ca = pki::init_ca(&federation, &out, days).map_err(failure)?;
            let text = format!(
                "created federation CA {federation} in {}\n{}",
                out.display(),
                cert_text(&ca)
            );
            (object(&ca, [("ca_dir", path_value(&out))]), text)
        }
        PkiCommand::Request { dir } => {
            let dd = DataDir::new(&dir);
            let identity = node_identity(&dd)?;
            let req = pki::request(&dd, &identity).map_err(failure)?;
            let key_note = if req.key_created {
                "generated the node key"
            } else {
                "reused the existing node key"
            };
            let text = format!(
                "{key_note} {}\nwrote the CSR for {} to {}\nspki sha256: {}\nsend the CSR to \
                 the federation admin; the key stays here",
                dd.node_key().display(),
                req.identity,
                dd.node_csr().display(),
                req.spki_sha256
            );
            let extra = [
                ("csr", path_value(&dd.node_csr())),
                ("key", path_value(&dd.node_key())),
            ];
            (object(&req, extra), text)
        }
        PkiCommand::Sign {
            ca,
            csr,
            site,
            node,
            days,
            out,
        } => {
            let csr_pem = read_input(&csr)?;
            let issued = pki::sign(&ca, &csr_pem, &site, &node, days).map_err(failure)?;
            pki::files::write_public(&out, issued.cert_pem.as_bytes()).map_err(failure)?;
            let mut text = format!(
                "issued {} serial {}\nexpires {}\nspki sha256: {}\nwrote {}",
                issued.identity,
                issued.serial,
                issued.not_after,
                issued.spki_sha256,
                out.display()
            );
            let ignored: Vec<&String> = issued
                .requested
                .iter()
                .filter(|r| **r != issued.identity)
                .collect();
            if !ignored.is_empty() {
                let list: Vec<&str> = ignored.iter().map(|s| s.as_str()).collect();
                text.push_str(&format!(
                    "\nnote: the CSR asked for {}, ignored",
                    list.join(", ")
                ));
            }
            (object(&issued, [("out", path_value(&out))]), text)
        }
        PkiCommand::Install { dir, cert, ca_cert } => {
            let dd = DataDir::new(&dir);
            let identity = node_identity(&dd)?;
            let (cert_pem, ca_pem) = (read_input(&cert)?, read_input(&ca_cert)?);
            let installed = pki::install(&dd, &identity, &cert_pem, &ca_pem).map_err(failure)?;
            installed_output(&dd, &installed)
        }
        PkiCommand::Issue {
            ca,
            site,
            node,
            dir,
            days,
        } => {
            let dd = DataDir::new(&dir);
            let identity = node_identity(&dd)?;
            for (flag, given, configured) in [
                ("--site", &site, &identity.site),
                ("--node", &node, &identity.node),
            ] {
                if given != configured {
                    return Err(Failure::new(
                        FailureKind::Refused,
                        format!(
                            "{flag} {given} does not match {configured} in {}",
                            dd.config().display()
                        ),
                    )
                    .into());
                }
            }
            let installed = pki::issue(&ca, &identity, &dd, days).map_err(failure)?;
            installed_output(&dd, &installed)
        }
        PkiCommand::Revoke {
            ca,
            serial,
            cert,
            reason,
        } => {
            let serial = match (serial, cert) {
                (Some(serial), _) => serial,
                (None, Some(cert)) => {
                    pki::serial_of_cert_pem(&read_input(&cert)?).map_err(failure)?
                }
                (None, None) => unreachable!("clap requires --serial or CERT"),
            };
            let entry = pki::revoke(&ca, &serial, reason).map_err(failure)?;
            let text = format!(
                "revoked serial {} ({}) at {}\nrun `ttx pki crl` and distribute the CRL to \
                 every node",
                entry.serial, entry.reason, entry.revoked_at
            );
            (object(&entry, []), text)
        }
        PkiCommand::Crl {
            node_cmd: Some(cmd),
            ..
        } => return super::trust::crl(cmd, json),
        PkiCommand::Deny { spki, node } => return super::trust::deny(&spki, &node, json),
        PkiCommand::Undeny { spki, node } => return super::trust::undeny(&spki, &node, json),
        PkiCommand::Trust { cmd } => return super::trust::trust(cmd, json),
        PkiCommand::Crl {
            node_cmd: None,
            ca,
            out,
        } => {
            let (Some(ca), Some(out)) = (ca, out) else {
                unreachable!("clap requires --ca and --out without a subcommand")
            };
            let crl = pki::crl(&ca, &out).map_err(failure)?;
            let text = format!("wrote {}\n{}", out.display(), crl_text(&crl));
            (object(&crl, [("out", path_value(&out))]), text)
        }
        PkiCommand::Show { file } => {
            let items = pki::inspect_file(&file).map_err(failure)?;
            let text: Vec<String> = items.iter().map(inspection_text).collect();
            let value = json!({"file": path_value(&file), "items": items});
            (value, text.join("\n\n"))
        }
    };
    if json {
        outln!("{value}");
    } else {
        outln!("{text}");
    }
    Ok(())
}

/// Maps a PKI error to the CLI's exit-code policy.
pub(crate) fn failure(err: PkiError) -> anyhow::Error {
    let kind = match &err {
        PkiError::Missing { .. } | PkiError::UnknownSerial(_) | PkiError::NotPresent(_) => {
            FailureKind::NotFound
        }
        PkiError::Invalid { .. } | PkiError::Identity(_) => FailureKind::Invalid,
        PkiError::Exists { .. }
        | PkiError::KeyPermissions { .. }
        | PkiError::KeyMismatch { .. }
        | PkiError::NotIssuedBy { .. }
        | PkiError::FederationMismatch { .. }
        | PkiError::IdentityMismatch { .. }
        | PkiError::AlreadyRevoked(_)
        | PkiError::AlreadyDone(_)
        | PkiError::Validity { .. }
        | PkiError::Trust(_) => FailureKind::Refused,
        PkiError::Io { .. } | PkiError::Crypto { .. } => return err.into(),
    };
    Failure::new(kind, err.to_string()).into()
}

/// The node's config `DIR/ttx.toml`; a missing one exits 3, an invalid one 2.
pub(crate) fn load_config(dd: &DataDir) -> anyhow::Result<Config> {
    let path = dd.config();
    Ok(Config::load(&path).map_err(|e| match &e {
        ConfigError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Failure::new(
                FailureKind::NotFound,
                format!("no node config at {}: run `ttx init` first", path.display()),
            )
        }
        _ => Failure::new(FailureKind::Invalid, e.to_string()),
    })?)
}

/// The node's identity from `DIR/ttx.toml`.
fn node_identity(dd: &DataDir) -> anyhow::Result<NodeIdentity> {
    let config = load_config(dd)?;
    let node = &config.node;
    NodeIdentity::new(&node.federation, &node.site, &node.node)
        .map_err(|e| Failure::new(FailureKind::Invalid, e.to_string()).into())
}

/// Reads a file named on the command line; a missing one exits 3.
fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    pki::files::read(path, "check the path")
        .map_err(failure)
        .with_context(|| format!("reading {}", path.display()))
}

fn installed_output(dd: &DataDir, installed: &pki::Installed) -> (Value, String) {
    let ca_note = if installed.ca_added {
        "added the CA to"
    } else {
        "the CA was already in"
    };
    let text = format!(
        "installed {} serial {} in {}\nexpires {}\nspki sha256: {}\n{ca_note} {} (CAs in the bundle: {})",
        installed.identity,
        installed.serial,
        dd.node_cert().display(),
        installed.not_after,
        installed.spki_sha256,
        dd.ca_bundle().display(),
        installed.ca_count
    );
    let extra = [
        ("cert", path_value(&dd.node_cert())),
        ("ca_bundle", path_value(&dd.ca_bundle())),
    ];
    (object(installed, extra), text)
}

/// A struct serialized as a JSON object with extra keys added.
fn object<const N: usize>(value: &impl Serialize, extra: [(&str, Value); N]) -> Value {
    let mut value = serde_json::to_value(value).expect("output serializes");
    if let Value::Object(map) = &mut value {
        for (key, v) in extra {
            map.insert(key.to_string(), v);
        }
    }
    value
}

fn path_value(path: &Path) -> Value {
    Value::String(path.display().to_string())
}

fn inspection_text(item: &Inspection) -> String {
    match item {
        Inspection::Certificate(c) => cert_text(c),
        Inspection::Crl(c) => crl_text(c),
        Inspection::Csr(c) => format!(
            "certificate request\n  subject:     {}\n  requested:   {}\n  spki sha256: {}\n  \
             signature:   {}",
            c.subject,
            c.requested.join(", "),
            c.spki_sha256,
            if c.signature_valid {
                "valid"
            } else {
                "INVALID"
            }
        ),
    }
}

fn cert_text(c: &pki::CertSummary) -> String {
    let mut text = format!(
        "{}\n  identity:    {}\n  subject:     {}\n  issuer:      {}\n  serial:      {}\n  \
         not before:  {}\n  not after:   {} ({} days left)\n  spki sha256: {}",
        if c.is_ca {
            "CA certificate"
        } else {
            "certificate"
        },
        c.identity,
        c.subject,
        c.issuer,
        c.serial,
        c.not_before,
        c.not_after,
        c.days_left,
        c.spki_sha256
    );
    if let Some(w) = &c.warning {
        text.push_str(&format!("\n  warning:     {w}"));
    }
    text
}

fn crl_text(c: &pki::CrlSummary) -> String {
    let number = c.crl_number.map(|n| n.to_string()).unwrap_or("none".into());
    let mut text = format!(
        "crl\n  issuer:      {}\n  number:      {number}\n  this update: {}\n  next update: {}\n  \
         revoked:     {}",
        c.issuer,
        c.this_update,
        c.next_update.as_deref().unwrap_or("none"),
        c.revoked.len()
    );
    for r in &c.revoked {
        let reason = r.reason.as_deref().unwrap_or("no reason");
        text.push_str(&format!("\n    {} {reason} {}", r.serial, r.revoked_at));
    }
    if let Some(w) = &c.warning {
        text.push_str(&format!("\n  warning:     {w}"));
    }
    text
}
