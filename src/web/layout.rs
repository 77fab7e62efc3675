//! The page frame (navigation, logout form, script and style links) and small rendering helpers.
//! Every value goes through maud, which escapes it: ticket text is never markup.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::auth::WebCaller;
use crate::model::clock::{self, Millis};
use crate::model::lifecycle::Status;
use crate::store::query::TicketRow;

/// The one Content-Security-Policy: nothing from elsewhere, no inline script or style.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A rendered page.
pub struct Page(pub Markup);

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut r = axum::response::Html(self.0.into_string()).into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// The `<head>` of every page; `script` adds the shortcuts and live-update script.
fn head(title: &str, script: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · ttx" }
            link rel="stylesheet" href="/static/app.css";
            @if script { script src="/static/app.js" defer {} }
        }
    }
}

/// A page without navigation (login, errors).
pub fn bare(title: &str, body: Markup) -> Page {
    Page(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, false))
            body { (body) }
        }
    })
}

/// A page with the navigation bar; `live` names what the script keeps up to date.
pub fn page(title: &str, who: &WebCaller, live: Option<&str>, body: Markup) -> Page {
    Page(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, true))
            body data-live=[live] {
                header.top {
                    nav {
                        a href="/" accesskey="g" title="At a glance (g)" { "At a glance" }
                        a href="/tickets" title="Tickets (l)" { "Tickets" }
                        a href="/tickets/new" title="New ticket (c)" { "New" }
                        a href="/referrals" { "Referrals" }
                        @if who.is_admin() { a href="/admin/peers" { "Peers" } }
                    }
                    form.search method="get" action="/tickets" {
                        input type="search" name="q" placeholder="Search (/)" aria-label="Search" id="search";
                    }
                    span.who {
                        (who.caller.name) " (" (who.caller.role.as_str()) ")"
                    }
                    @if let Some(csrf) = &who.csrf {
                        form.logout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                (body)
                footer.keys { "Keys: g glance · l list · c create · / search · n note · t take · ? help" }
            }
        }
    })
}

/// The hidden CSRF field of a form (empty for bearer-token callers, who need none).
pub fn csrf(who: &WebCaller) -> Markup {
    html! { input type="hidden" name="csrf" value=(who.csrf.as_deref().unwrap_or("")); }
}

/// A time as `2026-11-22 03:17 UTC`, with the exact time on hover.
pub fn when(ms: Millis) -> Markup {
    let full = clock::format(ms);
    let short = format!(
        "{} {} UTC",
        &full[..10.min(full.len())],
        full.get(11..16).unwrap_or("")
    );
    html! { time datetime=(full) title=(full) { (short) } }
}

/// A status badge.
pub fn status(s: Status) -> Markup {
    html! { span class={ "status s-" (s.as_str()) } { (s.as_str()) } }
}

/// The cells of one ticket row; `full` adds owner and last change.
fn row_cells(r: &TicketRow, full: bool) -> Markup {
    html! {
        td { a href={ "/tickets/" (r.number) } { (r.number) } }
        td class={ "p" (r.priority) } { (r.priority) }
        td { (status(r.status)) }
        td { (r.queue) }
        @if full { td { (r.owner.as_deref().unwrap_or("—")) } }
        td.subject { a href={ "/tickets/" (r.number) } { (r.subject) } }
        @if full { td { (when(r.updated_at)) } }
    }
}

/// A compact ticket table for at a glance: number, priority, status, queue, subject.
pub fn compact_table(rows: &[TicketRow]) -> Markup {
    html! {
        table.tickets.compact {
            tbody {
                @for r in rows { tr { (row_cells(r, false)) } }
                @if rows.is_empty() { tr { td colspan="5" .empty { "nothing here" } } }
            }
        }
    }
}

/// A ticket table; `sort` links (when given) make the headers sortable.
pub fn ticket_table(rows: &[TicketRow], sort: Option<&dyn Fn(&str) -> String>) -> Markup {
    let head = |key: &str, label: &str| match sort {
        Some(link) => html! { th { a href=(link(key)) { (label) } } },
        None => html! { th { (label) } },
    };
    html! {
        table.tickets.full {
            thead { tr {
                (head("number", "#")) (head("priority", "Pri")) (head("status", "Status"))
                (head("queue", "Queue")) (head("owner", "Owner")) (head("subject", "Subject"))
                (head("updated", "Updated"))
            } }
            tbody {
                @for r in rows { tr { (row_cells(r, true)) } }
                @if rows.is_empty() { tr { td colspan="7" .empty { "nothing here" } } }
            }
        }
    }
}
