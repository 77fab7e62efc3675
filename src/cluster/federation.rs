//! A federation of real nodes: a CA made with `ttx pki init-ca`, certificates issued into each
//! node's data dir, partners registered with `ttx peer add`, and a site with a primary and a
//! hot standby made from a copy of the primary's store.

use std::path::{Path, PathBuf};

use super::{ClusterError, Node, Ttx};
use crate::datadir::DataDir;
use crate::replication::offline::standby_from_copy;

/// A federation CA in `DIR` (its key stays there).
#[derive(Debug)]
pub struct Ca {
    ttx: Ttx,
    dir: PathBuf,
    /// The federation's name.
    pub federation: String,
}

impl Ca {
    /// `ttx pki init-ca --federation FED --out DIR`.
    pub fn create(ttx: &Ttx, dir: &Path, federation: &str) -> Result<Ca, ClusterError> {
        let d = dir.to_string_lossy();
        ttx.ok(
            None,
            &["pki", "init-ca", "--federation", federation, "--out", &d],
        )?;
        Ok(Ca {
            ttx: ttx.clone(),
            dir: dir.to_path_buf(),
            federation: federation.to_string(),
        })
    }

    /// `ttx init` a node of `site` named `node` in `root/DIRNAME` and issue its certificate
    /// (not started).
    pub fn node(&self, root: &Path, site: &str, node: &str) -> Result<Node, ClusterError> {
        let dir = root.join(format!("{site}-{node}"));
        let n = Node::init(&self.ttx, &dir, site, node, &self.federation)?;
        self.issue(&n, site, node)?;
        Ok(n)
    }

    /// `ttx pki issue --site SITE --node NODE --dir DIR`: the node's key and certificate.
    pub fn issue(&self, n: &Node, site: &str, node: &str) -> Result<(), ClusterError> {
        let (ca, dir) = (self.dir.to_string_lossy(), n.dir().to_string_lossy());
        self.ttx.ok(
            None,
            &[
                "pki", "issue", "--ca", &ca, "--site", site, "--node", node, "--dir", &dir,
            ],
        )?;
        Ok(())
    }
}

/// `ttx peer add SITE --addr A [--addr B ...] EXTRA...` on `node`.
pub fn add_peer(
    node: &Node,
    site: &str,
    addrs: &[String],
    extra: &[&str],
) -> Result<(), ClusterError> {
    let mut args = vec!["peer", "add", site];
    for a in addrs {
        args.extend(["--addr", a.as_str()]);
    }
    args.extend_from_slice(extra);
    node.ok(&args)?;
    Ok(())
}

/// A site with a primary and a hot standby following it over `ttx-repl/1`.
#[derive(Debug)]
pub struct Site {
    /// The site's name.
    pub name: String,
    /// `SITE/primary`.
    pub primary: Node,
    /// `SITE/standby`.
    pub standby: Node,
    /// The primary's QUIC address (kept across restarts: the standby dials it).
    pub primary_addr: String,
    /// The standby's QUIC address (partners know the site by both).
    pub standby_addr: String,
}

impl Site {
    /// Sets the site up in `root` and starts both nodes: the primary (which authorizes the
    /// standby: `peer add SITE --allow standby`), then the standby made from a copy of the
    /// primary's store. `edit` adjusts both configs (replication mode, timeouts) before they
    /// start.
    pub fn start(
        ca: &Ca,
        root: &Path,
        name: &str,
        edit: impl Fn(&mut crate::config::Config),
    ) -> Result<Site, ClusterError> {
        let mut primary = ca.node(root, name, "primary")?;
        primary.start()?;
        let listen = primary.listen_addr()?;
        add_peer(
            &primary,
            name,
            &["127.0.0.1:1".to_string()],
            &["--allow", "standby"],
        )?;
        // Stopped for the copy, and to keep its UDP port across restarts.
        if !primary.stop() {
            return Err(ClusterError::Setup(format!(
                "{} did not stop cleanly",
                primary.label
            )));
        }
        primary.configure(|c| {
            c.transport.listen = Some(listen);
            edit(c);
        })?;
        let mut standby = ca.node(root, name, "standby")?;
        standby_from_copy(&primary.data(), &DataDir::new(standby.dir()))
            .map_err(|e| ClusterError::Setup(e.to_string()))?;
        standby.configure(|c| {
            c.replication.primary = Some(listen.to_string());
            edit(c);
        })?;
        primary.start()?;
        standby.start()?;
        // Both keep their ports across restarts (partners have them registered).
        primary.pin_ports()?;
        standby.pin_ports()?;
        let standby_listen = standby.listen_addr()?;
        Ok(Site {
            name: name.to_string(),
            primary,
            standby,
            primary_addr: listen.to_string(),
            standby_addr: standby_listen.to_string(),
        })
    }

    /// Both addresses, the primary's first: how partners register the site.
    pub fn addrs(&self) -> Vec<String> {
        vec![self.primary_addr.clone(), self.standby_addr.clone()]
    }
}
