//! Quick create: RFC 1297's header fields (type, subject, severity, priority, queue, owner,
//! problem start, reporter contact, affected nodes, network, circuit) and a first update.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::write;
use crate::model::command::CreateTicket;
use crate::model::ticket::Contact;
use crate::store::WriteOp;
use crate::web::auth::{Viewer, WriteForm};
use crate::web::error::{invalid, WebError};
use crate::web::layout::{csrf, page, Page};
use crate::web::session::random_token;
use crate::web::WebState;

/// `GET /tickets/new`.
pub async fn form(Viewer(who): Viewer) -> Page {
    let text = |label: &str, name: &str| {
        html! { label { (label) " " input type="text" name=(name) id={ "new-" (name) }; } }
    };
    let level = |label: &str, name: &str| {
        html! { label { (label) " " select name=(name) id={ "new-" (name) } {
            @for l in 1..=4 { option value=(l) selected[l == 3] { (l) } }
        } } }
    };
    page(
        "New ticket",
        &who,
        None,
        html! {
            main {
                h1 { "New ticket" }
                @if !who.can_write() { p.flash { "You are a viewer: you cannot open tickets." } }
                form.act #create-form method="post" action="/tickets" {
                    (csrf(&who))
                    input type="hidden" name="idem" value=(random_token());
                    div.grid {
                        div {
                            label { "Subject " input type="text" name="subject" id="new-subject" required size="50"; }
                            label { "Type " select name="type" id="new-type" {
                                @for t in ["trouble", "complaint", "engineering", "meta"] { option value=(t) { (t) } }
                            } }
                            (level("Severity", "severity"))
                            (level("Priority", "priority"))
                            (text("Queue", "queue"))
                            (text("Owner", "owner"))
                            (text("Problem start", "problem_start"))
                        }
                        div {
                            (text("Reporter name", "reporter_name"))
                            (text("Reporter org", "reporter_org"))
                            (text("Reporter phone", "reporter_phone"))
                            (text("Reporter email", "reporter_email"))
                            (text("Affected nodes (comma separated)", "nodes"))
                            (text("Network", "network"))
                            (text("Circuit", "circuit"))
                        }
                    }
                    label { "First update (internal)" textarea name="description" id="new-description" {} }
                    button type="submit" id="create-submit" { "Open ticket" }
                }
            }
        },
    )
}

/// Fields of the create form (all text, checked by the same rules as the API).
#[derive(Debug, serde::Serialize, Deserialize)]
pub struct CreateForm {
    subject: String,
    #[serde(rename = "type")]
    ticket_type: Option<String>,
    severity: Option<String>,
    priority: Option<String>,
    queue: Option<String>,
    owner: Option<String>,
    problem_start: Option<String>,
    reporter_name: Option<String>,
    reporter_org: Option<String>,
    reporter_phone: Option<String>,
    reporter_email: Option<String>,
    nodes: Option<String>,
    network: Option<String>,
    circuit: Option<String>,
    description: Option<String>,
}

fn opt(v: &Option<String>) -> Option<String> {
    v.clone().filter(|v| !v.trim().is_empty())
}

fn level(what: &str, v: &Option<String>) -> Result<Option<u8>, WebError> {
    opt(v)
        .map(|l| {
            l.trim()
                .parse::<u8>()
                .map_err(|_| invalid(format!("{what} must be 1 to 4, got {l:?}")))
        })
        .transpose()
}

/// `POST /tickets`.
pub async fn submit(
    State(state): State<WebState>,
    f: WriteForm<CreateForm>,
) -> Result<Response, WebError> {
    let c = &f.form;
    let body = CreateTicket {
        subject: c.subject.clone(),
        ticket_type: opt(&c.ticket_type),
        severity: level("severity", &c.severity)?,
        priority: level("priority", &c.priority)?,
        queue: opt(&c.queue),
        owner: opt(&c.owner),
        description: opt(&c.description).map(|d| d.replace("\r\n", "\n")),
        problem_start: opt(&c.problem_start),
        reporter: Contact {
            name: opt(&c.reporter_name),
            org: opt(&c.reporter_org),
            phone: opt(&c.reporter_phone),
            email: opt(&c.reporter_email),
        },
        nodes: c
            .nodes
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect(),
        network: opt(&c.network),
        circuit: opt(&c.circuit),
    };
    let ack = write(
        &state,
        &f,
        &("create", &body),
        WriteOp::Create(Box::new(body.clone())),
    )
    .await?;
    Ok(Redirect::to(&format!("/tickets/{}", ack.number)).into_response())
}
