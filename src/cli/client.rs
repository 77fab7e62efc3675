//! The CLI's connection to a running node: finds its address and token in the data dir and
//! speaks the local JSON API, mapping HTTP answers to the CLI's exit codes.

use std::time::Duration;

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Failure, FailureKind};
use crate::datadir::DataDir;
use crate::node::RuntimeInfo;

/// Which node a command talks to. The options are global (`ttx --dir X status` and
/// `ttx status --dir X` are the same), so they live on [`super::Global`]; a command that
/// talks to a node flattens this marker to say so, and [`NodeDir::resolve`] reads the global
/// choice.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NodeDir {}

impl NodeDir {
    /// The data directory chosen with `--dir` / `TTX_DIR` (or the profile), or a clear error.
    pub fn resolve(&self) -> anyhow::Result<DataDir> {
        match super::profile::target()?.dir {
            Some(d) => Ok(DataDir::new(d)),
            None => Err(Failure::new(
                FailureKind::Invalid,
                "no node chosen: give --dir DIR or set TTX_DIR",
            )
            .into()),
        }
    }

    /// A client of the chosen node (`--api`, `--dir` or the profile).
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::to(&super::profile::target()?)
    }

    /// The data directory, when one was chosen (a node reached by `--api` may have none here).
    pub fn dir(&self) -> Option<DataDir> {
        super::profile::target().ok()?.dir.map(DataDir::new)
    }
}

/// The HTTP agent the CLI uses: bounded connect and overall timeouts; HTTP errors are answers
/// (their JSON body carries the message), not transport failures.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(3)))
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Reads `DIR/run/node.json`, telling a data dir this user cannot read from one where no node
/// runs: the first needs `--api` and a token file, the second `ttx serve`.
fn read_runtime_info(dir: &DataDir) -> anyhow::Result<RuntimeInfo> {
    let root = dir.root().display();
    match RuntimeInfo::read(dir) {
        Ok(info) => Ok(info),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(anyhow::anyhow!(
            "cannot read {root} (permission denied): the data dir belongs to the node's user; \
             reach the node with --api URL and --token-file FILE (or a profile) instead"
        )),
        Err(_) if !dir.root().exists() => Err(Failure::new(
            FailureKind::NotFound,
            format!("no data dir {root}: check --dir / TTX_DIR, or create it with `ttx init`"),
        )
        .into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::new(
            FailureKind::NotFound,
            format!(
                "no node is running on {root} (no run/node.json): start it with `ttx serve {root}`"
            ),
        )
        .into()),
        Err(e) => Err(anyhow::anyhow!("cannot read {root}/run/node.json: {e}")),
    }
}

/// Largest answer the CLI reads (a chart with big pasted updates).
const MAX_ANSWER_BYTES: u64 = 1 << 30;

