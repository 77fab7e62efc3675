//! The CLI's connection to a running node: finds its address and token in the data dir and
//! speaks the local JSON API, mapping HTTP answers to the CLI's exit codes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Failure, FailureKind};
use crate::datadir::DataDir;
use crate::node::RuntimeInfo;

/// `--dir DIR` (or `TTX_DIR`): which node a command talks to.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeDir {
    /// The node's data directory.
    #[arg(long, env = "TTX_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

impl NodeDir {
    /// The directory, or a clear error when none was given.
    pub fn resolve(&self) -> anyhow::Result<DataDir> {
        match &self.dir {
            Some(d) => Ok(DataDir::new(d)),
            None => Err(Failure::new(
                FailureKind::Invalid,
                "no node chosen: give --dir DIR or set TTX_DIR",
            )
            .into()),
        }
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

/// Largest answer the CLI reads (a chart with big pasted updates).
const MAX_ANSWER_BYTES: u64 = 1 << 30;

/// A client of one node's local API.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Client {
    /// Connects to the node serving `dir`, with the token from `TTX_TOKEN` or `DIR/admin.token`.
    pub fn connect(dir: &DataDir) -> anyhow::Result<Client> {
        let info = RuntimeInfo::read(dir).map_err(|_| {
            Failure::new(
                FailureKind::NotFound,
                format!(
                    "no node is running on {} (no run/node.json): start it with `ttx serve {}`",
                    dir.root().display(),
                    dir.root().display()
                ),
            )
        })?;
        let token = match std::env::var("TTX_TOKEN") {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => std::fs::read_to_string(dir.admin_token())
                .with_context(|| {
                    format!(
                        "cannot read the token {} (set TTX_TOKEN to use your own)",
                        dir.admin_token().display()
                    )
                })?
                .trim()
                .to_string(),
        };
        Ok(Client {
            agent: agent(),
            base: format!("http://{}", info.api_addr),
            token,
        })
    }

    fn finish<T: DeserializeOwned>(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<T> {
        let mut resp = result.map_err(|e| match e {
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                anyhow::anyhow!(
                    "cannot reach the node at {} (connection refused): is `ttx serve` running?",
                    self.base
                )
            }
            ureq::Error::Io(io) if matches!(io.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) => {
                Failure::new(
                    FailureKind::Invalid,
                    format!("the node at {} closed the connection before reading the request (larger than api.max_body_bytes?)", self.base),
                )
                .into()
            }
            other => anyhow::anyhow!("request to the node at {} failed: {other}", self.base),
        })?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().with_config().limit(MAX_ANSWER_BYTES);
        if (200..300).contains(&status) {
            if status == 204 {
                return serde_json::from_value(serde_json::Value::Null).context("empty answer");
            }
            return body
                .read_json()
                .context("the node's answer is not the expected JSON");
        }
        let answer: serde_json::Value = body.read_json().unwrap_or_default();
        let message = answer["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the node answered HTTP {status}"));
        let kind = match status {
            400 | 405 | 413 | 422 => Some(FailureKind::Invalid),
            404 => Some(FailureKind::NotFound),
            409 => Some(FailureKind::Refused),
            401 | 403 => Some(FailureKind::Unauthorized),
            _ => None,
        };
        Err(match kind {
            Some(kind) => Failure::new(kind, message).into(),
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
            let answer_lost = matches!(&result, Err(ureq::Error::Timeout(_)))
                || matches!(&result, Err(ureq::Error::Io(e)) if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionAborted
                ));
            if answer_lost && attempt < ATTEMPTS {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)));
                continue;
            }
            return self.finish(result);
        }
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

/// Prints a value as JSON (the `--json` answer).
pub fn print_json(v: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
