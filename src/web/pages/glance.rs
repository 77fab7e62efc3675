//! At a glance (the home page): my open tickets by priority, the newest unowned tickets with
//! Take, counts per queue and status, alarms that went off. The `#glance` block is also served
//! alone (`/glance`) so the script can swap it in when the live stream says something changed.

use axum::extract::State;
use maud::{html, Markup};

use super::ticket::take_button;
use crate::model::lifecycle::Status;
use crate::store::query::{self, ListFilter, QueueCount, TicketRow, Timer};
use crate::web::auth::{Viewer, WebCaller};
use crate::web::error::WebError;
use crate::web::layout::{page, status, ticket_table, when, Page};
use crate::web::WebState;

/// Rows in each list of the page.
pub const ROWS: u32 = 10;

/// What the page shows, read in one go on one connection.
pub struct Glance {
    mine: Vec<TicketRow>,
    unowned: Vec<TicketRow>,
    counts: Vec<QueueCount>,
    alarms: Vec<Timer>,
}

/// Reads the page's data for `operator`.
pub async fn read(state: &WebState, operator: &str) -> Result<Glance, WebError> {
    let filter = ListFilter {
        owner: Some(operator.to_string()),
        limit: Some(ROWS),
        ..ListFilter::default()
    };
    Ok(state
        .app
        .store
        .reader
        .read(move |c| {
            Ok(Glance {
                mine: query::list(c, &filter)?,
                unowned: query::newest_unowned(c, ROWS)?,
                counts: query::work_counts(c)?,
                alarms: query::alerts(c, false, ROWS)?,
            })
        })
        .await?)
}

const OPEN_WORK: [Status; 4] = [Status::New, Status::Open, Status::Pending, Status::Referred];

fn counts_table(counts: &[QueueCount]) -> Markup {
    let mut queues: Vec<&str> = counts.iter().map(|c| c.queue.as_str()).collect();
    queues.dedup();
    let n = |q: &str, s: Status| {
        counts
            .iter()
            .find(|c| c.queue == q && c.status == s)
            .map(|c| c.tickets)
            .unwrap_or(0)
    };
    html! {
        table.counts {
            thead { tr { th { "Queue" } @for s in OPEN_WORK { th { (status(s)) } } } }
            tbody {
                @for q in &queues {
                    tr {
                        td { a href={ "/tickets?queue=" (crate::web::error::encode_component(q)) } { (q) } }
                        @for s in OPEN_WORK {
                            td.n { a href={ "/tickets?queue=" (crate::web::error::encode_component(q)) "&status=" (s.as_str()) } { (n(q, s)) } }
                        }
                    }
                }
                @if queues.is_empty() { tr { td colspan="5" .empty { "no open work" } } }
            }
        }
    }
}

/// The `#glance` block.
pub fn block(who: &WebCaller, g: &Glance) -> Markup {
    html! {
        div #glance data-fragment="/glance" {
            div.grid {
                section #mine {
                    h2 { "My open tickets" }
                    (ticket_table(&g.mine, None))
                }
                section #unowned {
                    h2 { "Newest unowned" }
                    table.tickets {
                        tbody {
                            @for r in &g.unowned {
                                tr {
                                    td { a href={ "/tickets/" (r.number) } { (r.number) } }
                                    td class={ "p" (r.priority) } { (r.priority) }
                                    td { (r.queue) }
                                    td.subject { a href={ "/tickets/" (r.number) } { (r.subject) } }
                                    td { @if who.can_write() { (take_button(who, r.number, "Take")) } }
                                }
                            }
                            @if g.unowned.is_empty() { tr { td .empty { "nothing unowned" } } }
                        }
                    }
                }
                section #queues {
                    h2 { "Queues" }
                    (counts_table(&g.counts))
                }
                section #alarms {
                    h2 { "Alarms that went off" }
                    table {
                        tbody {
                            @for t in &g.alarms {
                                tr {
                                    td { a href={ "/tickets/" (t.number) } { (t.number) } }
                                    td.subject { (t.text) }
                                    td { (when(t.fired_at.unwrap_or(t.due_at))) }
                                }
                            }
                            @if g.alarms.is_empty() { tr { td .empty { "no alarms" } } }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /`: the home page.
pub async fn home(State(state): State<WebState>, Viewer(who): Viewer) -> Result<Page, WebError> {
    let g = read(&state, &who.caller.name).await?;
    Ok(page(
        "At a glance",
        &who,
        Some("glance"),
        html! { main { h1 { "At a glance · " (state.app.config.node.site) } (block(&who, &g)) } },
    ))
}

/// `GET /glance`: the block alone, for live updates.
pub async fn fragment(
    State(state): State<WebState>,
    Viewer(who): Viewer,
) -> Result<Page, WebError> {
    let g = read(&state, &who.caller.name).await?;
    Ok(Page(block(&who, &g)))
}
