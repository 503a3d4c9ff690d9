//! Property tests: random command sequences from a small pool of users with
//! random roles, on a few incidents, decided against the fold and replayed.
//!
//! 1. After every step no rule is broken, and each decision matches an
//!    independent model of the rules (who may do what, what the incident
//!    looks like afterwards).
//! 2. Folding the appended events from scratch reproduces the write side's
//!    fold exactly.
//! 3. Every event survives a JSON round trip.
//! 4. Replaying a history is harmless: applied again, every event is void;
//!    duplicates and stale-version events mixed in anywhere after their
//!    originals change nothing.

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use marauders_core::domain::{IncidentStatus, Location, Role, Severity};
use marauders_core::events::{
    CommentAdded, Event, EventPayload, IncidentCreated, IncidentDeleted, IncidentUpdated,
    SeverityEscalated,
};
use marauders_core::incident::{
    Actor, Claim, CommentBody, Decision, Description, FoldOutcome, Incident, IncidentChanges,
    IncidentCommand, IncidentFold, IncidentTitle, Resolution, Rule, decide, incident_and_claim,
    incident_and_version,
};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use uuid::Uuid;

const USERS: usize = 5;
const INCIDENTS: usize = 3;

fn user_id(n: usize) -> Uuid {
    Uuid::from_u128(0x1000 + n as u128)
}

fn incident_id(n: usize) -> Uuid {
    Uuid::from_u128(0x2000 + n as u128)
}

/// The fixed clock: step `n` happens at base + n seconds (+ some
/// microseconds, so timestamps carry a fraction through JSON).
fn clock(step: usize) -> DateTime<Utc> {
    let micros = (step as i64 * 137_911) % 1_000_000;
    Utc.with_ymd_and_hms(2024, 10, 31, 19, 0, 0).unwrap()
        + Duration::seconds(step as i64)
        + Duration::microseconds(micros)
}

// ---- generated commands ------------------------------------------------------

/// A command as generated: raw text is parsed when it is run, so invalid text
/// exercises the value types too.
#[derive(Debug, Clone)]
enum Cmd {
    Report {
        title: String,
        description: String,
        severity: Severity,
        location: Location,
    },
    Update {
        title: Option<String>,
        description: Option<String>,
        location: Option<Location>,
        status: Option<IncidentStatus>,
        /// `Some(None)` unassigns; `Some(Some(n))` assigns user `n`.
        assign: Option<Option<usize>>,
    },
    Resolve {
        resolution: String,
    },
    ChangeSeverity(Severity),
    Delete,
    Comment {
        body: String,
    },
}

#[derive(Debug, Clone)]
struct Step {
    user: usize,
    incident: usize,
    cmd: Cmd,
}

#[derive(Debug, Clone)]
struct Scenario {
    roles: Vec<Role>,
    steps: Vec<Step>,
}

/// Text that is usually valid: a few fixed phrases (so updates often repeat
/// the current value), padded phrases, and arbitrary printable text (which
/// may be blank).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(vec![
            "Troll in the dungeon",
            "Flooded bathroom",
            "Dragon egg in the hut",
            "Peeves",
        ])
        .prop_map(String::from),
        2 => "[ \t]{0,2}[A-Za-z][A-Za-z ]{0,16}[ \t]{0,2}",
        1 => "\\PC{0,12}",
    ]
}

fn severity() -> impl Strategy<Value = Severity> {
    select(Severity::ALL)
}

fn location() -> impl Strategy<Value = Location> {
    // A few locations, so an update often names the current one.
    select(&Location::ALL[..4])
}

