//! The console's pages and their form handlers, one module per page.
//!
//! - [`login`]: log in and out.
//! - [`glance`]: at a glance, the home page (live).
//! - [`list`]: lists with filters, sortable columns and full-text search.
//! - [`ticket`]: the chart and its action forms.
//! - [`create`]: quick create with the RFC 1297 header fields.
//! - [`referrals`]: referrals to partners and from them (a page, and a table the ticket page shows).
//! - [`admin`]: peers, replication and transport health (admins).

pub mod admin;
pub mod create;
pub mod glance;
pub mod list;
pub mod login;
pub mod referrals;
pub mod ticket;

use crate::api::tickets::{idempotency_key, write_ticket};
use crate::store::writer::TicketAck;
use crate::store::WriteOp;
use crate::web::auth::WriteForm;
use crate::web::error::WebError;
use crate::web::WebState;

/// Writes `op` for the form's caller through the API's write path, with the form's
/// idempotency key (fingerprinted over `what`, the form as posted, as canonical JSON).
pub async fn write<T>(
    state: &WebState,
    f: &WriteForm<T>,
    what: &(impl serde::Serialize + Sync),
    op: WriteOp,
) -> Result<TicketAck, WebError> {
    let idem = f
        .idem
        .as_deref()
        .map(|k| idempotency_key(&format!("web:{k}"), what))
        .transpose()?;
    Ok(write_ticket(&state.app, &f.caller, idem, op).await?)
}
