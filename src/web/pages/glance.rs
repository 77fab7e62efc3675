//! At a glance (the home page): my open tickets by priority, the newest unowned tickets with
//! Take, counts per queue and status, alarms that went off, the queues I watch (set here, kept
//! in the log per operator). The `#glance` block is also served
//! alone (`/glance`) so the script can swap it in when the live stream says something changed.

use axum::extract::State;
use maud::{html, Markup};

use super::ticket::{take_button, timer_button};
use crate::model::lifecycle::Status;
use crate::store::query::{self, ListFilter, QueueCount, TicketRow, Timer};
use crate::store::{StoreError, WriteOp, WriteRequest};
use crate::web::auth::{Viewer, WebCaller};
use crate::web::error::WebError;
use crate::web::layout::{compact_table, csrf, page, status, when, Page};
use crate::web::WebState;

/// Rows in each list of the page.
pub const ROWS: u32 = 10;

/// What the page shows, read in one go on one connection.
pub struct Glance {
    mine: Vec<TicketRow>,
    unowned: Vec<TicketRow>,
    counts: Vec<QueueCount>,
    alarms: Vec<Timer>,
    watched: Vec<(String, Vec<TicketRow>)>,
}

/// Open tickets shown per watched queue.
pub const WATCHED_ROWS: u32 = 5;

/// Reads the page's data for `operator`.
pub async fn read(state: &WebState, operator: &str) -> Result<Glance, WebError> {
    let filter = ListFilter {
        owner: Some(operator.to_string()),
        limit: Some(ROWS),
        ..ListFilter::default()
    };
    let operator = operator.to_string();
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
                watched: query::watched_queues(c, &operator)?
                    .into_iter()
                    .map(|q| {
                        let f = ListFilter {
                            queue: Some(q.clone()),
                            limit: Some(WATCHED_ROWS),
                            ..ListFilter::default()
                        };
                        Ok((q, query::list(c, &f)?))
                    })
                    .collect::<Result<_, StoreError>>()?,
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
                    (compact_table(&g.mine))
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
                section #watched {
                    h2 { "Queues I watch" }
                    @for (q, rows) in &g.watched {
                        h3 { a href={ "/tickets?queue=" (crate::web::error::encode_component(q)) } { (q) } }
                        (compact_table(rows))
                    }
                    form.act method="post" action="/watch" {
                        (csrf(who))
                        label { "Watch queues (comma separated) "
                            input type="text" name="queues" id="watch-queues"
                                value=(g.watched.iter().map(|(q, _)| q.as_str()).collect::<Vec<_>>().join(", "));
                        }
                        button type="submit" { "Save" }
                    }
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
                                    td { @if who.can_write() && t.acked_at.is_none() { (timer_button(who, t.number, t.ordinal, "ack", "Ack")) } }
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

/// Fields of the watch form.
#[derive(Debug, serde::Deserialize)]
pub struct WatchForm {
    queues: String,
}

/// `POST /watch`: set the queues I watch. Any role may: it changes only the caller's own page.
pub async fn watch(
    State(state): State<WebState>,
    req: axum::extract::Request,
) -> Result<axum::response::Response, WebError> {
    use axum::response::IntoResponse;
    let (who, form, _) = crate::web::auth::read_form::<WatchForm>(req, &state, false).await?;
    let name = who.caller.name.clone();
    state
        .app
        .store
        .writer
        .write(WriteRequest {
            actor: name.clone(),
            idempotency: None,
            op: WriteOp::WatchQueues {
                name,
                queues: form.queues,
            },
        })
        .await
        .map_err(crate::api::error::ApiError::from)?;
    Ok(axum::response::Redirect::to("/").into_response())
}