fn report() -> impl Strategy<Value = Cmd> {
    (text(), text(), severity(), location()).prop_map(|(title, description, severity, location)| {
        Cmd::Report {
            title,
            description,
            severity,
            location,
        }
    })
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        2 => report(),
        6 => (
            proptest::option::of(text()),
            // A blank description clears it.
            proptest::option::of(text()),
            proptest::option::of(location()),
            proptest::option::weighted(0.4, select(IncidentStatus::ALL)),
            proptest::option::weighted(0.4, proptest::option::of(0..USERS)),
        )
            .prop_map(|(title, description, location, status, assign)| Cmd::Update {
                title,
                description,
                location,
                status,
                assign,
            }),
        2 => text().prop_map(|resolution| Cmd::Resolve { resolution }),
        4 => severity().prop_map(Cmd::ChangeSeverity),
        1 => Just(Cmd::Delete),
        3 => text().prop_map(|body| Cmd::Comment { body }),
    ]
}

fn step(cmd: impl Strategy<Value = Cmd>) -> impl Strategy<Value = Step> {
    (0..USERS, 0..INCIDENTS, cmd).prop_map(|(user, incident, cmd)| Step {
        user,
        incident,
        cmd,
    })
}

/// Random roles for the users, then usually a few reports (so most
/// commands meet an incident), then any commands.
fn scenario() -> impl Strategy<Value = Scenario> {
    (
        proptest::collection::vec(select(Role::ALL), USERS),
        proptest::collection::vec(step(report()), 0..=INCIDENTS),
        proptest::collection::vec(step(cmd()), 1..56),
    )
        .prop_map(|(roles, mut steps, rest)| {
            steps.extend(rest);
            Scenario { roles, steps }
        })
}

// ---- the model ---------------------------------------------------------------

/// What a decision came to, without its payload: refused by a named rule,
/// accepted with nothing to append, or appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Refused(Rule),
    Nothing,
    Appended,
}

fn outcome_of(decision: &Decision) -> Outcome {
    match decision {
        Err(rejection) => Outcome::Refused(rejection.rule()),
        Ok(None) => Outcome::Nothing,
        Ok(Some(_)) => Outcome::Appended,
    }
}

/// The command with parsed values, or `None` when a value does not parse
/// (after checking it was right not to).
fn parse_cmd(cmd: &Cmd, step: usize) -> Option<IncidentCommand> {
    fn checked<T>(raw: &str, max: usize, parsed: Result<T, String>) -> Option<T> {
        let trimmed = raw.trim();
        let valid = !trimmed.is_empty() && trimmed.chars().count() <= max;
        assert_eq!(parsed.is_ok(), valid, "parsing {raw:?}");
        parsed.ok()
    }
    let title = |raw: &str| checked(raw, 200, IncidentTitle::parse(raw));
    Some(match cmd {
        Cmd::Report {
            title: raw,
            description,
            severity,
            location,
        } => IncidentCommand::Report {
            id: Uuid::nil(), // set by the caller
            title: title(raw)?,
            description: Description::parse(description).unwrap(),
            severity: *severity,
            location: *location,
        },
        Cmd::Update {
            title: raw,
            description,
            location,
            status,
            assign,
        } => IncidentCommand::Update(IncidentChanges {
            title: match raw {
                Some(raw) => Some(title(raw)?),
                None => None,
            },
            description: description
                .as_deref()
                .map(|d| Description::parse(d).unwrap()),
            location: *location,
            status: *status,
            assigned_to: assign.map(|a| a.map(user_id)),
        }),
        Cmd::Resolve { resolution } => IncidentCommand::Resolve {
            resolution: checked(resolution, 2000, Resolution::parse(resolution))?,
        },
        Cmd::ChangeSeverity(severity) => IncidentCommand::ChangeSeverity {
            severity: *severity,
        },
        Cmd::Delete => IncidentCommand::Delete,
        Cmd::Comment { body } => IncidentCommand::AddComment {
            comment_id: Uuid::from_u128(0x3000 + step as u128),
            body: checked(body, 2000, CommentBody::parse(body))?,
        },
    })
}

