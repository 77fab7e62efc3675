//! Admin views: the peer registry (partners, standby, pending), this node's role and the hot
//! standby's health (mode, standby connected, lag), and the transport's health when the node
//! listens for peers. Admins only.

use axum::extract::State;
use maud::html;

use crate::replication::ReplicationStatus;
use crate::store::query;
use crate::web::auth::Viewer;
use crate::web::error::{forbidden, WebError};
use crate::web::layout::{page, when, Page};
use crate::web::WebState;

/// `GET /admin/peers`.
pub async fn peers(State(state): State<WebState>, Viewer(who): Viewer) -> Result<Page, WebError> {
    if !who.is_admin() {
        return Err(forbidden(format!(
            "operator {} is not an admin",
            who.caller.name
        )));
    }
    let peers = state.app.store.reader.read(query::peers).await?;
    let transport = state.app.federation.get().map(|f| f.status());
    let r = state.app.store.writer.role_now();
    let (role, epoch) = (r.role_text(), r.epoch);
    let replication = state.app.replication.status();
    Ok(page(
        "Peers",
        &who,
        None,
        html! {
            main {
                h1 { "Peers and transport" }
                h2 { "This node" }
                @match &transport {
                    Some(t) => {
                        dl.header {
                            dt { "Identity" } dd { (t.identity) }
                            dt { "Certificate" } dd { (t.cert_days_left) " days left" @if let Some(w) = &t.cert_warning { " · " strong { (w) } } }
                            dt { "Peers connected" } dd { (t.peers_connected) }
                        }
                    }
                    None => { p.meta { "The node does not listen for peers (no transport.listen)." } }
                }
                h2 { "Replication" }
                (replication_view(&role, epoch, &replication))
                h2 { "Registry" }
                table #peers {
                    thead { tr { th { "Site" } th { "State" } th { "Role" } th { "Addresses" } th { "Pins" } th { "Seen" } th { "Since" } } }
                    tbody {
                        @for p in &peers {
                            tr {
                                td { (p.site) }
                                td { (format!("{:?}", p.state).to_lowercase()) }
                                td { @if p.exchange { "exchange " } @if p.standby { "standby " } @if p.witness { "witness" } }
                                td { (p.addrs.join(", ")) }
                                td.meta { @for pin in &p.pins { (pin.get(..16).unwrap_or(pin)) "… " } }
                                td.meta { (p.seen_node.as_deref().unwrap_or("")) }
                                td { (when(p.since)) }
                            }
                        }
                        @if peers.is_empty() { tr { td colspan="7" .empty { "no peers registered" } } }
                    }
                }
                p.meta { "Change the registry with ttx peer add|accept|deny|remove." }
            }
        },
    ))
}

/// This node's role and epoch and the hot standby's health, as `ttx status` reports them: on a
/// primary the mode, the standby connected or not and its lag; on a standby the primary it
/// follows, whether the stream is up and how far behind it is.
fn replication_view(role: &str, epoch: u64, r: &ReplicationStatus) -> maud::Markup {
    let p = &r.primary;
    html! {
        dl.header #replication {
            dt { "Role" } dd { (role) " · epoch " (epoch) }
            @match &r.following {
                Some(f) => {
                    dt { "Follows" } dd { (f.primary_node.as_deref().unwrap_or("")) " at " (f.primary_addr) }
                    dt { "Stream" } dd { @if f.connected { "up" } @else { strong { "down" } } @if let Some(e) = &f.last_error { " · " (e) } }
                    dt { "Applied" } dd { "position " (f.applied) " of " (f.primary_head) " · " (f.lag_events) " events behind" }
                    @if let Some(t) = f.last_heard_at { dt { "Last heard" } dd { (when(t)) } }
                }
                None => {
                    dt { "Mode" } dd { (p.mode.as_str()) " · when the standby is gone: " (p.when_standby_gone.as_str()) }
                    dt { "Standby" } dd {
                        @match &p.standby {
                            Some(s) => { (s.node) " at " (s.addr) " · connected since " (when(s.since)) }
                            None => { strong { "not connected" } }
                        }
                    }
                    @if let Some(d) = p.degraded_since { dt { "Degraded" } dd { strong { "running as async since " (when(d)) } } }
                    dt { "Lag" } dd { (p.lag.events) " events · " (p.lag.ms) " ms" }
                    dt { "Acknowledged" } dd { "durable to " (p.acked_durable) " · applied to " (p.acked_applied) " · " (p.waiting) " answers waiting" }
                }
            }
        }
    }
}
