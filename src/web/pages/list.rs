//! Ticket lists and search. Filters are the query string (`/tickets?queue=core&status=new`),
//! so a list is a link operators can bookmark and share. Columns sort the rows shown; `q`
//! searches subjects and updates.

use axum::extract::{Query, State};
use maud::html;
use serde::Deserialize;

use crate::model::lifecycle::{self, Status};
use crate::store::query::{self, TicketRow};
use crate::web::auth::Viewer;
use crate::web::error::{encode_component, invalid, WebError};
use crate::web::layout::{page, ticket_table, Page};
use crate::web::WebState;

/// The query string of `/tickets`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ListParams {
    /// One status (default: all open work).
    pub status: Option<String>,
    /// Queue.
    pub queue: Option<String>,
    /// Owner.
    pub owner: Option<String>,
    /// `1`: only mine.
    pub mine: Option<String>,
    /// Full-text search.
    pub q: Option<String>,
    /// Column to sort by.
    pub sort: Option<String>,
    /// `asc` or `desc`.
    pub dir: Option<String>,
    /// Most rows (default 100, at most 1000).
    pub limit: Option<String>,
    /// Priority 1-4.
    pub priority: Option<String>,
    /// Severity 1-4.
    pub severity: Option<String>,
    /// Ticket type.
    #[serde(rename = "type")]
    pub ticket_type: Option<String>,
    /// Network.
    pub network: Option<String>,
    /// One of the affected nodes.
    pub node: Option<String>,
    /// Circuit id.
    pub circuit: Option<String>,
    /// A custom field, `NAME=VALUE`.
    pub cf: Option<String>,
    /// Opened since (a time or `-2h`).
    pub created_since: Option<String>,
    /// Changed since.
    pub updated_since: Option<String>,
}

fn number<T: std::str::FromStr>(what: &str, v: &Option<String>) -> Result<Option<T>, WebError> {
    given(v)
        .map(|l| {
            l.parse::<T>()
                .map_err(|_| invalid(format!("{what} must be a number, got {l:?}")))
        })
        .transpose()
}

impl ListParams {
    /// The API's list query for these parameters (empty form fields count as not given); the
    /// store sorts by `updated` or `age` itself when the column asks for it.
    fn api_query(&self) -> Result<crate::api::tickets::ListQuery, WebError> {
        let store_sort = match given(&self.sort).as_deref() {
            Some(s @ ("updated" | "age")) => Some(s.to_string()),
            _ => None,
        };
        Ok(crate::api::tickets::ListQuery {
            status: given(&self.status),
            queue: given(&self.queue),
            owner: given(&self.owner),
            mine: given(&self.mine).is_some_and(|m| m != "0"),
            priority: number("priority", &self.priority)?,
            severity: number("severity", &self.severity)?,
            ticket_type: given(&self.ticket_type),
            network: given(&self.network),
            node: given(&self.node),
            circuit: given(&self.circuit),
            cf: given(&self.cf),
            created_since: given(&self.created_since),
            updated_since: given(&self.updated_since),
            sort: store_sort,
            limit: number("limit", &self.limit)?,
        })
    }
}

