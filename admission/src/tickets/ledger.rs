//! Where the ticket lifecycle lives in the store: every version an immutable artifact, and
//! references naming the current one.
//!
//! - `tickets/<key>`: a ticket's current version ([`TicketRef`]);
//! - `pauses/<key>`: its latest pause state ([`PauseRef`]);
//! - `events/<seq>`: each event's current version, `seq` a time-ordered uid given when it was
//!   added, so the keys sort in arrival order ([`EventRef`]);
//! - `event-ids/<key>`: an event id's `seq`, so an id is added once;
//! - `runs/<uid>`: each run's record (written by the pipeline).
//!
//! `<key>` is the hex SHA-256 of the id: ids may hold capitals, `/` and `:`, which reference
//! names may not, and the reference records the id itself.

use protocol::artifact::kinds::{Event, PauseState, Ticket};
use protocol::artifact::{Artifact, Kind};
use protocol::schema::{self, SchemaName};
use protocol::store::{Provenance, Store};
use protocol::{Digest, ErrorCode, ErrorInfo};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Namespace of the tickets' current versions.
pub const TICKETS: &str = "tickets";
/// Namespace of the tickets' latest pause states.
pub const PAUSES: &str = "pauses";
/// Namespace of the events, by arrival.
pub const EVENTS: &str = "events";
/// Namespace of the event ids.
pub const EVENT_IDS: &str = "event-ids";

/// What `tickets/<key>` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRef {
    /// The ticket's id.
    pub ticket_id: String,
    /// Its current version.
    pub current: Digest,
}

/// What `pauses/<key>` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseRef {
    /// The ticket's id.
    pub ticket_id: String,
    /// Its latest pause state.
    pub pause_state: Digest,
}

/// What `events/<seq>` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    /// The event's id.
    pub event_id: String,
    /// The ticket it is about.
    pub ticket_id: String,
    /// Its current version: pending, then processed.
    pub current: Digest,
}

/// What `event-ids/<key>` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct EventIdRef {
    event_id: String,
    seq: String,
}

/// An artifact as the ledger holds it, with its digest.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<T> {
    /// Its digest.
    pub digest: Digest,
    /// The artifact.
    pub value: T,
}

/// How adding an event went.
#[derive(Debug, Clone, PartialEq)]
pub enum Added {
    /// Added, pending, at this arrival key.
    New(String, Digest),
    /// The same event (same id and content) was added before: nothing was written.
    Again(String, Digest),
}

/// The store key of an id.
pub fn key(id: &str) -> String {
    Digest::of_bytes(id.as_bytes()).hex()
}

/// The ticket lifecycle's view of a store.
pub struct Ledger<'a> {
    store: &'a Store,
}

