//! Given / when / then for the Incident aggregate, after cqrs-es's
//! `TestFramework` and disintegrate's `TestHarness`: a rule's test names the
//! events that happened, the command, and what must follow — an event, no
//! event, or the [`Rejection`] that names the rule.
//!
//! ```
//! # use marauders_core::testing::{given, NOW};
//! # use marauders_core::incident::{Actor, IncidentCommand, Rejection, Resolution};
//! # use marauders_core::events::{IncidentResolved, EventPayload};
//! # use marauders_core::domain::Role;
//! # use uuid::Uuid;
//! # let troll = Uuid::from_u128(1);
//! # let ron = Actor { user_id: Uuid::from_u128(2), role: Role::Student };
//! # let reported: EventPayload = marauders_core::events::IncidentCreated {
//! #     id: troll, title: "Troll".into(), description: None,
//! #     severity: marauders_core::domain::Severity::High,
//! #     location: marauders_core::domain::Location::Dungeons,
//! #     status: marauders_core::domain::IncidentStatus::Open,
//! #     reported_by: ron.user_id, assigned_to: None, resolved_by: None, resolution: None,
//! #     created_at: NOW, updated_at: NOW, resolved_at: None, version: 1,
//! # }.into();
//! let resolve = || IncidentCommand::Resolve { resolution: Resolution::parse("Knocked out").unwrap() };
//! let resolved: EventPayload = IncidentResolved {
//!     id: troll, version: 2, resolved_by: ron.user_id, resolution: "Knocked out".into(),
//! }.into();
//!
//! given([reported.clone()]).when(resolve(), ron).then(resolved.clone());
//! given([reported, resolved]).when(resolve(), ron).then_rejected(Rejection::AlreadyResolved);
//! ```
//!
//! The history is built from events only — never by running other commands
//! through `decide` — so each test depends on nothing but the rule it
//! checks. Every history event is folded through [`IncidentFold`] (the
//! version rule included), stamped with a fixed id and a time before
//! [`NOW`]; the command is decided at [`NOW`]. Nothing reads a clock.
//!
//! The same history answers questions about the fold itself:
//! [`Given::outcomes`], [`Given::fold`], [`Given::history`].

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::events::{Event, EventPayload};
use crate::incident::{
    Actor, Decision, FoldOutcome, Incident, IncidentCommand, IncidentFold, Rejection, decide,
    incident_of,
};

/// When the command of [`Given::when`] is decided: the `now` its event
/// carries (`createdAt` of a report or a comment).
/// 2024-10-31T20:00:00Z.
pub const NOW: DateTime<Utc> = DateTime::from_timestamp_nanos(1_730_404_800 * 1_000_000_000);

/// When history event `n` (from 0) happened: one minute apart from
/// 19:00, so always before [`NOW`] (for up to sixty events).
pub fn history_time(n: usize) -> DateTime<Utc> {
    NOW - Duration::hours(1) + Duration::minutes(n as i64)
}

/// The id of history event `n`, so a test can ask the fold which one it
/// accepted.
fn history_event_id(n: usize) -> Uuid {
    Uuid::from_u128(0xE000_0000 + n as u128)
}

/// The id of the event the command under test produces.
pub const DECIDED_EVENT_ID: Uuid = Uuid::from_u128(0xD000_0000);

/// Starts a scenario from what already happened.
pub fn given(history: impl IntoIterator<Item = EventPayload>) -> Given {
    let mut fold = IncidentFold::default();
    let (mut events, mut outcomes) = (Vec::new(), Vec::new());
    for (n, payload) in history.into_iter().enumerate() {
        let event = Event::at(history_event_id(n), history_time(n), payload, None);
        outcomes.push(fold.apply(&event));
        events.push(event);
    }
    Given {
        fold,
        history: events,
        outcomes,
    }
}

/// What happened before the command: the events and their fold.
#[derive(Debug, Clone)]
pub struct Given {
    fold: IncidentFold,
    history: Vec<Event>,
    outcomes: Vec<FoldOutcome>,
}

impl Given {
    /// Decides `command` by `actor` at [`NOW`], on the incident the command
    /// is about: the one a report names, or else the one incident the
    /// history is about. Use [`Given::when_on`] when that is ambiguous.
    ///
    /// # Panics
    ///
    /// If the command is not a report and the history is about no incident,
    /// or about several.
    pub fn when(self, command: IncidentCommand, actor: Actor) -> When {
        let incident = match &command {
            IncidentCommand::Report { id, .. } => *id,
            _ => self.the_one_incident(),
        };
        self.when_on(incident, command, actor)
    }

    /// Decides `command` by `actor` at [`NOW`] on `incident`.
    pub fn when_on(self, incident: Uuid, command: IncidentCommand, actor: Actor) -> When {
        let decision = decide(self.fold.get(incident), command, actor, NOW);
        When {
            given: self,
            incident,
            actor,
            decision,
        }
    }

    /// What the fold did with each history event, in order.
    pub fn outcomes(&self) -> &[FoldOutcome] {
        &self.outcomes
    }

    /// The history as it was folded (with the ids and times it was given).
    pub fn history(&self) -> &[Event] {
        &self.history
    }

    pub fn fold(&self) -> &IncidentFold {
        &self.fold
    }

    /// The incident's state after the history.
    ///
    /// # Panics
    ///
    /// If the fold does not know it.
    pub fn incident(&self, id: Uuid) -> &Incident {
        self.fold
            .get(id)
            .unwrap_or_else(|| panic!("the history never created incident {id}"))
    }

    fn the_one_incident(&self) -> Uuid {
        let mut ids: Vec<Uuid> = self
            .history
            .iter()
            .filter_map(|event| incident_of(&event.payload))
            .collect();
        ids.dedup();
        match ids.as_slice() {
            [one] => *one,
            [] => panic!("the history has no incident: say which one with when_on"),
            _ => panic!("the history has several incidents: say which one with when_on"),
        }
    }
}

/// The decision on the command; assert it with one of the `then` methods.
#[must_use = "a scenario asserts nothing until one of its `then` methods runs"]
#[derive(Debug)]
pub struct When {
    given: Given,
    incident: Uuid,
    actor: Actor,
    decision: Decision,
}

impl When {
    /// The command is accepted with exactly `expected`. Folds it onto the
    /// history and returns the incident's new state, for the test to look
    /// at what the event does.
    ///
    /// # Panics
    ///
    /// If the decision differs, or the fold does not accept the event.
    pub fn then(self, expected: impl Into<EventPayload>) -> Incident {
        let expected = expected.into();
        assert_eq!(
            self.decision,
            Ok(Some(expected.clone())),
            "expected the command to append {expected:?}"
        );
        let mut fold = self.given.fold;
        let event = Event::at(DECIDED_EVENT_ID, NOW, expected, Some(self.actor.user_id));
        assert_eq!(
            fold.apply(&event),
            FoldOutcome::Applied,
            "the fold accepts what decide appends"
        );
        fold.get(self.incident)
            .cloned()
            .expect("the incident exists after its event")
    }

    /// The command is accepted but changes nothing, so nothing is appended.
    pub fn then_nothing(self) {
        assert_eq!(self.decision, Ok(None), "expected nothing to be appended");
    }

    /// The command is refused by the rule `expected` names.
    pub fn then_rejected(self, expected: Rejection) {
        assert_eq!(
            self.decision,
            Err(expected.clone()),
            "expected the rule {} to refuse the command",
            expected.rule()
        );
    }

    /// The decision itself, for checks the `then` methods do not cover.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }
}