fn nonblank(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// What the rules allow for `cmd` on `before` by `actor`: the outcomes any of
/// which is right (a command that breaks two rules may be refused for either),
/// and the incident afterwards when something is appended.
fn model(
    before: Option<&Incident>,
    id: Uuid,
    cmd: &Cmd,
    actor: Actor,
    now: DateTime<Utc>,
) -> (Vec<Outcome>, Option<Incident>) {
    use Outcome::*;
    if let Cmd::Report {
        title,
        description,
        severity,
        location,
    } = cmd
    {
        if before.is_some() {
            return (vec![Refused(Rule::AlreadyExists)], None);
        }
        let created = Incident {
            id,
            title: nonblank(title).unwrap(),
            description: nonblank(description),
            severity: *severity,
            location: *location,
            status: IncidentStatus::Open,
            reported_by: actor.user_id,
            assigned_to: None,
            resolved_by: None,
            resolution: None,
            created_at: now,
            updated_at: now,
            resolved_at: None,
            version: 1,
            deleted: false,
        };
        return (vec![Appended], Some(created));
    }
    let Some(current) = before.filter(|incident| !incident.deleted) else {
        return (vec![Refused(Rule::NotFound)], None);
    };
    let reporter = current.reported_by == actor.user_id;
    let prefect = actor.role >= Role::Prefect;
    let resolved = current.status == IncidentStatus::Resolved;
    let mut next = current.clone();
    next.version += 1;
    next.updated_at = now;
    let mut refusals = Vec::new();
    match cmd {
        Cmd::Report { .. } => unreachable!(),
        Cmd::Update {
            title,
            description,
            location,
            status,
            assign,
        } => {
            if !(reporter || prefect) {
                refusals.push(Refused(Rule::UpdateNeedsReporterOrStaff));
            }
            if *status == Some(IncidentStatus::Resolved) {
                refusals.push(Refused(Rule::ResolvedOnlyByResolving));
            }
            if resolved {
                refusals.push(Refused(Rule::ResolvedCannotBeUpdated));
            }
            if let Some(title) = title {
                next.title = nonblank(title).unwrap();
            }
            if let Some(description) = description {
                next.description = nonblank(description);
            }
            if let Some(location) = location {
                next.location = *location;
            }
            if let Some(status) = status {
                next.status = *status;
            }
            if let Some(assign) = assign {
                next.assigned_to = assign.map(user_id);
            }
            let unchanged = Incident {
                version: current.version,
                updated_at: current.updated_at,
                ..next.clone()
            } == *current;
            if refusals.is_empty() && unchanged {
                return (vec![Nothing], None);
            }
        }
        Cmd::Resolve { resolution } => {
            if !(reporter || prefect) {
                refusals.push(Refused(Rule::ResolveNeedsReporterOrStaff));
            }
            if resolved {
                refusals.push(Refused(Rule::AlreadyResolved));
            }
            next.status = IncidentStatus::Resolved;
            next.resolved_by = Some(actor.user_id);
            next.resolution = nonblank(resolution);
            next.resolved_at = Some(now);
        }
        Cmd::ChangeSeverity(severity) => {
            if resolved {
                refusals.push(Refused(Rule::ResolvedSeverityIsFinal));
            }
            if *severity == current.severity {
                // Setting the severity it has changes nothing; on a resolved
                // incident a conflict is right too.
                refusals.push(Nothing);
            } else if *severity < current.severity && !prefect {
                refusals.push(Refused(Rule::LoweringSeverityNeedsStaff));
            }
            next.severity = *severity;
        }
        Cmd::Delete => {
            if !(reporter || actor.role >= Role::Professor) {
                refusals.push(Refused(Rule::DeleteNeedsReporterOrProfessor));
            }
            next.deleted = true;
        }
        Cmd::Comment { .. } => {
            // A comment commutes: it changes nothing on the incident, not
            // even its version.
            return (vec![Appended], Some(current.clone()));
        }
    }
    if refusals.is_empty() {
        (vec![Appended], Some(next))
    } else {
        (refusals, None)
    }
}

// ---- running a scenario like the write side does ---------------------------

struct Run {
    roles: Vec<Role>,
    fold: IncidentFold,
    log: Vec<Event>,
}

fn actor(roles: &[Role], user: usize) -> Actor {
    Actor {
        user_id: user_id(user),
        role: roles[user],
    }
}

/// Runs every step: decide against the fold, append and apply what is
/// decided, and check the rules after each step.
fn run(scenario: &Scenario) -> Run {
    let mut fold = IncidentFold::default();
    let mut log: Vec<Event> = Vec::new();
    // Each deleted incident as it was when deleted.
    let mut tombstones: HashMap<Uuid, Incident> = HashMap::new();
    for (n, step) in scenario.steps.iter().enumerate() {
        let step_no = n + 1;
        let now = clock(step_no);
        let id = incident_id(step.incident);
        let who = actor(&scenario.roles, step.user);
        let Some(mut command) = parse_cmd(&step.cmd, step_no) else {
            continue;
        };
        if let IncidentCommand::Report { id: target, .. } = &mut command {
            *target = id;
        }
        let before_fold = fold.clone();
        let before = fold.get(id).cloned();
        let decision = decide(before.as_ref(), command, who, now);
        let (allowed, expected) = model(before.as_ref(), id, &step.cmd, who, now);
        let outcome = outcome_of(&decision);
        assert!(
            allowed.contains(&outcome),
            "step {n}: {step:?} by {who:?} on {before:?}: got {decision:?}, expected one of {allowed:?}"
        );

        match decision {
            Ok(Some(payload)) => {
                check_payload(&payload, before.as_ref(), id, who, &step.cmd);
                let mut event = Event::new(payload, Some(who.user_id));
                event.event_id = Uuid::from_u128(0x4000 + step_no as u128);
                event.timestamp = now;
                assert_eq!(fold.apply(&event), FoldOutcome::Applied, "step {n}");
                log.push(event);
                assert_eq!(
                    fold.get(id),
                    expected.as_ref(),
                    "step {n}: {step:?} by {who:?}"
                );
                let after = fold.get(id).unwrap();
                if let Some(before) = &before
                    && after.severity < before.severity
                {
                    assert!(
                        who.role >= Role::Prefect,
                        "step {n}: a {:?} lowered a severity",
                        who.role
                    );
                }
                if after.deleted {
                    tombstones.entry(id).or_insert_with(|| after.clone());
                }
            }
            _ => assert_eq!(
                fold, before_fold,
                "step {n}: nothing appended, nothing changed"
            ),
        }
        check_invariants(&fold, &log, &tombstones);
    }
    Run {
        roles: scenario.roles.clone(),
        fold,
        log,
    }
}

/// What every appended payload must look like.
fn check_payload(
    payload: &EventPayload,
    before: Option<&Incident>,
    id: Uuid,
    who: Actor,
    cmd: &Cmd,
) {
    let claim = match cmd {
        Cmd::Comment { .. } => Claim::Commutes,
        _ => Claim::Version(before.map_or(0, |incident| incident.version) + 1),
    };
    assert_eq!(incident_and_claim(payload), Some((id, claim)));
    match (payload, cmd) {
        (EventPayload::IncidentCreated(created), Cmd::Report { .. }) => {
            assert_eq!(created.reported_by, who.user_id);
            assert_eq!(created.status, IncidentStatus::Open);
        }
        (EventPayload::IncidentUpdated(update), Cmd::Update { .. }) => {
            // Only what changed is carried.
            let current = before.unwrap();
            assert!(
                update.title.is_some()
                    || update.description.is_some()
                    || update.location.is_some()
                    || update.status.is_some()
                    || update.assigned_to.is_some(),
                "an update carries at least one change"
            );
            assert_ne!(update.title.as_ref(), Some(&current.title));
            assert_ne!(update.description, Some(current.description.clone()));
            assert_ne!(update.location, Some(current.location));
            assert_ne!(update.status, Some(current.status));
            assert_ne!(update.status, Some(IncidentStatus::Resolved));
            assert_ne!(update.assigned_to, Some(current.assigned_to));
        }
        (EventPayload::IncidentResolved(resolved), Cmd::Resolve { .. }) => {
            assert_eq!(resolved.resolved_by, who.user_id);
        }
        (EventPayload::SeverityEscalated(change), Cmd::ChangeSeverity(severity)) => {
            assert_eq!(change.old_severity, before.unwrap().severity);
            assert_eq!(change.new_severity, *severity);
            assert_ne!(change.old_severity, change.new_severity);
        }
        (EventPayload::IncidentDeleted(deleted), Cmd::Delete) => {
            assert_eq!(deleted.deleted_by, who.user_id);
        }
        (EventPayload::CommentAdded(comment), Cmd::Comment { .. }) => {
            assert_eq!(comment.author_id, who.user_id);
        }
        _ => panic!("{cmd:?} decided {payload:?}"),
    }
}

fn check_invariants(fold: &IncidentFold, log: &[Event], tombstones: &HashMap<Uuid, Incident>) {
    let mut reported = log
        .iter()
        .filter_map(|e| match &e.payload {
            EventPayload::IncidentCreated(created) => Some(created.id),
            _ => None,
        })
        .collect::<Vec<_>>();
    reported.sort();
    let mut known = fold.incidents().map(|i| i.id).collect::<Vec<_>>();
    known.sort();
    assert_eq!(
        known, reported,
        "the fold holds exactly the reported incidents"
    );

    for incident in fold.incidents() {
        let events: Vec<&Event> = log
            .iter()
            .filter(|e| incident_and_version(&e.payload).is_some_and(|(id, _)| id == incident.id))
            .collect();
        assert_eq!(
            incident.version,
            events.len() as u64,
            "the version counts the accepted events"
        );
        for (n, event) in events.iter().enumerate() {
            assert_eq!(
                incident_and_version(&event.payload).unwrap().1,
                n as u64 + 1
            );
            assert!(fold.was_accepted(incident.id, n as u64 + 1, event.event_id));
        }
        assert!(!fold.was_accepted(incident.id, incident.version + 1, events[0].event_id));
        for comment in log
            .iter()
            .filter(|e| incident_and_claim(&e.payload) == Some((incident.id, Claim::Commutes)))
        {
            assert!(fold.was_accepted_as(incident.id, Claim::Commutes, comment.event_id));
        }

        let resolved = incident.status == IncidentStatus::Resolved;
        assert_eq!(resolved, incident.resolved_by.is_some(), "{incident:?}");
        assert_eq!(resolved, incident.resolution.is_some(), "{incident:?}");
        assert_eq!(resolved, incident.resolved_at.is_some(), "{incident:?}");
        assert!(incident.created_at <= incident.updated_at);
        assert!(!incident.title.trim().is_empty());

        if let Some(tombstone) = tombstones.get(&incident.id) {
            assert_eq!(incident, tombstone, "a deleted incident never changes");
        }
        assert_eq!(incident.deleted, tombstones.contains_key(&incident.id));
    }
}

fn fold_of<'a>(events: impl IntoIterator<Item = &'a Event>) -> IncidentFold {
    let mut fold = IncidentFold::default();
    for event in events {
        fold.apply(event);
    }
    fold
}

