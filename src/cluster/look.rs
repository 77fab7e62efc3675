//! What the drivers read back from a node to decide that something happened: its referrals,
//! a ticket's chart, its site position and digest. Reads go through the CLI (`--json`).

use std::time::Duration;

use serde_json::Value;

use super::{wait_until, ClusterError, Node};

/// How long the drivers wait for something to cross between nodes.
pub const CROSS_LIMIT: Duration = Duration::from_secs(90);

impl Node {
    /// `ttx referrals --json`.
    pub fn referrals(&self) -> Result<Vec<Value>, ClusterError> {
        let v = self.json(&["referrals"])?;
        v.as_array().cloned().ok_or_else(|| ClusterError::Answer {
            command: "--json referrals".into(),
            detail: format!("not a list: {v}"),
        })
    }

    /// Waits until a referral with `peer` on `side` (`in`/`out`) is in `state`; returns it.
    pub fn wait_referral(
        &self,
        peer: &str,
        side: &str,
        state: &str,
    ) -> Result<Value, ClusterError> {
        let mut found = None;
        wait_until(
            &format!(
                "{}: a referral {side} with {peer} becoming {state}",
                self.label
            ),
            CROSS_LIMIT,
            || {
                found = self
                    .referrals()?
                    .into_iter()
                    .find(|r| r["peer"] == peer && r["side"] == side && r["state"] == state);
                Ok(found.is_some())
            },
        )?;
        Ok(found.expect("found above"))
    }

    /// `ttx show N --json`.
    pub fn chart(&self, number: i64) -> Result<Value, ClusterError> {
        self.json(&["show", &number.to_string()])
    }

    /// Waits until ticket `number`'s history holds `text`; returns the chart.
    pub fn wait_history(&self, number: i64, text: &str) -> Result<Value, ClusterError> {
        let mut chart = Value::Null;
        wait_until(
            &format!("{}: {text:?} reaching ticket {number}", self.label),
            CROSS_LIMIT,
            || {
                chart = self.chart(number)?;
                Ok(chart["history"].to_string().contains(text))
            },
        )?;
        Ok(chart)
    }

    /// Waits until ticket `number` has `status`.
    pub fn wait_status(&self, number: i64, status: &str) -> Result<(), ClusterError> {
        wait_until(
            &format!("{}: ticket {number} becoming {status}", self.label),
            CROSS_LIMIT,
            || Ok(self.chart(number)?["ticket"]["status"] == status),
        )
    }

    /// `ttx verify --json`: (position, digest, role).
    pub fn verify(&self) -> Result<(i64, String, String), ClusterError> {
        let v = self.json(&["verify"])?;
        match (
            v["position"].as_i64(),
            v["digest"].as_str(),
            v["role"].as_str(),
        ) {
            (Some(p), Some(d), Some(r)) => Ok((p, d.to_string(), r.to_string())),
            _ => Err(ClusterError::Answer {
                command: "--json verify".into(),
                detail: v.to_string(),
            }),
        }
    }
}

impl Node {
    /// `GET /v1/verify`'s position and digest without the integrity checks' verdict: what a
    /// comparison of two nodes needs even when one fails its checks.
    pub fn digest(&self) -> Result<(i64, String), ClusterError> {
        let out = self.run(&["--json", "verify"])?;
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        match (v["position"].as_i64(), v["digest"].as_str()) {
            (Some(p), Some(d)) => Ok((p, d.to_string())),
            _ => Err(ClusterError::Answer {
                command: "--json verify".into(),
                detail: format!("{} {}", out.stdout, out.stderr),
            }),
        }
    }
}

/// How many notes in a chart's history have exactly `text` (a shared note's text also
/// appears in the exchange records that carried it; those do not count).
pub fn notes_with_text(chart: &Value, text: &str) -> usize {
    chart["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter(|e| e["event"]["kind"]["NoteAdded"]["text"].as_str() == Some(text))
                .count()
        })
        .unwrap_or(0)
}
