//! Ticket endpoints. Writes go to the store's writer and answer after the durable commit;
//! reads run on the read pool.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::Deserialize;

use super::auth::Caller;
use super::error::{ticket_number, ApiError, ApiJson, ApiQuery};
use super::AppState;
use crate::model::clock;
use crate::model::command::{Command, CreateTicket};
use crate::model::ticket::LinkKind;
use crate::model::timer::TimerAction;
use crate::store::query::{
    self, Chart, FullNote, HistoryPage, ListFilter, SearchHit, TicketRow, Timer,
};
use crate::store::writer::TicketAck;
use crate::store::{Idempotency, WriteOp, WriteOutcome, WriteRequest};

/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// The request's idempotency key, if it carries one, with a canonical fingerprint of what was
/// asked: the SHA-256 of `what`'s JSON (serde_json: fields in declaration order, no maps), streamed
/// into the digest (no copy of a large note). The same typed request gives the same fingerprint
/// in every build and on every node. Handlers pass the request as sent, tagged with the
/// endpoint, before relative times are resolved, so a later retry still matches.
pub(crate) fn idempotency(
    headers: &HeaderMap,
    what: &impl serde::Serialize,
) -> Result<Option<Idempotency>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| ApiError::Invalid("Idempotency-Key must be ASCII".into()))?;
    idempotency_key(v, what).map(Some)
}

/// An idempotency key with the fingerprint of `what` (the web console's forms carry their key
/// in a hidden field, so a double-clicked Create opens one ticket).
pub fn idempotency_key(v: &str, what: &impl serde::Serialize) -> Result<Idempotency, ApiError> {
    if v.is_empty() || v.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ApiError::Invalid(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )));
    }
    Ok(Idempotency {
        key: v.to_string(),
        fingerprint: fingerprint(what)?,
    })
}

/// SHA-256 (hex) of the canonical JSON of a request.
pub fn fingerprint(what: &impl serde::Serialize) -> Result<String, ApiError> {
    struct Digest(ring::digest::Context);
    impl std::io::Write for Digest {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut digest = Digest(ring::digest::Context::new(&ring::digest::SHA256));
    serde_json::to_writer(&mut digest, what).map_err(|e| {
        tracing::error!(error = %e, "cannot fingerprint a request");
        ApiError::Internal
    })?;
    Ok(hex::encode(digest.0.finish()))
}

/// Runs a ticket write for `caller` and answers its acknowledgement (the API and the console
/// both write through here).
pub async fn write_ticket(
    state: &AppState,
    caller: &Caller,
    idempotency: Option<Idempotency>,
    op: WriteOp,
) -> Result<TicketAck, ApiError> {
    let req = WriteRequest {
        actor: caller.name.clone(),
        idempotency,
        op,
    };
    match super::write(state, req).await? {
        WriteOutcome::Ticket(ack) => Ok(ack),
        other => {
            tracing::error!(?other, "unexpected write outcome");
            Err(ApiError::Internal)
        }
    }
}

/// A command on ticket `number`, with the idempotency key of the request.
async fn command(
    state: &AppState,
    caller: &Caller,
    idem: Option<Idempotency>,
    number: &str,
    command: Command,
) -> Result<Json<TicketAck>, ApiError> {
    let number = ticket_number(number)?;
    let op = WriteOp::Ticket { number, command };
    Ok(Json(write_ticket(state, caller, idem, op).await?))
}

/// `POST /v1/tickets`: open a ticket.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateTicket>,
) -> Result<(StatusCode, Json<TicketAck>), ApiError> {
    let idem = idempotency(&headers, &("create", &body))?;
    let ack = write_ticket(&state, &caller, idem, WriteOp::Create(Box::new(body))).await?;
    Ok((StatusCode::CREATED, Json(ack)))
}

/// Body of `POST /v1/tickets/{n}/notes`.
#[derive(Debug, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// Text.
    pub text: String,
    /// Shared with partners (default internal).
    #[serde(default)]
    pub shared: bool,
    /// When it happened (default now).
    pub at: Option<String>,
}

/// `POST /v1/tickets/{n}/notes`: an incident update.
pub async fn note(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NoteBody>,
) -> Result<Json<TicketAck>, ApiError> {
    let idem = idempotency(&headers, &("note", &number, &body))?;
    let happened_at = body
        .at
        .as_deref()
        .map(|t| clock::parse_time(t, clock::now()).map_err(|e| ApiError::Invalid(e.to_string())))
        .transpose()?;
    let cmd = Command::Note {
        text: body.text,
        shared: body.shared,
        happened_at,
    };
    command(&state, &caller, idem, &number, cmd).await
}

/// Body of `POST /v1/tickets/{n}/set`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBody {
    /// `FIELD=VALUE`, `FIELD+=VALUE`, `FIELD-=VALUE`.
    pub assignments: Vec<String>,
}