impl<'a> Ledger<'a> {
    /// The ledger in `store`.
    pub fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// The store underneath.
    pub fn store(&self) -> &'a Store {
        self.store
    }

    /// Reads, verifies and checks against its schema the artifact `digest`, as a `T`.
    pub fn read<T: Kind + DeserializeOwned>(&self, digest: &Digest) -> Result<T, ErrorInfo> {
        read(self.store, digest)
    }

    /// Checks `typed` against its schema and stores it.
    pub fn write<T: Kind + Serialize>(
        &self,
        typed: &T,
        producer: &str,
        derived: &[Digest],
    ) -> Result<Digest, ErrorInfo> {
        write(self.store, typed, producer, derived)
    }

    /// The current version of ticket `ticket_id`, if there is one.
    pub fn ticket(&self, ticket_id: &str) -> Result<Option<Stored<Ticket>>, ErrorInfo> {
        let Some(entry) = self.store.get_ref::<TicketRef>(TICKETS, &key(ticket_id))? else {
            return Ok(None);
        };
        let value: Ticket = self.read(&entry.current)?;
        if value.ticket_id != ticket_id {
            return Err(ErrorInfo::new(
                ErrorCode::IntegrityMismatch,
                format!(
                    "the reference for ticket {ticket_id} names {}, a version of ticket {}",
                    entry.current, value.ticket_id
                ),
            ));
        }
        Ok(Some(Stored {
            digest: entry.current,
            value,
        }))
    }

    /// Stores `ticket` as the ticket's current version.
    pub fn put_ticket(&self, ticket: &Ticket, producer: &str) -> Result<Digest, ErrorInfo> {
        let derived: Vec<Digest> = ticket.previous.into_iter().collect();
        let digest = self.write(ticket, producer, &derived)?;
        self.store.set_ref(
            TICKETS,
            &key(&ticket.ticket_id),
            &TicketRef {
                ticket_id: ticket.ticket_id.clone(),
                current: digest,
            },
        )?;
        Ok(digest)
    }

    /// Every ticket's current version, by id.
    pub fn tickets(&self) -> Result<Vec<Stored<Ticket>>, ErrorInfo> {
        let mut tickets = Vec::new();
        for k in self.store.ref_keys(TICKETS)? {
            if let Some(entry) = self.store.get_ref::<TicketRef>(TICKETS, &k)? {
                let value: Ticket = self.read(&entry.current)?;
                tickets.push(Stored {
                    digest: entry.current,
                    value,
                });
            }
        }
        tickets.sort_by(|a, b| a.value.ticket_id.cmp(&b.value.ticket_id));
        Ok(tickets)
    }

    /// A ticket's versions, newest first, following `previous` from `digest`.
    pub fn history(&self, digest: Digest) -> Result<Vec<Stored<Ticket>>, ErrorInfo> {
        let mut versions = Vec::new();
        let mut next = Some(digest);
        while let Some(digest) = next {
            let value: Ticket = self.read(&digest)?;
            next = value.previous;
            versions.push(Stored { digest, value });
            if versions.len() > 100_000 {
                return Err(ErrorInfo::new(
                    ErrorCode::IntegrityMismatch,
                    "a ticket's history does not end",
                ));
            }
        }
        Ok(versions)
    }

    /// The latest pause state of ticket `ticket_id`, if it has one.
    pub fn pause(&self, ticket_id: &str) -> Result<Option<Stored<PauseState>>, ErrorInfo> {
        let Some(entry) = self.store.get_ref::<PauseRef>(PAUSES, &key(ticket_id))? else {
            return Ok(None);
        };
        let value = self.read(&entry.pause_state)?;
        Ok(Some(Stored {
            digest: entry.pause_state,
            value,
        }))
    }

    /// Stores `pause` as its ticket's latest pause state.
    pub fn put_pause(&self, pause: &PauseState) -> Result<Digest, ErrorInfo> {
        let derived: Vec<Digest> = std::iter::once(pause.ticket)
            .chain(pause.run_record)
            .collect();
        let digest = self.write(pause, "admission ticket pause", &derived)?;
        self.store.set_ref(
            PAUSES,
            &key(&pause.ticket_id),
            &PauseRef {
                ticket_id: pause.ticket_id.clone(),
                pause_state: digest,
            },
        )?;
        Ok(digest)
    }

    /// Adds a pending event, unless one with its id is there: the same event again writes
    /// nothing; another event under a used id is refused.
    pub fn add_event(&self, event: &Event, producer: &str) -> Result<Added, ErrorInfo> {
        let id_key = key(&event.event_id);
        if let Some(known) = self.store.get_ref::<EventIdRef>(EVENT_IDS, &id_key)? {
            if let Some(entry) = self.store.get_ref::<EventRef>(EVENTS, &known.seq)? {
                let first = self.first_version(entry.current)?;
                if first.value == *event {
                    return Ok(Added::Again(known.seq, first.digest));
                }
            }
            return Err(ErrorInfo::new(
                ErrorCode::InvalidParams,
                format!(
                    "an event with id {:?} was added before, with other content; an event id \
                     names one event",
                    event.event_id
                ),
            ));
        }
        let digest = self.write(event, producer, &[])?;
        let seq = uuid::Uuid::now_v7().hyphenated().to_string();
        self.store.set_ref(
            EVENTS,
            &seq,
            &EventRef {
                event_id: event.event_id.clone(),
                ticket_id: event.ticket_id.clone(),
                current: digest,
            },
        )?;
        // Written last: an id is taken only once its event is there.
        self.store.set_ref(
            EVENT_IDS,
            &id_key,
            &EventIdRef {
                event_id: event.event_id.clone(),
                seq: seq.clone(),
            },
        )?;
        Ok(Added::New(seq, digest))
    }

    /// Every event's current version, in arrival order, with its arrival key.
    pub fn events(&self) -> Result<Vec<(String, Stored<Event>)>, ErrorInfo> {
        let mut events = Vec::new();
        for seq in self.store.ref_keys(EVENTS)? {
            if let Some(entry) = self.store.get_ref::<EventRef>(EVENTS, &seq)? {
                let value = self.read(&entry.current)?;
                events.push((
                    seq,
                    Stored {
                        digest: entry.current,
                        value,
                    },
                ));
            }
        }
        Ok(events)
    }

    /// Replaces the event at arrival key `seq` with its processed version.
    pub fn put_processed(&self, seq: &str, event: &Event) -> Result<Digest, ErrorInfo> {
        let derived: Vec<Digest> = event.previous.into_iter().collect();
        let digest = self.write(event, "admission events process", &derived)?;
        self.store.set_ref(
            EVENTS,
            seq,
            &EventRef {
                event_id: event.event_id.clone(),
                ticket_id: event.ticket_id.clone(),
                current: digest,
            },
        )?;
        Ok(digest)
    }

    /// The version an event was added as, following `previous` from `digest`.
    fn first_version(&self, digest: Digest) -> Result<Stored<Event>, ErrorInfo> {
        let value: Event = self.read(&digest)?;
        match value.previous {
            Some(previous) => Ok(Stored {
                digest: previous,
                value: self.read(&previous)?,
            }),
            None => Ok(Stored { digest, value }),
        }
    }
}

