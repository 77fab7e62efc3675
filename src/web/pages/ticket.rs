//! The ticket page: the whole chart (header, history in order with internal and shared notes
//! told apart, timers, links, resolution data, durations) and a form for every action: note,
//! set fields, take or steal, resolve, close, reopen, timer, link.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::write;
use crate::api::error::ticket_number;
use crate::model::clock::{self, human_duration};
use crate::model::command::Command;
use crate::model::event::EventKind;
use crate::model::lifecycle::Status;
use crate::model::ticket::LinkKind;
use crate::store::query::{self, Chart};
use crate::store::WriteOp;
use crate::web::auth::{Viewer, WebCaller, WriteForm};
use crate::web::error::{invalid, WebError};
use crate::web::layout::{csrf, page, status, when, Page};
use crate::web::session::random_token;
use crate::web::WebState;

/// A form posting to `/tickets/{number}/{action}` with its CSRF token and a fresh
/// idempotency key.
fn action_form(
    who: &WebCaller,
    number: i64,
    action: &str,
    id: Option<&str>,
    body: Markup,
) -> Markup {
    html! {
        form.act method="post" action={ "/tickets/" (number) "/" (action) } id=[id] {
            (csrf(who))
            input type="hidden" name="idem" value=(random_token());
            (body)
        }
    }
}

/// The Take button (a one-button form), used on the ticket page and at a glance.
pub fn take_button(who: &WebCaller, number: i64, label: &str) -> Markup {
    html! {
        form.inline method="post" action={ "/tickets/" (number) "/take" } {
            (csrf(who))
            input type="hidden" name="idem" value=(random_token());
            button type="submit" { (label) }
        }
    }
}

fn header(chart: &Chart) -> Markup {
    let t = &chart.ticket;
    let r = &t.reporter;
    let contact: Vec<&str> = [&r.name, &r.org, &r.phone, &r.email]
        .iter()
        .filter_map(|v| v.as_deref())
        .collect();
    let row = |label: &str, v: Option<String>| match v.filter(|v| !v.is_empty()) {
        Some(v) => html! { dt { (label) } dd { (v) } },
        None => html! {},
    };
    let res = &t.resolution;
    html! {
        dl.header {
            dt { "Status" } dd { (status(t.status)) " since " (when(t.status_since)) }
            dt { "Priority" } dd class={ "p" (t.priority) } { (t.priority) }
            dt { "Severity" } dd { (t.severity) }
            dt { "Queue" } dd { a href={ "/tickets?queue=" (crate::web::error::encode_component(&t.queue)) } { (t.queue) } }
            dt { "Owner" } dd { (t.owner.as_deref().unwrap_or("—")) }
            dt { "Opened" } dd { (when(t.created_at)) " by " (t.opened_by) }
            @if let Some(p) = t.problem_start { dt { "Problem start" } dd { (when(p)) } }
            (row("Next action", t.next_action.clone()))
            (row("Network", t.network.clone()))
            (row("Circuit", t.circuit.clone()))
            (row("Nodes", Some(t.nodes.join(", "))))
            (row("Reporter", Some(contact.join(", "))))
            (row("Requestors", Some(t.watchers.requestors.join(", "))))
            (row("Cc", Some(t.watchers.cc.join(", "))))
            (row("AdminCc", Some(t.watchers.admin_cc.join(", "))))
            @for (k, v) in &t.custom { (row(&format!("cf.{k}"), Some(v.clone()))) }
            @if let Some(at) = res.resolved_at { dt { "Resolved" } dd { (when(at)) } }
            (row("Resolution", res.resolution.clone()))
            (row("Component", res.component.clone()))
            (row("Escalated to", res.escalated_to.clone()))
            @if let Some(total) = res.total_ms {
                dt { "Durations" }
                dd { "total " (human_duration(total)) ", NOC time " (human_duration(res.noc_ms.unwrap_or(0)))
                     ", customer time " (human_duration(res.customer_ms.unwrap_or(0))) }
            } @else {
                dt { "Age" } dd { (human_duration((clock::now() - t.created_at).max(0))) }
            }
            @if let Some(at) = res.closed_at { dt { "Closed" } dd { (when(at)) } }
            (row("Checked by", res.checked_by.clone()))
            @for l in &t.links {
                dt { (l.kind.as_str()) } dd { a href={ "/tickets/" (l.target_number) } { "TT " (l.target_number) } }
            }
            @for l in &chart.incoming {
                dt { "← " (l.kind) } dd { a href={ "/tickets/" (l.from_number) } { "TT " (l.from_number) } }
            }
            dt { "Id" } dd.meta { (t.id) " · site " (t.site) }
        }
    }
}

