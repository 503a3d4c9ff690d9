//! Property tests: random command sequences from random actors, replayed.
//!
//! - No sequence reaches a state that breaks a rule.
//! - Folding the appended events from scratch reproduces the write side's
//!   fold exactly.
//! - Every event survives a JSON round trip.
//! - Replaying any history again (whole, or with duplicates mixed in) leaves
//!   the fold unchanged: each event counts once; an event that lost a race
//!   for its version is void.

use chrono::{DateTime, Duration, TimeZone, Utc};
use marauders_core::domain::{IncidentStatus, Location, Role, Severity};
use marauders_core::events::{Event, EventPayload};
use marauders_core::incident::{
    Actor, CommentBody, Description, FoldOutcome, IncidentChanges, IncidentCommand, IncidentFold,
    IncidentTitle, Resolution, decide,
};
use proptest::prelude::*;
use uuid::Uuid;

const ACTORS: [Role; 4] = [Role::Student, Role::Student, Role::Prefect, Role::Professor];
const INCIDENTS: usize = 3;

#[derive(Debug, Clone)]
enum Kind {
    Report {
        severity: usize,
        location: usize,
    },
    Update {
        title: Option<u8>,
        status: Option<bool>,
        location: Option<usize>,
        assign: Option<Option<usize>>,
    },
    Resolve,
    ChangeSeverity(usize),
    Delete,
    Comment,
}

#[derive(Debug, Clone)]
struct Step {
    actor: usize,
    incident: usize,
    kind: Kind,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => (0..4usize, 0..Location::ALL.len()).prop_map(|(severity, location)| Kind::Report { severity, location }),
        3 => (
            proptest::option::of(0..3u8),
            proptest::option::of(any::<bool>()),
            proptest::option::of(0..Location::ALL.len()),
            proptest::option::of(proptest::option::of(0..ACTORS.len())),
        )
            .prop_map(|(title, status, location, assign)| Kind::Update { title, status, location, assign }),
        2 => Just(Kind::Resolve),
        3 => (0..4usize).prop_map(Kind::ChangeSeverity),
        1 => Just(Kind::Delete),
        2 => Just(Kind::Comment),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        (0..ACTORS.len(), 0..INCIDENTS, kind()).prop_map(|(actor, incident, kind)| Step {
            actor,
            incident,
            kind,
        }),
        1..60,
    )
}

struct World {
    users: Vec<Uuid>,
    incidents: Vec<Uuid>,
    start: DateTime<Utc>,
}

impl World {
    fn new() -> Self {
        World {
            users: (0..ACTORS.len())
                .map(|n| Uuid::from_u128(0x1000 + n as u128))
                .collect(),
            incidents: (0..INCIDENTS)
                .map(|n| Uuid::from_u128(0x2000 + n as u128))
                .collect(),
            start: Utc.with_ymd_and_hms(2024, 10, 31, 19, 0, 0).unwrap(),
        }
    }

    fn command(&self, step: &Step, n: usize) -> IncidentCommand {
        match &step.kind {
            Kind::Report { severity, location } => IncidentCommand::Report {
                id: self.incidents[step.incident],
                title: IncidentTitle::parse(&format!("Incident {n}")).unwrap(),
                description: Description::parse("seen near the lake").unwrap(),
                severity: Severity::ALL[*severity],
                location: Location::ALL[*location],
            },
            Kind::Update {
                title,
                status,
                location,
                assign,
            } => IncidentCommand::Update(IncidentChanges {
                title: title.map(|t| IncidentTitle::parse(&format!("Title {t}")).unwrap()),
                description: None,
                location: location.map(|l| Location::ALL[l]),
                status: status.map(|open| {
                    if open {
                        IncidentStatus::Open
                    } else {
                        IncidentStatus::Investigating
                    }
                }),
                assigned_to: assign.map(|a| a.map(|user| self.users[user])),
            }),
            Kind::Resolve => IncidentCommand::Resolve {
                resolution: Resolution::parse("Mischief managed").unwrap(),
            },
            Kind::ChangeSeverity(severity) => IncidentCommand::ChangeSeverity {
                severity: Severity::ALL[*severity],
            },
            Kind::Delete => IncidentCommand::Delete,
            Kind::Comment => IncidentCommand::AddComment {
                comment_id: Uuid::from_u128(0x3000 + n as u128),
                body: CommentBody::parse("I saw it too").unwrap(),
            },
        }
    }
}

