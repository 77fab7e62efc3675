//! Referrals to partners and from them: one table, used by the referrals page (every referral
//! in and out, overdue and orphaned ones flagged) and by the ticket page (that ticket's own).

use axum::extract::State;
use maud::{html, Markup};

use crate::exchange::record::short;
use crate::exchange::Side;
use crate::model::clock;
use crate::store::exchange::{list_referrals, ReferralRow, MAX_LISTED_REFERRALS};
use crate::web::auth::Viewer;
use crate::web::error::WebError;
use crate::web::layout::{page, when, Page};
use crate::web::WebState;

/// `GET /referrals`: every referral in and out, newest first.
pub async fn list(State(state): State<WebState>, Viewer(who): Viewer) -> Result<Page, WebError> {
    let rows = state
        .app
        .store
        .reader
        .read(|c| list_referrals(c, None, clock::now()))
        .await?;
    let flagged = rows.iter().filter(|r| r.overdue || r.orphaned).count();
    Ok(page(
        "Referrals",
        &who,
        None,
        html! {
            main {
                h1 { "Referrals" }
                p.meta {
                    (flagged) " overdue or orphaned · "
                    @if rows.len() == MAX_LISTED_REFERRALS { "the newest " (rows.len()) " shown" } @else { (rows.len()) " in all" }
                }
                (table(&rows))
                p.meta { "Refer a ticket with ttx refer N --to SITE; act on one with ttx referral accept|reject|close|reopen|cancel ID." }
            }
        },
    ))
}

/// The referrals table: id, direction and partner, our ticket, the partner's ticket, what to
/// know first (the state, or overdue / orphaned), respond-by and last change.
pub fn table(rows: &[ReferralRow]) -> Markup {
    html! {
        table #referrals {
            thead { tr { th { "Referral" } th { "Partner" } th { "Our ticket" } th { "Their ticket" } th { "State" } th { "Respond by" } th { "Changed" } } }
            tbody {
                @for r in rows {
                    tr class={ "referral-" (r.label) } {
                        td.meta title=(r.id) { (short(r.id)) }
                        td { @match r.side { Side::Out => { "to " }, Side::In => { "from " } } (r.peer) }
                        td { a href={ "/tickets/" (r.ticket) } { (r.ticket) } }
                        td { (r.partner_ref.as_deref().unwrap_or("—")) }
                        td { @if r.overdue || r.orphaned { strong { (r.label) } " (" (r.state) ")" } @else { (r.state) } }
                        td { @match r.respond_by { Some(t) => { (when(t)) }, None => { "—" } } }
                        td { (when(r.updated_at)) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="7" .empty { "no referrals" } } }
            }
        }
    }
}