// ---- noise: duplicates and stale events -------------------------------------

/// A forged event for `id` claiming `version`, of a kind picked by `kind`
/// (kind 4, a commuting comment, claims no version).
fn forged(id: Uuid, version: u64, kind: usize, n: usize) -> Event {
    let payload = match kind % 5 {
        4 => EventPayload::CommentAdded(CommentAdded {
            id: Uuid::from_u128(0x9100_0000 + n as u128),
            incident_id: id,
            author_id: user_id(99),
            body: format!("Forged {n}"),
            created_at: clock(0),
            version: None,
        }),
        0 => EventPayload::IncidentUpdated(IncidentUpdated {
            id,
            version,
            title: Some(format!("Forged {n}")),
            description: Some(Some("Not what happened".into())),
            location: Some(Location::Owlery),
            status: Some(IncidentStatus::Investigating),
            assigned_to: Some(Some(user_id(99))),
        }),
        1 => EventPayload::SeverityEscalated(SeverityEscalated {
            incident_id: id,
            version,
            old_severity: Severity::Low,
            new_severity: Severity::Critical,
        }),
        2 => EventPayload::IncidentDeleted(IncidentDeleted {
            id,
            version,
            deleted_by: user_id(99),
        }),
        _ => EventPayload::IncidentCreated(IncidentCreated {
            id,
            title: format!("Forged {n}"),
            description: None,
            severity: Severity::Critical,
            location: Location::Owlery,
            status: IncidentStatus::Open,
            reported_by: user_id(99),
            assigned_to: None,
            resolved_by: None,
            resolution: None,
            created_at: clock(0),
            updated_at: clock(0),
            resolved_at: None,
            version,
        }),
    };
    let mut event = Event::new(payload, Some(user_id(99)));
    event.event_id = Uuid::from_u128(0x9000_0000 + n as u128);
    event.timestamp = clock(1000 + n);
    event
}