/// `POST /v1/tickets/{n}/set`: change header fields or status.
pub async fn set(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SetBody>,
) -> Result<Json<TicketAck>, ApiError> {
    let cmd = Command::Set {
        assignments: body.assignments,
    };
    let idem = idempotency(&headers, &("command", &number, &cmd))?;
    command(&state, &caller, idem, &number, cmd).await
}

/// Body of `POST /v1/tickets/{n}/take` (may be empty).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakeBody {
    /// Take it even though another operator owns it (RT's Steal).
    #[serde(default)]
    pub steal: bool,
}

/// `POST /v1/tickets/{n}/take`: become the owner.
pub async fn take(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TakeBody>,
) -> Result<Json<TicketAck>, ApiError> {
    let cmd = Command::Take { steal: body.steal };
    let idem = idempotency(&headers, &("take", &number, &cmd))?;
    command(&state, &caller, idem, &number, cmd).await
}

/// Body of `POST /v1/tickets/{n}/links`.
#[derive(Debug, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    /// `refers-to`, `depends-on`, `member-of` or `merged-into`.
    pub kind: String,
    /// The other ticket's number.
    pub target: i64,
}

/// `POST /v1/tickets/{n}/links`: link to another ticket.
pub async fn link(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LinkBody>,
) -> Result<Json<TicketAck>, ApiError> {
    let number = ticket_number(&number)?;
    let kind: LinkKind = body.kind.parse().map_err(ApiError::Invalid)?;
    let idem = idempotency(&headers, &("link", number, &body))?;
    let op = WriteOp::Link {
        number,
        kind,
        target: body.target,
    };
    Ok(Json(write_ticket(&state, &caller, idem, op).await?))
}

/// Body of `POST /v1/tickets/{n}/timers`: exactly one of `in` and `at`.
#[derive(Debug, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerBody {
    /// A duration from now (`2h`).
    #[serde(rename = "in")]
    pub after: Option<String>,
    /// A time.
    pub at: Option<String>,
    /// Reminder text.
    pub text: String,
}

/// `POST /v1/tickets/{n}/timers`: set an alarm clock.
pub async fn timer(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TimerBody>,
) -> Result<Json<TicketAck>, ApiError> {
    let idem = idempotency(&headers, &("timer", &number, &body))?;
    let cmd = Command::Timer {
        due_at: due_time(body.after.as_deref(), body.at.as_deref())?,
        text: body.text,
    };
    command(&state, &caller, idem, &number, cmd).await
}

/// When a timer goes off: exactly one of `in` (a duration from now) and `at` (a time).
pub fn due_time(after: Option<&str>, at: Option<&str>) -> Result<clock::Millis, ApiError> {
    let now = clock::now();
    match (after, at) {
        (Some(d), None) => {
            let d = clock::parse_duration(d).map_err(|e| ApiError::Invalid(e.to_string()))?;
            now.checked_add(d)
                .filter(|t| *t <= clock::MAX_TIME)
                .ok_or_else(|| ApiError::Invalid(format!("duration {d} ms is too long")))
        }
        (None, Some(t)) => clock::parse_time(t, now).map_err(|e| ApiError::Invalid(e.to_string())),
        _ => Err(ApiError::Invalid(
            "give exactly one of `in` (e.g. 2h) and `at` (a time)".into(),
        )),
    }
}

/// `GET /v1/tickets/{n}/timers`: the ticket's timers in the order they were set, each with
/// its number on the ticket (what cancel, snooze and ack take) and its state.
pub async fn timers(
    State(state): State<AppState>,
    Path(number): Path<String>,
) -> Result<Json<Vec<Timer>>, ApiError> {
    let number = ticket_number(&number)?;
    let chart = state
        .store
        .reader
        .read(move |c| query::chart(c, number))
        .await?;
    Ok(Json(chart.timers))
}

/// Body of `POST /v1/tickets/{n}/timers/{k}/snooze`: exactly one of `in` and `at`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnoozeBody {
    /// A duration from now (`30m`).
    #[serde(rename = "in")]
    pub after: Option<String>,
    /// A time.
    pub at: Option<String>,
}

