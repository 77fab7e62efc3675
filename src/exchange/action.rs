//! What an operator asks of the exchange: refer a ticket, or act on an existing referral. Plain
//! request types (the API's JSON bodies), turned into the message each action sends.

use serde::{Deserialize, Serialize};

use crate::model::clock::Millis;
use crate::wire::exchange::Body;

/// `ttx refer N --to SITE [--respond-within 4h] [--note TEXT]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferTicket {
    /// Our ticket's number.
    pub number: i64,
    /// The partner site.
    pub to: String,
    /// When we want an answer (accept or reject) by, unix ms.
    #[serde(default)]
    pub respond_by: Option<Millis>,
    /// A first note for the partner (sent as a shared note, if the partner's policy shares
    /// notes).
    #[serde(default)]
    pub note: Option<String>,
}

/// An operator's action on a referral (`ttx referral accept|reject|close|reopen|cancel|ask`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "action", deny_unknown_fields)]
pub enum ReferralAction {
    /// Handler: take it on.
    Accept,
    /// Handler: not ours.
    Reject {
        /// Why (for the referrer's history).
        reason: String,
    },
    /// Referrer: the resolution holds.
    Close,
    /// Referrer: the problem is back.
    Reopen {
        /// Why.
        reason: String,
    },
    /// Referrer: withdraw it.
    Cancel {
        /// Why.
        reason: String,
    },
    /// Either side: ask the other for information (it answers with a shared note).
    Ask {
        /// The question.
        question: String,
    },
}

impl ReferralAction {
    /// The message the action sends.
    pub fn body(&self) -> Body {
        match self {
            ReferralAction::Accept => Body::Accepted,
            ReferralAction::Reject { reason } => Body::Rejected {
                reason: reason.clone(),
            },
            ReferralAction::Close => Body::Close,
            ReferralAction::Reopen { reason } => Body::Reopen {
                reason: reason.clone(),
            },
            ReferralAction::Cancel { reason } => Body::Cancel {
                reason: reason.clone(),
            },
            ReferralAction::Ask { question } => Body::InfoRequest {
                question: question.clone(),
            },
        }
    }

    /// The text the action carries (reason or question), for the size check.
    pub fn text(&self) -> &str {
        match self {
            ReferralAction::Accept | ReferralAction::Close => "",
            ReferralAction::Reject { reason }
            | ReferralAction::Reopen { reason }
            | ReferralAction::Cancel { reason } => reason,
            ReferralAction::Ask { question } => question,
        }
    }
}
