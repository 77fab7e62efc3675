//! `ttx attach N FILE`, `ttx attachments N`, `ttx attachment get ID [-o FILE]`.

use std::io::Write;
use std::path::PathBuf;

use base64::Engine;
use serde_json::json;

use super::client::{print_json, NodeDir};
use super::{Failure, FailureKind};
use crate::store::attachment::AttachmentRow;
use crate::store::writer::AttachmentAck;

/// Arguments of `ttx attach`.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Ticket number.
    pub number: i64,
    /// The file to attach (`-`: standard input, then give --name).
    pub file: PathBuf,
    /// The name to attach it as (default: the file's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Share it with partners the ticket is referred to (default: internal, never leaves the
    /// site; a partner speaking only ttx-exchange/1 gets a shared note naming it instead).
    #[arg(long)]
    pub shared: bool,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// Arguments of `ttx attachments`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Ticket number.
    pub number: i64,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

/// `ttx attachment …`.
#[derive(Debug, clap::Subcommand)]
pub enum AttachmentCommand {
    /// Download an attachment (its SHA-256 is checked).
    Get(GetArgs),
}

/// Arguments of `ttx attachment get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The attachment's id (from `ttx attachments N`).
    pub id: String,
    /// Where to write it (`-`: standard output). Default: its name in the current directory,
    /// never overwriting a file.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Which node.
    #[command(flatten)]
    pub node: NodeDir,
}

fn invalid(msg: String) -> anyhow::Error {
    Failure::new(FailureKind::Invalid, msg).into()
}

/// `ttx attach`.
pub fn attach(a: AttachArgs, json: bool) -> anyhow::Result<()> {
    let (data, default_name) = if a.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| invalid(format!("cannot read standard input: {e}")))?;
        (buf, None)
    } else {
        let data = std::fs::read(&a.file)
            .map_err(|e| invalid(format!("cannot read {}: {e}", a.file.display())))?;
        let name = a.file.file_name().map(|n| n.to_string_lossy().into_owned());
        (data, name)
    };
    let name = a.name.or(default_name).ok_or_else(|| {
        invalid("give --name NAME for an attachment read from standard input".into())
    })?;
    let c = a.node.client()?;
    let body = json!({
        "name": name,
        "shared": a.shared,
        "content_base64": base64::engine::general_purpose::STANDARD.encode(&data),
    });
    let ack: AttachmentAck = c.post(&format!("/v1/tickets/{}/attachments", a.number), &body)?;
    if json {
        return print_json(&ack);
    }
    outln!(
        "attached {} to ticket {} ({} bytes, {}): id {}",
        ack.name,
        ack.ticket_number,
        ack.size,
        if ack.shared { "shared" } else { "internal" },
        ack.attachment
    );
    Ok(())
}

/// One line per attachment, as `ttx attachments` and `ttx show` print them.
pub fn lines(rows: &[AttachmentRow]) -> String {
    let times = super::times();
    rows.iter()
        .map(|r| {
            format!(
                "{}  {}  {} bytes  {}  {} by {} at {}  sha256 {}\n",
                r.id,
                r.name,
                r.size,
                if r.shared { "shared" } else { "internal" },
                times.absolute(r.at),
                r.author,
                r.origin_site,
                r.sha256
            )
        })
        .collect()
}

/// `ttx attachments`.
pub fn list(a: ListArgs, json: bool) -> anyhow::Result<()> {
    let c = a.node.client()?;
    let rows: Vec<AttachmentRow> = c.get(&format!("/v1/tickets/{}/attachments", a.number), &[])?;
    if json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        outln!("ticket {} has no attachments", a.number);
    } else {
        out!("{}", lines(&rows));
    }
    Ok(())
}

/// `ttx attachment get`.
pub fn get(a: GetArgs, json: bool) -> anyhow::Result<()> {
    let c = a.node.client()?;
    let row: AttachmentRow = c.get(&format!("/v1/attachments/{}", a.id), &[])?;
    let bytes = c.get_bytes(&format!("/v1/attachments/{}/content", a.id), row.size + 1)?;
    let digest = crate::model::attachment::sha256_hex(&bytes);
    if digest != row.sha256 || bytes.len() as u64 != row.size {
        anyhow::bail!(
            "attachment {} arrived as {} bytes with sha256 {digest}, not the {} bytes with sha256 {} the node lists",
            row.id,
            bytes.len(),
            row.size,
            row.sha256
        );
    }
    let target = a.output.unwrap_or_else(|| PathBuf::from(&row.name));
    if target.as_os_str() == "-" {
        std::io::stdout().write_all(&bytes)?;
        return Ok(());
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .map_err(|e| {
            invalid(format!(
                "cannot create {}: {e} (an existing file is never overwritten: give -o FILE)",
                target.display()
            ))
        })?;
    file.write_all(&bytes)?;
    if json {
        return print_json(&json!({"attachment": row, "written": target}));
    }
    outln!(
        "wrote {} ({} bytes, sha256 {})",
        target.display(),
        row.size,
        row.sha256
    );
    Ok(())
}