/// Reads, verifies and checks against its schema the artifact `digest`, as a `T`: anything
/// else under that digest is an integrity failure, like bytes that do not hash.
pub fn read<T: Kind + DeserializeOwned>(store: &Store, digest: &Digest) -> Result<T, ErrorInfo> {
    let artifact = store.get_artifact_shared(digest).map_err(ErrorInfo::from)?;
    let not_it = |why: String| {
        ErrorInfo::new(
            ErrorCode::IntegrityMismatch,
            format!("{digest} is not a valid {}: {why}", T::KIND),
        )
    };
    if let Some(name) = SchemaName::for_kind(T::KIND) {
        schema::validate(name, artifact.value()).map_err(|e| not_it(e.to_string()))?;
    }
    artifact.view().map_err(|e| not_it(e.to_string()))
}

/// Checks `typed` against its schema and stores it; a failure is ours, not the input's.
pub fn write<T: Kind + Serialize>(
    store: &Store,
    typed: &T,
    producer: &str,
    derived: &[Digest],
) -> Result<Digest, ErrorInfo> {
    let artifact = Artifact::from_typed(typed)
        .map_err(|e| ErrorInfo::new(ErrorCode::InternalError, e.to_string()))?;
    if let Some(name) = SchemaName::for_kind(T::KIND) {
        schema::validate(name, artifact.value()).map_err(|e| {
            ErrorInfo::new(
                ErrorCode::InternalError,
                format!("a {} about to be stored fails its schema: {e}", T::KIND),
            )
        })?;
    }
    let provenance = Provenance::new(producer).with_derived_from(derived.iter().copied());
    store
        .put_artifact(&artifact, &provenance)
        .map_err(ErrorInfo::from)
}