/// Noise to mix into a history.
#[derive(Debug, Clone)]
enum Noise {
    /// A copy of one of the history's events, anywhere after it.
    Duplicate { which: Index, at: Index },
    /// An event claiming a version of an incident that is already taken
    /// (a lost race, or a stale writer), anywhere after it was taken.
    Stale {
        which: Index,
        version: Index,
        after: Index,
        kind: usize,
    },
    /// An event about an incident nobody reported (any kind but a creation
    /// at version 1, a commuting comment included), anywhere.
    Orphan {
        version: u64,
        at: Index,
        kind: usize,
    },
}

fn noise() -> impl Strategy<Value = Noise> {
    prop_oneof![
        3 => (any::<Index>(), any::<Index>()).prop_map(|(which, at)| Noise::Duplicate { which, at }),
        3 => (any::<Index>(), any::<Index>(), any::<Index>(), 0..4usize).prop_map(
            |(which, version, after, kind)| Noise::Stale { which, version, after, kind }
        ),
        1 => (0..4u64, any::<Index>(), 0..5usize).prop_map(|(version, at, kind)| Noise::Orphan { version, at, kind }),
    ]
}

/// The history with the noise mixed in. Each event is tagged with its
/// position in the clean history (`None` for noise), so a stale event can be
/// placed after the event whose version it repeats.
fn noisy_history(log: &[Event], noise: &[Noise]) -> Vec<Event> {
    let mut noisy: Vec<(Option<usize>, Event)> = log
        .iter()
        .cloned()
        .enumerate()
        .map(|(n, e)| (Some(n), e))
        .collect();
    for (n, item) in noise.iter().enumerate() {
        match item {
            Noise::Duplicate { which, at } => {
                // A copy comes after its original: on a log, the first copy
                // *is* the original. (Moved earlier, a copy of a delete would
                // void the commuting comments it jumped over — as it should:
                // that is a different history, not noise.)
                let original = which.index(log.len());
                let position = noisy
                    .iter()
                    .position(|(origin, _)| *origin == Some(original))
                    .unwrap();
                let at = position + 1 + at.index(noisy.len() - position);
                noisy.insert(at, (None, log[original].clone()));
            }
            Noise::Stale {
                which,
                version,
                after,
                kind,
            } => {
                let taken = which.index(log.len());
                let position = noisy
                    .iter()
                    .position(|(origin, _)| *origin == Some(taken))
                    .unwrap();
                let at = position + 1 + after.index(noisy.len() - position);
                // A commuting comment takes no version: what can be stale
                // about it is a copy of it.
                let stale = match incident_and_version(&log[taken].payload) {
                    Some((id, taken_version)) => {
                        let claimed = version.index(taken_version as usize) as u64 + 1;
                        forged(id, claimed, *kind, n)
                    }
                    None => log[taken].clone(),
                };
                noisy.insert(at, (None, stale));
            }
            Noise::Orphan { version, at, kind } => {
                let mut kind = *kind;
                if *version == 1 && kind % 4 == 3 {
                    kind = 0; // a creation at version 1 would be legitimate
                }
                let event = forged(incident_id(INCIDENTS + 7), *version, kind, n);
                noisy.insert(at.index(noisy.len() + 1), (None, event));
            }
        }
    }
    noisy.into_iter().map(|(_, event)| event).collect()
}

