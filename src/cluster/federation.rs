//! A federation of real nodes: a CA made with `ttx pki init-ca`, certificates issued into each
//! node's data dir, partners registered with `ttx peer add`, and a site with a primary and a
//! hot standby cloned from it with `ttx standby clone`.

use std::path::{Path, PathBuf};

use super::{ClusterError, Node, Ttx};

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
    /// standby: `peer add SITE --allow standby`), then the standby cloned from the running
    /// primary over `ttx-repl/1` (`ttx standby clone --ca`, the operator's way). `edit` adjusts
    /// both configs (replication mode, timeouts) before they start.
    pub fn start(
        ca: &Ca,
        root: &Path,
        name: &str,
        edit: impl Fn(&mut crate::config::Config),
    ) -> Result<Site, ClusterError> {
        let mut primary = ca.node(root, name, "primary")?;
        primary.start()?;
        add_peer(
            &primary,
            name,
            &["127.0.0.1:1".to_string()],
            &["--allow", "standby"],
        )?;
        // Restarted with the site's replication settings, on the ports it bound (partners
        // and the standby have its QUIC address).
        primary.pin_ports()?;
        let listen = primary.listen_addr()?.to_string();
        if !primary.stop() {
            return Err(ClusterError::Setup(format!(
                "{} did not stop cleanly",
                primary.label
            )));
        }
        primary.configure(&edit)?;
        primary.start()?;
        let dir = root.join(format!("{name}-standby"));
        let (d, ca_dir) = (dir.to_string_lossy(), ca.dir.to_string_lossy());
        ca.ttx.ok(
            None,
            &[
                "standby",
                "clone",
                &d,
                "--from",
                &listen,
                "--site",
                name,
                "--federation",
                &ca.federation,
                "--ca",
                &ca_dir,
                "--listen",
                "127.0.0.1:0",
            ],
        )?;
        let mut standby = Node::existing(&ca.ttx, &dir, &format!("{name}/standby"));
        // The site's operators came with the snapshot: the CLI beside it uses the site's token.
        std::fs::copy(primary.data().admin_token(), standby.data().admin_token())
            .map_err(ClusterError::io("copy the site's admin token"))?;
        standby.configure(&edit)?;
        standby.start()?;
        standby.pin_ports()?;
        let standby_listen = standby.listen_addr()?;
        Ok(Site {
            name: name.to_string(),
            primary,
            standby,
            primary_addr: listen,
            standby_addr: standby_listen.to_string(),
        })
    }

    /// Both addresses, the primary's first: how partners register the site.
    pub fn addrs(&self) -> Vec<String> {
        vec![self.primary_addr.clone(), self.standby_addr.clone()]
    }
}