/// Runs the steps like the write side does; returns the fold and the log.
fn run(steps: &[Step]) -> (IncidentFold, Vec<Event>) {
    let world = World::new();
    let (mut fold, mut log) = (IncidentFold::default(), Vec::new());
    for (n, step) in steps.iter().enumerate() {
        let actor = Actor {
            user_id: world.users[step.actor],
            role: ACTORS[step.actor],
        };
        let now = world.start + Duration::seconds(n as i64);
        let id = world.incidents[step.incident];
        let before = fold.get(id).cloned();
        let decision = decide(before.as_ref(), world.command(step, n), actor, now);
        let Ok(Some(payload)) = decision else {
            assert_eq!(
                fold.get(id),
                before.as_ref(),
                "a rejected or empty command changes nothing"
            );
            continue;
        };
        // Rules that must hold for every accepted command.
        if let Some(incident) = &before {
            assert!(
                !incident.deleted,
                "nothing happens to a deleted incident: {payload:?}"
            );
            if let EventPayload::SeverityEscalated(change) = &payload
                && change.new_severity < change.old_severity
            {
                assert!(
                    actor.role >= Role::Prefect,
                    "only PREFECT+ lowers a severity"
                );
            }
            if let EventPayload::IncidentResolved(_) = &payload {
                assert_ne!(
                    incident.status,
                    IncidentStatus::Resolved,
                    "never resolved twice"
                );
            }
            if let EventPayload::IncidentDeleted(_) = &payload {
                assert!(incident.reported_by == actor.user_id || actor.role == Role::Professor);
            }
        }
        let mut event = Event::new(payload, Some(actor.user_id));
        event.timestamp = now;
        event.event_id = Uuid::from_u128(0x4000 + n as u128);
        assert_eq!(fold.apply(&event), FoldOutcome::Applied);
        log.push(event);
        check_invariants(&fold, &log, &world);
    }
    (fold, log)
}

fn check_invariants(fold: &IncidentFold, log: &[Event], world: &World) {
    for incident in fold.incidents() {
        let events = log
            .iter()
            .filter(|e| {
                marauders_core::incident::incident_and_version(&e.payload)
                    .is_some_and(|(id, _)| id == incident.id)
            })
            .count() as u64;
        assert_eq!(incident.version, events, "version counts accepted events");
        let resolved = incident.status == IncidentStatus::Resolved;
        assert_eq!(resolved, incident.resolved_by.is_some());
        assert_eq!(resolved, incident.resolution.is_some());
        assert_eq!(resolved, incident.resolved_at.is_some());
        assert!(world.incidents.contains(&incident.id));
    }
}

fn fold_of(events: &[Event]) -> IncidentFold {
    let mut fold = IncidentFold::default();
    for event in events {
        fold.apply(event);
    }
    fold
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn folding_the_log_from_scratch_reproduces_the_write_side(steps in steps()) {
        let (fold, log) = run(&steps);
        prop_assert_eq!(fold_of(&log), fold);
    }

    #[test]
    fn every_event_survives_a_json_round_trip(steps in steps()) {
        let (_, log) = run(&steps);
        for event in &log {
            prop_assert_eq!(&Event::decode(&event.encode()).unwrap(), event);
            let value = serde_json::to_value(event).unwrap();
            prop_assert_eq!(&serde_json::from_value::<Event>(value).unwrap(), event);
        }
    }

    #[test]
    fn replaying_a_history_again_changes_nothing(steps in steps()) {
        let (mut fold, log) = run(&steps);
        let before = fold.clone();
        for event in &log {
            prop_assert_eq!(fold.apply(event), FoldOutcome::Voided, "an applied event never applies again");
        }
        prop_assert_eq!(fold, before);
    }

    #[test]
    fn duplicates_mixed_anywhere_into_a_history_count_once(
        steps in steps(),
        duplicates in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..20),
    ) {
        let (fold, log) = run(&steps);
        prop_assume!(!log.is_empty());
        let mut noisy = log.clone();
        for (which, at) in duplicates {
            let original = which.index(log.len());
            // A duplicate can only come after the original (a re-send).
            let position = original + 1 + at.index(noisy.len() - original);
            noisy.insert(position.min(noisy.len()), log[original].clone());
        }
        prop_assert_eq!(fold_of(&noisy), fold.clone());

        // A racing command that lost: another event claiming an incident
        // version that is already taken, anywhere after the winner.
        let mut raced = log.clone();
        for (n, winner) in log.iter().enumerate().step_by(3) {
            let mut loser = winner.clone();
            loser.event_id = Uuid::from_u128(0x9000 + n as u128);
            let position = raced.iter().position(|e| e.event_id == winner.event_id).unwrap() + 1;
            raced.insert(position, loser);
        }
        let raced_fold = fold_of(&raced);
        prop_assert_eq!(raced_fold.incidents().count(), fold.incidents().count());
        for incident in fold.incidents() {
            prop_assert_eq!(raced_fold.get(incident.id), Some(incident), "losers are void");
        }
    }
}