fn given(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl ListParams {
    /// This list's link with `sort` by `key` (flipping the direction when already sorted so).
    fn sort_link(&self, key: &str) -> String {
        let dir = match (self.sort.as_deref(), self.dir.as_deref()) {
            (Some(k), Some("desc")) if k == key => "asc",
            (Some(k), _) if k == key => "desc",
            _ => "asc",
        };
        let mut parts = Vec::new();
        for (name, v) in [
            ("status", &self.status),
            ("queue", &self.queue),
            ("owner", &self.owner),
            ("mine", &self.mine),
            ("q", &self.q),
            ("limit", &self.limit),
            ("priority", &self.priority),
            ("severity", &self.severity),
            ("type", &self.ticket_type),
            ("network", &self.network),
            ("node", &self.node),
            ("circuit", &self.circuit),
            ("cf", &self.cf),
            ("created_since", &self.created_since),
            ("updated_since", &self.updated_since),
        ] {
            if let Some(v) = given(v) {
                parts.push(format!("{name}={}", encode_component(&v)));
            }
        }
        parts.push(format!("sort={key}"));
        parts.push(format!("dir={dir}"));
        format!("/tickets?{}", parts.join("&"))
    }
}

/// Sorts rows by a column name; unknown names are an error.
fn sort_rows(rows: &mut [TicketRow], key: &str, desc: bool) -> Result<(), WebError> {
    match key {
        "number" => rows.sort_by_key(|r| r.number),
        "priority" => rows.sort_by_key(|r| (r.priority, r.number)),
        "status" => rows.sort_by_key(|r| (lifecycle::ALL.iter().position(|s| *s == r.status), r.number)),
        "queue" => rows.sort_by(|a, b| a.queue.cmp(&b.queue).then(a.number.cmp(&b.number))),
        "owner" => rows.sort_by(|a, b| a.owner.cmp(&b.owner).then(a.number.cmp(&b.number))),
        "subject" => rows.sort_by_key(|r| r.subject.to_lowercase()),
        "updated" => rows.sort_by_key(|r| (r.updated_at, r.number)),
        other => {
            return Err(invalid(format!(
                "cannot sort by {other:?}: use number, priority, status, queue, owner, subject or updated"
            )))
        }
    }
    if desc {
        rows.reverse();
    }
    Ok(())
}

/// `GET /tickets`.
pub async fn list(
    State(state): State<WebState>,
    Viewer(who): Viewer,
    Query(p): Query<ListParams>,
) -> Result<Page, WebError> {
    let limit: Option<u32> = number("limit", &p.limit)?;
    let status: Option<Status> = given(&p.status)
        .map(|s| s.parse())
        .transpose()
        .map_err(invalid)?;
    let mine = given(&p.mine).is_some_and(|m| m != "0");
    let q = given(&p.q);
    let (mut rows, snippets) = match &q {
        Some(text) => {
            let (text, limit) = (text.clone(), limit.unwrap_or(50));
            let hits = state.app.store.search(text, limit).await?;
            let snippets: Vec<(i64, String)> = hits
                .iter()
                .map(|h| (h.ticket.number, h.snippet.clone()))
                .collect();
            (
                hits.into_iter().map(|h| h.ticket).collect::<Vec<_>>(),
                snippets,
            )
        }
        None => {
            let filter = p.api_query()?.into_filter(&who.caller.name)?;
            (
                state
                    .app
                    .store
                    .reader
                    .read(move |c| query::list(c, &filter))
                    .await?,
                Vec::new(),
            )
        }
    };
    if let Some(key) = given(&p.sort) {
        sort_rows(&mut rows, &key, p.dir.as_deref() == Some("desc"))?;
    }
    let sort = |key: &str| p.sort_link(key);
    let title = match &q {
        Some(q) => format!("Search: {q}"),
        None => "Tickets".to_string(),
    };
    Ok(page(
        &title,
        &who,
        None,
        html! {
            main {
                h1 { (title) }
                form.act.filters method="get" action="/tickets" {
                    label { "Status " select name="status" {
                        option value="" { "open work" }
                        @for s in lifecycle::ALL { option value=(s.as_str()) selected[status == Some(s)] { (s.as_str()) } }
                    } }
                    " " label { "Queue " input type="text" name="queue" value=[given(&p.queue)] size="10"; }
                    " " label { "Owner " input type="text" name="owner" value=[given(&p.owner)] size="10"; }
                    " " label { "Priority " select name="priority" {
                        option value="" { "any" }
                        @for l in ["1", "2", "3", "4"] { option value=(l) selected[given(&p.priority).as_deref() == Some(l)] { (l) } }
                    } }
                    " " label { "Node " input type="text" name="node" value=[given(&p.node)] size="10"; }
                    " " label { "Circuit " input type="text" name="circuit" value=[given(&p.circuit)] size="10"; }
                    " " label { "Changed since " input type="text" name="updated_since" value=[given(&p.updated_since)] size="8" placeholder="-2h"; }
                    " " label { input type="checkbox" name="mine" value="1" checked[mine]; " mine" }
                    " " label { "Text " input type="search" name="q" value=[q.clone()] size="16"; }
                    " " button type="submit" { "Filter" }
                }
                @if q.is_some() { p.meta { "Search ignores the status, queue and owner filters; newest matches first." } }
                (ticket_table(&rows, Some(&sort)))
                @if !snippets.is_empty() {
                    h2 { "Matches" }
                    ul.snippets { @for (n, s) in &snippets { li { a href={ "/tickets/" (n) } { "TT " (n) } ": " (s) } } }
                }
            }
        },
    ))
}