/// `POST /v1/tickets/{n}/timers/{k}/{cancel|snooze|ack}`: manage one timer; `k` is its
/// number on the ticket or its id.
pub async fn timer_action(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((number, which, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Json<TicketAck>, ApiError> {
    let idem = idempotency(&headers, &("timer-action", &number, &which, &action, &body))?;
    let number = ticket_number(&number)?;
    let empty = body.as_object().is_some_and(|o| o.is_empty());
    let action = match action.as_str() {
        "cancel" | "ack" if !empty => {
            return Err(ApiError::Invalid(format!("{action} takes no body")))
        }
        "cancel" => TimerAction::Cancel,
        "ack" => TimerAction::Acknowledge,
        "snooze" => {
            let b: SnoozeBody = serde_json::from_value(body)
                .map_err(|e| ApiError::Invalid(format!("invalid JSON body: {e}")))?;
            TimerAction::Snooze {
                due_at: due_time(b.after.as_deref(), b.at.as_deref())?,
            }
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "no timer action {other:?}: use cancel, snooze or ack"
            )))
        }
    };
    let op = WriteOp::Timer {
        number,
        which,
        action,
    };
    Ok(Json(write_ticket(&state, &caller, idem, op).await?))
}

/// Body of `POST /v1/tickets/{n}/resolve`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// One line saying what fixed it.
    pub resolution: String,
    /// Key component.
    pub component: Option<String>,
    /// Escalated to.
    pub escalated_to: Option<String>,
}

/// `POST /v1/tickets/{n}/resolve`.
pub async fn resolve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<Json<TicketAck>, ApiError> {
    let cmd = Command::Resolve {
        resolution: body.resolution,
        component: body.component,
        escalated_to: body.escalated_to,
    };
    let idem = idempotency(&headers, &("command", &number, &cmd))?;
    command(&state, &caller, idem, &number, cmd).await
}

/// Body of `POST /v1/tickets/{n}/close`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// Sign-off.
    pub checked_by: Option<String>,
}

/// `POST /v1/tickets/{n}/close`.
pub async fn close(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CloseBody>,
) -> Result<Json<TicketAck>, ApiError> {
    let cmd = Command::Close {
        checked_by: body.checked_by,
    };
    let idem = idempotency(&headers, &("command", &number, &cmd))?;
    command(&state, &caller, idem, &number, cmd).await
}

/// Body of `POST /v1/tickets/{n}/reopen`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReopenBody {
    /// Why.
    pub reason: String,
}

/// `POST /v1/tickets/{n}/reopen`.
pub async fn reopen(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ReopenBody>,
) -> Result<Json<TicketAck>, ApiError> {
    let cmd = Command::Reopen {
        reason: body.reason,
    };
    let idem = idempotency(&headers, &("command", &number, &cmd))?;
    command(&state, &caller, idem, &number, cmd).await
}

/// The answer of `GET /v1/tickets/{n}`: the chart, and how this site refers to the ticket
/// (`42`, or `SITE#42` for a partner's ticket).
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct ShowAnswer {
    /// `42` or `SITE#42`.
    pub reference: String,
    /// The chart.
    #[serde(flatten)]
    pub chart: Chart,
    /// The ticket's attachments, oldest first.
    #[serde(default)]
    pub attachments: Vec<crate::store::attachment::AttachmentRow>,
}

/// `GET /v1/tickets/{n}?after=&limit=`: the chart with one page of its history (long notes by
/// reference).
pub async fn show(
    State(state): State<AppState>,
    Path(number): Path<String>,
    ApiQuery(page): ApiQuery<HistoryPage>,
) -> Result<Json<ShowAnswer>, ApiError> {
    let number = ticket_number(&number)?;
    let (chart, attachments) = state
        .store
        .reader
        .read(move |c| {
            Ok((
                query::chart_page(c, number, page)?,
                crate::store::attachment::list(c, number)?,
            ))
        })
        .await?;
    Ok(Json(ShowAnswer {
        reference: chart.ticket.reference(&state.config.node.site),
        chart,
        attachments,
    }))
}

/// `GET /v1/tickets/{n}/notes/{note_id}`: one note in full (what the history gives by
/// reference).
pub async fn note_body(
    State(state): State<AppState>,
    Path((number, note_id)): Path<(String, String)>,
) -> Result<Json<FullNote>, ApiError> {
    let number = ticket_number(&number)?;
    let note_id: uuid::Uuid = note_id.parse().map_err(|_| {
        ApiError::Invalid(format!(
            "invalid note id {note_id:?}: use the note_id of a NoteAdded event in the history"
        ))
    })?;
    let note = state
        .store
        .reader
        .read(move |c| query::note(c, number, note_id))
        .await?;
    Ok(Json(note))
}