// ---- the properties ----------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Property 1: `run` checks every rule after every step.
    #[test]
    fn no_sequence_of_commands_breaks_a_rule(scenario in scenario()) {
        let run = run(&scenario);
        prop_assert_eq!(run.roles.len(), USERS);
        for event in &run.log {
            let user = event.user_id.expect("every incident event names its actor");
            prop_assert!((0..USERS).any(|n| user_id(n) == user));
            if let Some(named) = payload_actor(&event.payload) {
                prop_assert_eq!(user, named, "the envelope and the payload agree");
            }
        }
    }

    /// Property 2.
    #[test]
    fn folding_the_appended_events_from_scratch_reproduces_the_write_side(scenario in scenario()) {
        let run = run(&scenario);
        prop_assert_eq!(fold_of(&run.log), run.fold);
    }

    /// Property 3.
    #[test]
    fn every_event_survives_a_json_round_trip(scenario in scenario()) {
        let run = run(&scenario);
        for event in &run.log {
            let bytes = event.encode();
            prop_assert_eq!(&Event::decode(&bytes).unwrap(), event);
            let value = serde_json::to_value(event).unwrap();
            prop_assert_eq!(&serde_json::from_value::<Event>(value.clone()).unwrap(), event);
            let text = serde_json::to_string(event).unwrap();
            prop_assert_eq!(&serde_json::from_str::<Event>(&text).unwrap(), event);
            prop_assert_eq!(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(), value);
        }
        // The decoded history folds to the same state.
        let decoded: Vec<Event> = run.log.iter().map(|e| Event::decode(&e.encode()).unwrap()).collect();
        prop_assert_eq!(fold_of(&decoded), run.fold);
    }

    /// Property 4, whole: a history applied again is void.
    #[test]
    fn replaying_a_history_again_changes_nothing(scenario in scenario()) {
        let run = run(&scenario);
        let mut fold = run.fold.clone();
        for event in &run.log {
            prop_assert_eq!(fold.apply(event), FoldOutcome::Voided);
        }
        prop_assert_eq!(&fold, &run.fold);
        prop_assert_eq!(fold_of(run.log.iter().chain(&run.log)), run.fold);
    }

    /// Property 4, mixed: duplicates and stale-version events anywhere
    /// after the events they copy or repeat.
    #[test]
    fn duplicates_and_stale_events_mixed_into_a_history_change_nothing(
        scenario in scenario(),
        noise in proptest::collection::vec(noise(), 0..24),
    ) {
        let run = run(&scenario);
        prop_assume!(!run.log.is_empty());
        let noisy = noisy_history(&run.log, &noise);
        prop_assert_eq!(noisy.len(), run.log.len() + noise.len());
        let replayed = fold_of(&noisy);
        prop_assert_eq!(&replayed, &run.fold);
        // Each event of the clean history is still the one accepted.
        for event in &run.log {
            let (id, claim) = incident_and_claim(&event.payload).unwrap();
            prop_assert!(replayed.was_accepted_as(id, claim, event.event_id));
        }
    }
}

/// Who caused an event, when its payload names them (`incident.updated` and
/// `severity.escalated` do not; only their envelope does).
fn payload_actor(payload: &EventPayload) -> Option<Uuid> {
    match payload {
        EventPayload::IncidentCreated(e) => Some(e.reported_by),
        EventPayload::IncidentResolved(e) => Some(e.resolved_by),
        EventPayload::IncidentDeleted(e) => Some(e.deleted_by),
        EventPayload::CommentAdded(e) => Some(e.author_id),
        _ => None,
    }
}
