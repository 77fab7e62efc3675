//! The story `ttx demo` tells, chapter by chapter, with real nodes: a ticket referred from a
//! NOC to a telco and on to a carrier, updates both ways, the NOC's primary killed and its
//! standby promoted with nothing acknowledged lost, the referral carrying on, and the chain
//! resolved and closed. Every claim printed is checked first.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::claims::{Broken, Narrator};
use crate::cluster::federation::add_peer;
use crate::cluster::look::notes_with_text;
use crate::cluster::{Ca, ClusterError, Node, Site, Ttx};
use crate::replication::Mode;

/// Why the story stopped.
#[derive(Debug, thiserror::Error)]
pub enum StoryError {
    /// A claim did not hold.
    #[error(transparent)]
    Broken(#[from] Broken),
    /// A step could not be taken (a command failed, something did not happen in time).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// The nodes of the story.
#[derive(Debug)]
pub struct Cast {
    /// The NOC: primary and standby.
    pub noc: Site,
    /// The telco the NOC refers to.
    pub telco: Node,
    /// The carrier the telco refers on to.
    pub carrier: Node,
}

impl Cast {
    /// Every node, for stopping them.
    pub fn nodes_mut(&mut self) -> [&mut Node; 4] {
        [
            &mut self.noc.primary,
            &mut self.noc.standby,
            &mut self.telco,
            &mut self.carrier,
        ]
    }
}

fn ticket_number(v: &serde_json::Value, what: &str) -> Result<i64, ClusterError> {
    v["number"].as_i64().ok_or_else(|| ClusterError::Answer {
        command: what.to_string(),
        detail: format!("no ticket number in {v}"),
    })
}

fn referral_id(v: &serde_json::Value) -> Result<String, ClusterError> {
    v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| ClusterError::Answer {
            command: "--json referrals".into(),
            detail: format!("no id in {v}"),
        })
}

fn number_of(v: &serde_json::Value) -> Result<i64, ClusterError> {
    ticket_number(
        &serde_json::json!({"number": v["ticket"]}),
        "--json referrals",
    )
}

fn show_node(n: &Narrator, node: &Node) -> Result<(), ClusterError> {
    n.say(format!(
        "{:<18} TTX_DIR={}  API {}",
        node.label,
        node.dir().display(),
        node.api_url()?
    ));
    Ok(())
}

/// Sets the cast up in `root`: a CA, NOC A (primary + standby in sync mode), telco B and
/// carrier C, each a `ttx serve` process, partners registered both ways (B knows A by both of
/// its addresses).
pub fn set_up(n: &mut Narrator, ttx: &Ttx, root: &Path) -> Result<Cast, StoryError> {
    n.chapter("Setting up a federation on this machine (loopback only, ports picked by the OS)");
    let ca = Ca::create(ttx, &root.join("ca"), "demo")?;
    n.say(format!(
        "a fresh federation CA \"demo\" in {} (ttx pki init-ca)",
        root.join("ca").display()
    ));
    let noc = Site::start(&ca, root, "noc-a", |c| {
        c.replication.mode = Some(Mode::Sync);
    })?;
    let mut telco = ca.node(root, "telco-b", "primary")?;
    let mut carrier = ca.node(root, "carrier-c", "primary")?;
    telco.start()?;
    carrier.start()?;
    let (t_addr, c_addr) = (
        telco.listen_addr()?.to_string(),
        carrier.listen_addr()?.to_string(),
    );
    add_peer(&noc.primary, "telco-b", std::slice::from_ref(&t_addr), &[])?;
    add_peer(&telco, "noc-a", &noc.addrs(), &[])?;
    add_peer(&telco, "carrier-c", &[c_addr], &[])?;
    add_peer(&carrier, "telco-b", &[t_addr], &[])?;
    let cast = Cast {
        noc,
        telco,
        carrier,
    };
    n.say("noc-a/standby was cloned from the running primary: ttx standby clone --from PRIMARY --ca CA_DIR");
    n.say("four `ttx serve` processes, each with its own SQLite store and certificate:");
    show_node(n, &cast.noc.primary)?;
    show_node(n, &cast.noc.standby)?;
    show_node(n, &cast.telco)?;
    show_node(n, &cast.carrier)?;
    n.say("(each admin token is in TTX_DIR/admin.token; try `TTX_DIR=... ttx status` beside it)");
    let want = cast.noc.primary.verify()?;
    let caught_up = crate::cluster::wait_until(
        "the standby catching up with the primary",
        Duration::from_secs(60),
        || {
            let (position, digest, _) = cast.noc.standby.verify()?;
            Ok((position, digest) == (want.0, want.1.clone()))
        },
    );
    n.claim(
        "noc-a/standby follows noc-a/primary over ttx-repl/1 in sync mode (same position and digest)",
        caught_up,
    )?;
    Ok(cast)
}

/// The whole story on a cast that is set up.
pub fn tell(n: &mut Narrator, cast: &mut Cast) -> Result<(), StoryError> {
    let ticket = "LON-PAR-3 down: no light on the wave";
    n.chapter("NOC A opens a ticket and refers it to telco B");
    let ours = ticket_number(
        &cast
            .noc
            .primary
            .json(&["new", ticket, "--circuit", "LON-PAR-3", "-p", "1"])?,
        "new",
    )?;
    let mut acked: Vec<String> = Vec::new();
    n.say(format!(
        "ttx new {ticket:?} --circuit LON-PAR-3 -p 1  -> ticket #{ours}"
    ));
    cast.noc.primary.ok(&[
        "refer",
        &ours.to_string(),
        "--to",
        "telco-b",
        "--note",
        "customer reports total loss since 09:12 UTC",
    ])?;
    n.say(format!("ttx refer {ours} --to telco-b --note ..."));
    let at_telco = cast.telco.wait_referral("noc-a", "in", "delivered")?;
    let theirs = number_of(&at_telco)?;
    let tid = referral_id(&at_telco)?;
    n.claim(
        &format!("telco-b opened its own ticket #{theirs} for noc-a#{ours}"),
        check(at_telco["partner_ref"] == format!("noc-a#{ours}"), || {
            format!("its referral says {}", at_telco["partner_ref"])
        }),
    )?;
    cast.telco.ok(&["referral", "accept", &tid])?;
    let mine = cast.noc.primary.wait_referral("telco-b", "out", "accepted");
    n.claim("noc-a sees telco-b accept the referral", mine.map(drop))?;

    n.chapter("Telco B refers its ticket onward to carrier C");
    cast.telco.ok(&[
        "refer",
        &theirs.to_string(),
        "--to",
        "carrier-c",
        "--note",
        "no light from our POP in Paris towards yours",
    ])?;
    let at_carrier = cast.carrier.wait_referral("telco-b", "in", "delivered")?;
    let carriers = number_of(&at_carrier)?;
    let cid = referral_id(&at_carrier)?;
    cast.carrier.ok(&["referral", "accept", &cid])?;
    let accepted = cast.telco.wait_referral("carrier-c", "out", "accepted");
    n.claim(
        &format!("carrier-c opened ticket #{carriers} for telco-b#{theirs} and accepted it"),
        accepted.map(drop),
    )?;

    n.chapter("Updates travel both ways along the chain (shared notes)");
    let from_carrier = "fibre cut at km 42, splicing crew dispatched";
    let reached = share(
        &cast.carrier,
        carriers,
        from_carrier,
        &[(&cast.telco, theirs), (&cast.noc.primary, ours)],
    )?;
    n.claim(
        "carrier-c's shared note reached telco-b and, through it, noc-a",
        reached,
    )?;
    let from_noc = "customer confirms the outage, 3 sites affected";
    let reached = share(
        &cast.noc.primary,
        ours,
        from_noc,
        &[(&cast.telco, theirs), (&cast.carrier, carriers)],
    )?;
    acked.push(from_noc.to_string());
    n.claim(
        "noc-a's shared note reached telco-b and, through it, carrier-c",
        reached,
    )?;
    let internal = "internal: customer is on a 4h SLA";
    cast.noc
        .primary
        .ok(&["note", &ours.to_string(), internal])?;
    acked.push(internal.to_string());

    n.chapter("SIGKILL noc-a's primary in the middle of a stream of writes");
    let (done, written) = write_stream(cast, ours);
    std::thread::sleep(Duration::from_millis(1500));
    cast.noc.primary.kill()?;
    done.store(true, Ordering::SeqCst);
    let stream = written.join().unwrap_or_default();
    n.say(format!(
        "kill -9 {}: {} notes were acknowledged to the writer before it died",
        cast.noc.primary.label,
        stream.len()
    ));
    acked.extend(stream);
    n.claim(
        "the primary died with writes acknowledged just before",
        check(acked.len() > 2, || "no write was acknowledged".into()),
    )?;

    n.chapter("Promote noc-a's standby");
    let promoted = cast.noc.standby.json(&["promote"])?;
    n.say(format!(
        "TTX_DIR={} ttx promote  -> epoch {}",
        cast.noc.standby.dir().display(),
        promoted["epoch"]
    ));
    let role = cast.noc.standby.verify()?.2;
    n.claim(
        "noc-a/standby is the primary now",
        check(role == "primary", || format!("its role is {role}")),
    )?;
    let chart = cast.noc.standby.chart(ours)?;
    let lost: Vec<&String> = acked
        .iter()
        .filter(|t| notes_with_text(&chart, t) != 1)
        .collect();
    n.claim(
        &format!(
            "nothing acknowledged was lost: each of the {} notes noc-a acknowledged is on the new primary exactly once",
            acked.len()
        ),
        check(lost.is_empty(), || format!("missing or doubled: {lost:?}")),
    )?;

    n.chapter("The referral carries on with the new primary");
    let after = "after the failover: our standby has taken over";
    let reached = share(
        &cast.noc.standby,
        ours,
        after,
        &[(&cast.telco, theirs), (&cast.carrier, carriers)],
    )?;
    n.claim(
        "a shared note written on the new primary reached telco-b and carrier-c",
        reached,
    )?;
    let back = "splice done, light is back at our POP";
    let reached = share(&cast.telco, theirs, back, &[(&cast.noc.standby, ours)])?;
    n.claim("telco-b's shared note reached noc-a's new primary", reached)?;

    n.chapter("Resolve and close along the chain");
    cast.carrier.ok(&[
        "resolve",
        &carriers.to_string(),
        "--resolution",
        "spliced the fibre at km 42",
    ])?;
    let resolved = cast.telco.wait_referral("carrier-c", "out", "resolved")?;
    cast.telco
        .ok(&["referral", "close", &referral_id(&resolved)?])?;
    let closed = cast.carrier.wait_status(carriers, "closed");
    n.claim(
        "carrier-c resolved; telco-b confirmed and carrier-c's ticket is closed",
        closed,
    )?;
    cast.telco.ok(&[
        "resolve",
        &theirs.to_string(),
        "--resolution",
        "carrier spliced the fibre",
    ])?;
    let resolved = cast
        .noc
        .standby
        .wait_referral("telco-b", "out", "resolved")?;
    cast.noc
        .standby
        .ok(&["referral", "close", &referral_id(&resolved)?])?;
    let closed = cast.telco.wait_status(theirs, "closed");
    n.claim(
        "telco-b resolved; noc-a confirmed and telco-b's ticket is closed",
        closed,
    )?;
    cast.noc.standby.ok(&[
        "resolve",
        &ours.to_string(),
        "--resolution",
        "fibre cut repaired by the carrier",
    ])?;
    cast.noc.standby.ok(&["close", &ours.to_string()])?;
    let status = cast.noc.standby.chart(ours)?["ticket"]["status"].clone();
    n.claim(
        &format!("noc-a's ticket #{ours} is closed"),
        check(status == "closed", || format!("it is {status}")),
    )?;
    Ok(())
}

/// Writes `text` as a shared note on `writer`'s ticket `number`, then waits (bounded) until it
/// is in the history of each `(node, ticket)` of `reaches`, in order. The outer error is the
/// write's (the story cannot go on); the inner one is the claim's (the note did not arrive).
fn share(
    writer: &Node,
    number: i64,
    text: &str,
    reaches: &[(&Node, i64)],
) -> Result<Result<(), ClusterError>, ClusterError> {
    writer.ok(&["note", &number.to_string(), "--shared", text])?;
    Ok(reaches
        .iter()
        .try_for_each(|(node, ticket)| node.wait_history(*ticket, text).map(drop)))
}

fn check(holds: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if holds {
        Ok(())
    } else {
        Err(why())
    }
}

/// A writer adding internal notes to ticket `number` on the NOC's primary, one after another,
/// until told to stop or a write fails; it returns the texts of the notes acknowledged.
fn write_stream(
    cast: &Cast,
    number: i64,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<Vec<String>>) {
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let ttx = cast.noc.primary.ttx().clone();
    let dir = cast.noc.primary.dir().to_path_buf();
    let handle = std::thread::spawn(move || {
        let mut acked = Vec::new();
        let number = number.to_string();
        for i in 1.. {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let text = format!("ops log {i}: still no light");
            match ttx.run(Some(&dir), &["note", &number, &text]) {
                Ok(out) if out.code == 0 => acked.push(text),
                _ => break,
            }
        }
        acked
    });
    (done, handle)
}