/// Query of `GET /v1/tickets`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// One status (default: all open work).
    pub status: Option<String>,
    /// Queue.
    pub queue: Option<String>,
    /// Owner.
    pub owner: Option<String>,
    /// Only the caller's tickets.
    #[serde(default)]
    pub mine: bool,
    /// Priority 1-4.
    pub priority: Option<u8>,
    /// Severity 1-4.
    pub severity: Option<u8>,
    /// Ticket type.
    #[serde(rename = "type")]
    pub ticket_type: Option<String>,
    /// Network.
    pub network: Option<String>,
    /// One of the affected nodes.
    pub node: Option<String>,
    /// Circuit id.
    pub circuit: Option<String>,
    /// A custom field's value, `NAME=VALUE`.
    pub cf: Option<String>,
    /// Opened at or after this time (RFC 3339 or `-2h`).
    pub created_since: Option<String>,
    /// Changed at or after this time.
    pub updated_since: Option<String>,
    /// `priority` (default), `updated` or `age`.
    pub sort: Option<String>,
    /// Most rows (1 to 1000, default 100).
    pub limit: Option<u32>,
}

fn level_filter(what: &str, v: Option<u8>) -> Result<Option<u8>, ApiError> {
    match v {
        Some(l) if !(1..=4).contains(&l) => {
            Err(ApiError::Invalid(format!("{what} must be 1 to 4, got {l}")))
        }
        v => Ok(v),
    }
}

fn since(v: Option<&str>) -> Result<Option<clock::Millis>, ApiError> {
    v.map(|t| clock::parse_time(t, clock::now()).map_err(|e| ApiError::Invalid(e.to_string())))
        .transpose()
}

impl ListQuery {
    /// The store filter this query asks for (`mine` is `caller`'s); the API and the web
    /// console's lists both filter through here.
    pub fn into_filter(self, caller: &str) -> Result<ListFilter, ApiError> {
        let q = self;
        let status = q
            .status
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(ApiError::Invalid)?;
        let owner = match (q.mine, q.owner) {
            (true, Some(_)) => {
                return Err(ApiError::Invalid(
                    "give either mine or owner, not both".into(),
                ))
            }
            (true, None) => Some(caller.to_string()),
            (false, owner) => owner,
        };
        if let Some(t) = &q.ticket_type {
            t.parse::<crate::model::TicketType>()
                .map_err(ApiError::Invalid)?;
        }
        let custom =
            q.cf.as_deref()
                .map(|cf| match cf.split_once('=') {
                    Some((name, value)) if !name.trim().is_empty() => {
                        Ok((name.trim().to_string(), value.to_string()))
                    }
                    _ => Err(ApiError::Invalid(format!(
                        "cf must be NAME=VALUE, got {cf:?}"
                    ))),
                })
                .transpose()?;
        Ok(ListFilter {
            status,
            queue: q.queue,
            owner,
            priority: level_filter("priority", q.priority)?,
            severity: level_filter("severity", q.severity)?,
            ticket_type: q.ticket_type,
            network: q.network,
            node: q.node,
            circuit: q.circuit,
            custom,
            created_since: since(q.created_since.as_deref())?,
            updated_since: since(q.updated_since.as_deref())?,
            sort: q
                .sort
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(ApiError::Invalid)?
                .unwrap_or_default(),
            limit: q.limit,
        })
    }
}

/// `GET /v1/tickets`: open work by priority (or as `sort` says), filtered.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<TicketRow>>, ApiError> {
    let filter = q.into_filter(&caller.name)?;
    Ok(Json(
        state
            .store
            .reader
            .read(move |c| query::list(c, &filter))
            .await?,
    ))
}

/// Query of `GET /v1/search`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// The words to find.
    pub q: String,
    /// Most hits (default 50).
    pub limit: Option<u32>,
}

/// `GET /v1/search`: full-text search over subjects and updates.
pub async fn search(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<Vec<SearchHit>>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    Ok(Json(state.store.search(q.q, limit).await?))
}

/// Query of `GET /v1/alerts`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    /// Include alerts on tickets no longer open.
    #[serde(default)]
    pub all: bool,
    /// Most alerts (default 200, at most 1000).
    pub limit: Option<u32>,
}

/// `GET /v1/alerts`: timers that have gone off.
pub async fn alerts(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AlertsQuery>,
) -> Result<Json<Vec<Timer>>, ApiError> {
    Ok(Json(
        state
            .store
            .reader
            .read(move |c| query::alerts(c, q.all, q.limit.unwrap_or(200)))
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_the_sha256_of_the_requests_canonical_json() {
        let body = NoteBody {
            text: "hello".into(),
            shared: false,
            at: None,
        };
        // sha256 of ["note","1",{"text":"hello","shared":false,"at":null}]: fixed across builds.
        assert_eq!(
            fingerprint(&("note", "1", &body)).unwrap(),
            "d645eaa967dcb57f8d0ed43d18ea5a69e3bc70fe728b80c8f425247b84cdb8c6"
        );
        let other = NoteBody {
            text: "hello!".into(),
            ..body
        };
        assert_ne!(
            fingerprint(&("note", "1", &other)).unwrap(),
            "d645eaa967dcb57f8d0ed43d18ea5a69e3bc70fe728b80c8f425247b84cdb8c6"
        );
    }
}
