//! Ticket and event files, as people and outside systems write them: read strictly, checked,
//! and made into the artifacts the ledger stores.

use std::path::Path;

use protocol::artifact::kinds::{Event, Ticket, TicketStatus};
use protocol::artifact::{Artifact, Kind};
use protocol::schema::{self, SchemaName};
use protocol::store::Store;
use protocol::{canonical, ErrorCode, ErrorInfo};
use serde_json::{Map, Value};

use crate::workorder::{read_bounded, resolve_input, unknown_member};

/// Members only the admission writes: a file that sets them is refused.
const WRITTEN_BY_ADMISSION: &[&str] = &["previous", "event_id", "resolution", "updated_at"];

/// Every member of a ticket's `work`; its schema allows no other.
const WORK_FIELDS: &[&str] = &[
    "mechanism",
    "operation",
    "params",
    "inputs",
    "budget",
    "budget_ms",
    "branch",
];

/// Words that say an objective is not written yet.
const PLACEHOLDERS: &[&str] = &["todo", "tbd", "fixme", "xxx", "fix", "fix it", "wip", "n/a"];

/// Reads the ticket file at `path`: strict I-JSON, no member the admission writes, `kind`
/// and `status` (NEW) filled in when absent, checked against the schema and for a clear
/// objective. Nothing is stored: see [`store_inputs`].
pub fn read_ticket(path: &Path) -> Result<Ticket, ErrorInfo> {
    let mut object = read_object(path, "ticket")?;
    let invalid = |reason: String| {
        ErrorInfo::new(
            ErrorCode::InvalidParams,
            format!("the ticket {} is invalid: {reason}", path.display()),
        )
    };
    if let Some(written) = WRITTEN_BY_ADMISSION
        .iter()
        .find(|f| object.contains_key(**f))
    {
        return Err(invalid(format!(
            "{written:?} is written by the admission, never by a ticket file"
        )));
    }
    object
        .entry("kind")
        .or_insert_with(|| Value::from(Ticket::KIND));
    object
        .entry("status")
        .or_insert_with(|| Value::from(TicketStatus::New.as_str()));
    let value = Value::Object(object);
    let unknown = unknown_member(&value, Ticket::FIELDS, "a ticket").or_else(|| {
        let work = value.get("work")?;
        unknown_member(work, WORK_FIELDS, "a ticket's work").map(|r| format!("work: {r}"))
    });
    if let Some(reason) = unknown {
        return Err(invalid(reason));
    }
    schema::validate(SchemaName::Ticket, &value).map_err(|e| invalid(e.to_string()))?;
    let ticket: Ticket = Artifact::from_value(value)
        .and_then(|a| a.view())
        .map_err(|e| invalid(e.to_string()))?;
    if matches!(
        ticket.status,
        TicketStatus::Running | TicketStatus::Done | TicketStatus::Failed
    ) {
        return Err(invalid(format!(
            "a ticket is filed NEW, TODO, READY or BLOCKED, not {}: the admission sets the \
             others when its work runs",
            ticket.status
        )));
    }
    if let Some(why) = unclear_objective(&ticket.objective) {
        return Err(invalid(format!(
            "the objective {:?} {why}",
            ticket.objective
        )));
    }
    if let Some(empty) = ticket.acceptance.iter().find(|a| a.trim().is_empty()) {
        return Err(invalid(format!(
            "an acceptance criterion is blank: {empty:?}"
        )));
    }
    Ok(ticket)
}

/// Stores a ticket's path inputs (relative to the ticket file at `path`) as blobs and names
/// them by digest; digests are checked against the store.
pub fn store_inputs(ticket: &mut Ticket, path: &Path, store: &Store) -> Result<(), ErrorInfo> {
    let base = path.parent().unwrap_or(Path::new("."));
    let label = format!("ticket {}", ticket.ticket_id);
    for (name, given) in &mut ticket.work.inputs {
        let digest = resolve_input(store, base, name, given, &label)
            .map_err(|e| ErrorInfo::new(e.code(), e.to_string()))?;
        *given = digest.to_string();
    }
    Ok(())
}

/// Reads the event file at `path`: strict I-JSON, `kind` filled in and `processed` false when
/// absent; one already processed, or carrying what processing writes, is refused.
pub fn read_event(path: &Path) -> Result<Event, ErrorInfo> {
    let mut object = read_object(path, "event")?;
    let invalid = |reason: String| {
        ErrorInfo::new(
            ErrorCode::InvalidParams,
            format!("the event {} is invalid: {reason}", path.display()),
        )
    };
    for written in ["resolution", "previous"] {
        if object.contains_key(written) {
            return Err(invalid(format!(
                "{written:?} is written when the event is processed, never by an event file"
            )));
        }
    }
    object
        .entry("kind")
        .or_insert_with(|| Value::from(Event::KIND));
    object
        .entry("processed")
        .or_insert_with(|| Value::Bool(false));
    if object.get("processed") != Some(&Value::Bool(false)) {
        return Err(invalid(
            "an event is added pending (\"processed\": false); processing marks it".to_owned(),
        ));
    }
    let value = Value::Object(object);
    if let Some(reason) = unknown_member(&value, Event::FIELDS, "an event") {
        return Err(invalid(reason));
    }
    schema::validate(SchemaName::Event, &value).map_err(|e| invalid(e.to_string()))?;
    Artifact::from_value(value)
        .and_then(|a| a.view())
        .map_err(|e| invalid(e.to_string()))
}

/// Why an objective is not clear enough to act on, if it is not: one line, at least three
/// words, not a placeholder.
pub fn unclear_objective(objective: &str) -> Option<&'static str> {
    let trimmed = objective.trim();
    if trimmed.contains('\n') {
        Some("spans several lines: a ticket has one objective, in one sentence")
    } else if PLACEHOLDERS.contains(&trimmed.to_lowercase().trim_end_matches('.')) {
        Some("is a placeholder: say what the change is for")
    } else if trimmed.split_whitespace().count() < 3 {
        Some("is too short to be clear: say what changes and why, in at least three words")
    } else {
        None
    }
}

fn read_object(path: &Path, what: &str) -> Result<Map<String, Value>, ErrorInfo> {
    let bytes = read_bounded(path).map_err(|e| ErrorInfo::new(e.code(), e.to_string()))?;
    let value = canonical::parse(&bytes).map_err(|e| {
        ErrorInfo::new(
            ErrorCode::InvalidParams,
            format!("the {what} {} is not strict I-JSON: {e}", path.display()),
        )
    })?;
    match value {
        Value::Object(object) => Ok(object),
        _ => Err(ErrorInfo::new(
            ErrorCode::InvalidParams,
            format!("the {what} {} is not a JSON object", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objectives_must_be_one_clear_sentence() {
        assert_eq!(
            unclear_objective("Add the keeper file to the repository"),
            None
        );
        assert!(unclear_objective("TODO").is_some());
        assert!(unclear_objective("fix it.").is_some());
        assert!(unclear_objective("refactor").is_some());
        assert!(unclear_objective("two\nlines here").is_some());
    }

    #[test]
    fn work_fields_are_the_schemas() {
        let schema: Value = serde_json::from_str(
            schema::embedded_files()
                .into_iter()
                .find(|(path, _)| *path == SchemaName::Ticket.path())
                .map(|(_, source)| source)
                .unwrap(),
        )
        .unwrap();
        let mut in_schema: Vec<&str> = schema["$defs"]["work"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut listed = WORK_FIELDS.to_vec();
        in_schema.sort_unstable();
        listed.sort_unstable();
        assert_eq!(in_schema, listed);
    }
}