/// A one-button form on timer `k` of ticket `n` (`cancel`, `ack`), or snooze with its field.
pub fn timer_button(who: &WebCaller, n: i64, k: u32, action: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action={ "/tickets/" (n) "/timers/" (k) "/" (action) } {
            (csrf(who))
            input type="hidden" name="idem" value=(random_token());
            @if action == "snooze" { input type="text" name="in" placeholder="30m" size="5" required; " " }
            button type="submit" { (label) }
        }
    }
}

fn timers(who: &WebCaller, chart: &Chart) -> Markup {
    let n = chart.ticket.number;
    html! {
        @if !chart.timers.is_empty() {
            h2 { "Timers" }
            table #timers {
                tbody {
                    @for tm in &chart.timers {
                        @let state = if tm.cancelled_at.is_some() { "cancelled" }
                            else if tm.fired_at.is_none() { "pending" }
                            else if tm.acked_at.is_none() { "alert" } else { "acknowledged" };
                        tr class={ "timer-" (state) } {
                            td { (tm.ordinal) }
                            td { (tm.text) }
                            td { @match tm.fired_at { Some(f) => { "went off " (when(f)) }, None => { "due " (when(tm.due_at)) } } }
                            td { (state) @if let Some(by) = &tm.acked_by { " by " (by) } }
                            td.meta { "set by " (tm.set_by) }
                            td {
                                @if who.can_write() && tm.cancelled_at.is_none() {
                                    @if tm.fired_at.is_none() { (timer_button(who, n, tm.ordinal, "cancel", "Cancel")) " " }
                                    @if state == "alert" { (timer_button(who, n, tm.ordinal, "ack", "Acknowledge")) " " }
                                    @if state != "acknowledged" { (timer_button(who, n, tm.ordinal, "snooze", "Snooze")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn more_history(chart: &Chart) -> Markup {
    html! {
        @if let Some(after) = chart.more_after {
            p #more-history { a href={ "/tickets/" (chart.ticket.number) "?after=" (after) } { "Later history →" } }
        }
    }
}

fn history(chart: &Chart) -> Markup {
    let timer_text = |id| {
        chart
            .timers
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.text.clone())
    };
    html! {
        h2 { "History" }
        ol.history #history {
            @for h in &chart.history {
                @let e = &h.event;
                @match &e.kind {
                    EventKind::NoteAdded { text, shared, happened_at, .. } => {
                        li class=(if *shared { "note shared" } else { "note internal" }) {
                            div.meta {
                                (when(e.at)) " · " (e.actor)
                                span.badge { (if *shared { "shared" } else { "internal" }) }
                                @if let Some(h) = happened_at { " · happened " (when(*h)) }
                            }
                            @if let Some(bytes) = h.note_bytes {
                                @if let EventKind::NoteAdded { note_id, .. } = &e.kind {
                                    p.meta { "A long update (" (bytes / 1024) " KiB): "
                                        a href={ "/tickets/" (chart.ticket.number) "/notes/" (note_id) } { "open it in full" } }
                                }
                            } @else {
                                pre.note { (text) }
                            }
                        }
                    }
                    EventKind::TicketCreated { ticket, .. } => {
                        li { div.meta { (when(e.at)) " · " (e.actor) }
                             "opened " (ticket.ticket_type) " ticket: severity " (ticket.severity)
                             ", priority " (ticket.priority) ", queue " (ticket.queue) }
                    }
                    other => {
                        @if let Some(line) = other.describe(&timer_text) {
                            li class=[matches!(other, EventKind::TimerFired { .. }).then_some("alarm")] {
                                div.meta { (when(e.at)) " · " (e.actor) }
                                (line)
                            }
                        }
                    }
                }
            }
        }
    }
}

fn actions(who: &WebCaller, chart: &Chart) -> Markup {
    let t = &chart.ticket;
    let n = t.number;
    let final_ = matches!(t.status, Status::Closed | Status::Cancelled);
    let take = match t.owner.as_deref() {
        Some(o) if o == who.caller.name => None,
        Some(_) => Some("Steal"),
        None => Some("Take"),
    };
    html! {
        h2 { "Act" }
        div.actions {
            (action_form(who, n, "note", Some("note-form"), html! {
                label { "Incident update (n)" textarea name="text" id="note-text" required {} }
                label { input type="checkbox" name="shared" value="on"; " shared with partners (internal by default)" }
                label { "Happened at (optional) " input type="text" name="at" placeholder="-15m or 2026-11-22 03:17"; }
                button type="submit" id="note-submit" { "Add update" }
            }))
            @if let (Some(label), false) = (take, final_) {
                (action_form(who, n, "take", Some("take-form"), html! {
                    p { "Owner: " (t.owner.as_deref().unwrap_or("nobody")) }
                    @if label == "Steal" { input type="hidden" name="steal" value="on"; }
                    button type="submit" id="take-submit" { (label) " (t)" }
                }))
            }
            (action_form(who, n, "set", None, html! {
                label { "Set fields, one FIELD=VALUE per line (FIELD+=VALUE adds to a list)"
                    textarea name="assignments" placeholder="priority=1\nstatus=pending\nnodes+=rtr-7" {} }
                button type="submit" { "Set" }
            }))
            @if matches!(t.status, Status::New | Status::Open | Status::Pending | Status::Referred) {
                (action_form(who, n, "resolve", Some("resolve-form"), html! {
                    label { "Resolution " input type="text" name="resolution" id="resolution" required; }
                    label { "Key component " input type="text" name="component"; }
                    label { "Escalated to " input type="text" name="escalated_to"; }
                    button type="submit" id="resolve-submit" { "Resolve" }
                }))
            }
            @if t.status == Status::Resolved {
                (action_form(who, n, "close", None, html! {
                    label { "Checked by " input type="text" name="checked_by"; }
                    button type="submit" { "Close" }
                }))
            }
            @if matches!(t.status, Status::Resolved | Status::Closed) {
                (action_form(who, n, "reopen", None, html! {
                    label { "Reason " input type="text" name="reason" required; }
                    button type="submit" { "Reopen" }
                }))
            }
            (action_form(who, n, "timer", None, html! {
                label { "Alarm in " input type="text" name="in" placeholder="2h" size="6"; " or at " input type="text" name="at" placeholder="2026-11-22 03:17" size="16"; }
                label { "Reminder " input type="text" name="text" required; }
                button type="submit" { "Set timer" }
            }))
            (action_form(who, n, "link", None, html! {
                label { "Link " select name="kind" {
                    @for k in [LinkKind::RefersTo, LinkKind::DependsOn, LinkKind::MemberOf, LinkKind::MergedInto] {
                        option value=(k.as_str()) { (k.as_str()) }
                    }
                } " ticket " input type="text" name="target" inputmode="numeric" size="8" required; }
                button type="submit" { "Link" }
            }))
        }
    }
}

/// Query of `GET /tickets/{n}`: `after` pages through a long history.
#[derive(Debug, Deserialize)]
pub struct ShowQuery {
    after: Option<String>,
}

/// `GET /tickets/{n}`.
pub async fn show(
    State(state): State<WebState>,
    Viewer(who): Viewer,
    Path(number): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ShowQuery>,
) -> Result<Page, WebError> {
    let number = ticket_number(&number)?;
    let after = q
        .after
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse::<i64>()
                .map_err(|_| invalid(format!("after must be a log position, got {a:?}")))
        })
        .transpose()?;
    let page_of = query::HistoryPage { after, limit: None };
    let (chart, attachments) = state
        .app
        .store
        .reader
        .read(move |c| {
            Ok((
                query::chart_page(c, number, page_of)?,
                crate::store::attachment::list(c, number)?,
            ))
        })
        .await?;
    let t = &chart.ticket;
    let reference = t.reference(&state.app.config.node.site);
    Ok(page(
        &format!("TT {reference}"),
        &who,
        Some("chart chart-history"),
        html! {
            main #ticket {
                div #chart data-fragment={ "/tickets/" (t.number) } {
                    h1 { "TT " (reference) " " span.meta { "[" (t.ticket_type) "]" } " " span #subject { (t.subject) } }
                    (header(&chart))
                    (timers(&who, &chart))
                    @if !chart.referrals.is_empty() { h2 { "Referrals" } (super::referrals::table(&chart.referrals)) }
                    @if !attachments.is_empty() { h2 { "Attachments" } (attachment_list(t.number, &attachments)) }
                }
                @if who.can_write() { (actions(&who, &chart)) }
                div #chart-history { (history(&chart)) (more_history(&chart)) }
            }
        },
    ))
}

fn back(number: i64) -> Response {
    Redirect::to(&format!("/tickets/{number}")).into_response()
}

fn opt(v: Option<String>) -> Option<String> {
    v.filter(|v| !v.trim().is_empty())
}

/// A command form on ticket `number`, written with the form's idempotency key.
async fn run(
    state: &WebState,
    f: &WriteForm<impl serde::Serialize + Sync>,
    number: &str,
    command: Command,
) -> Result<Response, WebError> {
    let number = ticket_number(number)?;
    write(
        state,
        f,
        &(number, &f.form),
        WriteOp::Ticket { number, command },
    )
    .await?;
    Ok(back(number))
}

/// Fields of the note form.
#[derive(Debug, serde::Serialize, Deserialize)]
pub struct NoteForm {
    text: String,
    shared: Option<String>,
    at: Option<String>,
}

/// `POST /tickets/{n}/note`. Browsers send a textarea's line breaks as CRLF; they become LF
/// again, so a pasted text is stored as it was pasted. Nothing else is touched.
pub async fn note(
    State(state): State<WebState>,
    Path(n): Path<String>,
    f: WriteForm<NoteForm>,
) -> Result<Response, WebError> {
    let happened_at = opt(f.form.at.clone())
        .map(|t| clock::parse_time(&t, clock::now()).map_err(|e| invalid(e.to_string())))
        .transpose()?;
    let cmd = Command::Note {
        text: f.form.text.replace("\r\n", "\n"),
        shared: f.form.shared.as_deref() == Some("on"),
        happened_at,
    };
    run(&state, &f, &n, cmd).await
}

/// Fields of the set form.
#[derive(Debug, serde::Serialize, Deserialize)]
pub struct SetForm {
    assignments: String,
}

/// `POST /tickets/{n}/set`: one assignment per line.
pub async fn set(
    State(state): State<WebState>,
    Path(n): Path<String>,
    f: WriteForm<SetForm>,
) -> Result<Response, WebError> {
    let assignments: Vec<String> = f
        .form
        .assignments
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if assignments.is_empty() {
        return Err(invalid("give at least one FIELD=VALUE line"));
    }
    run(&state, &f, &n, Command::Set { assignments }).await
}

/// Fields of the take form: `steal=on` when the ticket has another owner (the page says so
/// on the button, RT's Steal); without it such a take is refused.
#[derive(Debug, serde::Serialize, Deserialize)]
pub struct TakeForm {
    steal: Option<String>,
}

/// `POST /tickets/{n}/take`: become the owner.
pub async fn take(
    State(state): State<WebState>,
    Path(n): Path<String>,
    f: WriteForm<TakeForm>,
) -> Result<Response, WebError> {
    let steal = f.form.steal.as_deref() == Some("on");
    run(&state, &f, &n, Command::Take { steal }).await
}

/// Fields of a timer action form (`in` or `at` for snooze only).
#[derive(Debug, serde::Serialize, Deserialize)]
pub struct TimerActionForm {
    #[serde(rename = "in")]
    after: Option<String>,
    at: Option<String>,
}

/// `POST /tickets/{n}/timers/{k}/{cancel|snooze|ack}`: manage timer `k` of the ticket.
pub async fn timer_action(
    State(state): State<WebState>,
    Path((n, which, action)): Path<(String, String, String)>,
    f: WriteForm<TimerActionForm>,
) -> Result<Response, WebError> {
    use crate::model::timer::TimerAction;
    let number = ticket_number(&n)?;
    let action = match action.as_str() {
        "cancel" => TimerAction::Cancel,
        "ack" => TimerAction::Acknowledge,
        "snooze" => TimerAction::Snooze {
            due_at: crate::api::tickets::due_time(
                opt(f.form.after.clone()).as_deref(),
                opt(f.form.at.clone()).as_deref(),
            )?,
        },
        other => {
            return Err(invalid(format!(
                "no timer action {other:?}: use cancel, snooze or ack"
            )))
        }
    };
    let what = (number, &which, &f.form);
    write(
        &state,
        &f,
        &what,
        WriteOp::Timer {
            number,
            which: which.clone(),
            action,
        },
    )
    .await?;
    Ok(back(number))
}

/// The ticket number and the id (of a note or an attachment: `what`) of a `/tickets/{n}/…/{id}`
/// path.
fn number_and_id(n: &str, id: &str, what: &str) -> Result<(i64, uuid::Uuid), WebError> {
    let number = ticket_number(n)?;
    let id = id
        .parse()
        .map_err(|_| invalid(format!("invalid {what} id {id:?}")))?;
    Ok((number, id))
}

/// `GET /tickets/{n}/notes/{id}`: one long update in full, as plain text (never markup).
pub async fn full_note(
    State(state): State<WebState>,
    Viewer(_who): Viewer,
    Path((n, id)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let (number, id) = number_and_id(&n, &id, "note")?;
    let note = state
        .app
        .store
        .reader
        .read(move |c| query::note(c, number, id))
        .await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        note.text,
    )
        .into_response())
}

/// A ticket's attachments: each a download link (never shown inline: the bytes are untrusted).
fn attachment_list(number: i64, rows: &[crate::store::attachment::AttachmentRow]) -> Markup {
    html! {
        ul #attachments {
            @for a in rows {
                li {
                    a href={ "/tickets/" (number) "/attachments/" (a.id) } download=(a.name) { (a.name) }
                    " " span.meta { (a.size) " bytes, " (if a.shared { "shared" } else { "internal" }) ", by " (a.author) " at " (a.origin_site) ", sha256 " (a.sha256) }
                }
            }
        }
    }
}

/// `GET /tickets/{n}/attachments/{id}`: an attachment of ticket `n` as a download
/// (`Content-Disposition: attachment`, octet-stream, `nosniff`), never rendered.
pub async fn attachment(
    State(state): State<WebState>,
    Viewer(_who): Viewer,
    Path((n, id)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let (number, id) = number_and_id(&n, &id, "attachment")?;
    let (row, bytes) = state
        .app
        .store
        .reader
        .read(move |c| crate::store::attachment::get(c, id))
        .await?;
    if row.ticket != number {
        return Err(invalid(format!(
            "attachment {id} is not on ticket {number}"
        )));
    }
    Ok(crate::api::attachments::download(&row, bytes))
}

/// Fields of the resolve form.
#[derive(Debug, serde::Serialize, Deserialize)]
pub struct ResolveForm {
    resolution: String,
    component: Option<String>,
    escalated_to: Option<String>,
}

/// `POST /tickets/{n}/resolve`.
pub async fn resolve(
    State(state): State<WebState>,
    Path(n): Path<String>,
    f: WriteForm<ResolveForm>,
) -> Result<Response, WebError> {
    let cmd = Command::Resolve {
        resolution: f.form.resolution.clone(),
        component: opt(f.form.component.clone()),
        escalated_to: opt(f.form.escalated_to.clone()),
    };
    run(&state, &f, &n, cmd).await
}

/// Fields of the close form.
#[derive(Debug, serde::Serialize, Deserialize)]
pub struct CloseForm {
    checked_by: Option<String>,
}

/// `POST /tickets/{n}/close`.
pub async fn close(
    State(state): State<WebState>,
    Path(n): Path<String>,
    f: WriteForm<CloseForm>,
) -> Result<Response, WebError> {
    let cmd = Command::Close {
        checked_by: opt(f.form.checked_by.clone()),
    };
    run(&state, &f, &n, cmd).await
}

/// Fields of the reopen form.
#[derive(Debug, serde::Serialize, Deserialize)]
pub struct ReopenForm {
    reason: String,
}

/// `POST /tickets/{n}/reopen`.
pub async fn reopen(
    State(state): State<WebState>,
    Path(n): Path<String>,
    f: WriteForm<ReopenForm>,
) -> Result<Response, WebError> {
    let cmd = Command::Reopen {
        reason: f.form.reason.clone(),
    };
    run(&state, &f, &n, cmd).await
}

/// Fields of the timer form: exactly one of `in` and `at`.
#[derive(Debug, serde::Serialize, Deserialize)]
pub struct TimerForm {
    #[serde(rename = "in")]
    after: Option<String>,
    at: Option<String>,
    text: String,
}

/// `POST /tickets/{n}/timer`.
pub async fn timer(
    State(state): State<WebState>,
    Path(n): Path<String>,
    f: WriteForm<TimerForm>,
) -> Result<Response, WebError> {
    let due_at = crate::api::tickets::due_time(
        opt(f.form.after.clone()).as_deref(),
        opt(f.form.at.clone()).as_deref(),
    )?;
    let cmd = Command::Timer {
        due_at,
        text: f.form.text.clone(),
    };
    run(&state, &f, &n, cmd).await
}

/// Fields of the link form.
#[derive(Debug, serde::Serialize, Deserialize)]
pub struct LinkForm {
    kind: String,
    target: String,
}

/// `POST /tickets/{n}/link`.
pub async fn link(
    State(state): State<WebState>,
    Path(n): Path<String>,
    f: WriteForm<LinkForm>,
) -> Result<Response, WebError> {
    let number = ticket_number(&n)?;
    let kind: LinkKind = f.form.kind.parse().map_err(invalid)?;
    let target = ticket_number(f.form.target.trim().trim_start_matches('#'))?;
    write(
        &state,
        &f,
        &(number, &f.form),
        WriteOp::Link {
            number,
            kind,
            target,
        },
    )
    .await?;
    Ok(back(number))
}