/// A client of one node's local API.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Client {
    /// Connects to the node serving `dir`, with the token from `TTX_TOKEN`, `--token-file`
    /// or `DIR/admin.token`.
    pub fn connect(dir: &DataDir) -> anyhow::Result<Client> {
        let target = super::profile::Target {
            dir: Some(dir.root().to_path_buf()),
            ..super::profile::target()?
        };
        Self::to(&target)
    }

    /// Connects to the chosen node: `--api URL` (or `TTX_API`, or the profile's), else the
    /// address the node recorded in `DIR/run/node.json`.
    pub fn to(target: &super::profile::Target) -> anyhow::Result<Client> {
        let base = match (&target.api, &target.dir) {
            (Some(url), _) => super::profile::check_url(url)?,
            (None, Some(dir)) => {
                let info = read_runtime_info(&DataDir::new(dir))?;
                format!("http://{}", info.api_addr)
            }
            (None, None) => {
                return Err(Failure::new(
                    FailureKind::Invalid,
                    "no node chosen: give --dir DIR or --api URL (or set TTX_DIR / TTX_API), \
                     or name a profile of ~/.config/ttx/config.toml with --profile",
                )
                .into())
            }
        };
        let token = super::profile::token(target)?;
        Ok(Client {
            agent: agent(),
            base,
            token,
        })
    }

    /// The node's base URL (`http://127.0.0.1:7700`).
    pub fn base(&self) -> &str {
        &self.base
    }

    fn finish<T: DeserializeOwned>(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<T> {
        let mut resp = self.succeeded(result)?;
        if resp.status().as_u16() == 204 {
            return serde_json::from_value(serde_json::Value::Null).context("empty answer");
        }
        resp.body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_json()
            .context("the node's answer is not the expected JSON")
    }

    /// The answer if it is a success (2xx); otherwise the node's error as a [`Failure`] with
    /// the exit code its status means.
    fn succeeded(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        let mut resp = result.map_err(|e| match e {
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                anyhow::anyhow!(
                    "cannot reach the node at {} (connection refused): is `ttx serve` running?",
                    self.base
                )
            }
            // A reset is a failure of the node or the network, not bad input (exit 1): a body
            // over the limit is answered 413 by the node.
            ureq::Error::Io(io) if connection_lost(io.kind()) => anyhow::anyhow!(
                "the connection to the node at {} was lost ({}): was it stopped or restarted? \
                 a write was retried with the same Idempotency-Key and may have been applied: check with `ttx show`",
                self.base,
                io.kind()
            ),
            other => anyhow::anyhow!("request to the node at {} failed: {other}", self.base),
        })?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body = resp.body_mut().with_config().limit(MAX_ANSWER_BYTES);
        let answer: serde_json::Value = body.read_json().unwrap_or_default();
        let message = answer["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the node answered HTTP {status}"));
        let code = answer["error"]["code"].as_str().map(str::to_string);
        let kind = match status {
            400 | 405 | 413 | 422 => Some(FailureKind::Invalid),
            404 => Some(FailureKind::NotFound),
            409 => Some(FailureKind::Refused),
            401 | 403 => Some(FailureKind::Unauthorized),
            // Any other answer with the node's own code (`unreachable`, `internal`): exit 1,
            // and `--json` keeps the code.
            _ if code.is_some() => Some(FailureKind::Failed),
            _ => None,
        };
        Err(match kind {
            Some(kind) => Failure::new(kind, message).with_code(code).into(),
            None => anyhow::anyhow!(message),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// `GET path?query`.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let mut req = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.auth());
        for (k, v) in query {
            req = req.query(*k, v);
        }
        self.finish(req.call())
    }

    /// `POST path` with a JSON body and an idempotency key. When the answer is lost (a timeout
    /// or a dropped connection after sending), the request is sent again with the same key, so
    /// the node applies it once and answers the retry with the first result.
    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        const ATTEMPTS: u32 = 3;
        let key = uuid::Uuid::now_v7().to_string();
        let mut attempt = 1;
        loop {
            let result = self
                .agent
                .post(self.url(path))
                .header("Authorization", self.auth())
                .header("Idempotency-Key", &key)
                .send_json(body);
            // Lost answers (timeout, reset, EOF) and refused connections (a node restarting)
            // are retried with the same key: the node applies the write at most once.
            let answer_lost = matches!(&result, Err(ureq::Error::Timeout(_)))
                || matches!(&result, Err(ureq::Error::Io(e)) if connection_lost(e.kind())
                    || e.kind() == std::io::ErrorKind::ConnectionRefused);
            if answer_lost && attempt < ATTEMPTS {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)));
                continue;
            }
            return self.finish(result);
        }
    }

    /// `GET path` answered with bytes (a download), at most `limit` of them.
    pub fn get_bytes(&self, path: &str, limit: u64) -> anyhow::Result<Vec<u8>> {
        let req = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.auth());
        let mut resp = self.succeeded(req.call())?;
        resp.body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .context("reading the node's answer")
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> anyhow::Result<()> {
        let req = self
            .agent
            .delete(self.url(path))
            .header("Authorization", self.auth());
        let _: serde_json::Value = self.finish(req.call())?;
        Ok(())
    }
}

/// Whether an I/O error means the connection was lost mid-request (the answer may be lost).
fn connection_lost(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        kind,
        K::ConnectionReset | K::BrokenPipe | K::UnexpectedEof | K::ConnectionAborted
    )
}

/// Prints a value as JSON (the `--json` answer): pretty-printed, as every JSON the CLI prints.
pub fn print_json(v: &impl Serialize) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
