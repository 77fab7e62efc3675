//! Admin views: the peer registry (partners, standby, pending), and the transport's health when
//! the node listens for peers. Admins only.

use axum::extract::State;
use maud::html;

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
                h2 { "Registry" }
                table #peers {
                    thead { tr { th { "Site" } th { "State" } th { "Role" } th { "Addresses" } th { "Pins" } th { "Seen" } th { "Since" } } }
                    tbody {
                        @for p in &peers {
                            tr {
                                td { (p.site) }
                                td { (format!("{:?}", p.state).to_lowercase()) }
                                td { @if p.exchange { "exchange " } @if p.standby { "standby" } }
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
