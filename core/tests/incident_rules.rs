//! Example-based tests of the Incident aggregate's rules: `decide` for every
//! command (who may issue it, what it appends, when it is refused), the value
//! types, and `IncidentFold`'s version rule.

use chrono::{DateTime, Duration, TimeZone, Utc};
use marauders_core::domain::{IncidentStatus, Location, Role, Severity};
use marauders_core::events::{
    CommentAdded, Event, EventPayload, IncidentCreated, IncidentDeleted, IncidentResolved,
    IncidentUpdated, SeverityEscalated, UserLoggedIn,
};
use marauders_core::incident::{
    Actor, CommentBody, Decision, Description, FoldOutcome, Incident, IncidentChanges,
    IncidentCommand, IncidentFold, IncidentTitle, Rejection, Resolution, decide,
};
use uuid::Uuid;

// ---- fixtures ---------------------------------------------------------------

fn clock(step: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 10, 31, 19, 0, 0).unwrap() + Duration::seconds(step)
}

fn actor(n: u128, role: Role) -> Actor {
    Actor {
        user_id: Uuid::from_u128(0x1000 + n),
        role,
    }
}

fn hermione() -> Actor {
    actor(1, Role::Prefect)
}

fn ron() -> Actor {
    actor(2, Role::Student)
}

fn neville() -> Actor {
    actor(3, Role::Student)
}

fn percy() -> Actor {
    actor(4, Role::Prefect)
}

fn mcgonagall() -> Actor {
    actor(5, Role::Professor)
}

fn incident_id(n: u128) -> Uuid {
    Uuid::from_u128(0x2000 + n)
}

fn title(raw: &str) -> IncidentTitle {
    IncidentTitle::parse(raw).unwrap()
}

fn report(id: Uuid, severity: Severity) -> IncidentCommand {
    IncidentCommand::Report {
        id,
        title: title("Troll in the dungeon"),
        description: Description::parse("It came through the cellar door").unwrap(),
        severity,
        location: Location::Dungeons,
    }
}

fn update(changes: IncidentChanges) -> IncidentCommand {
    IncidentCommand::Update(changes)
}

fn resolve() -> IncidentCommand {
    IncidentCommand::Resolve {
        resolution: Resolution::parse("Knocked out with its own club").unwrap(),
    }
}

fn change_severity(severity: Severity) -> IncidentCommand {
    IncidentCommand::ChangeSeverity { severity }
}

fn comment(n: u128, body: &str) -> IncidentCommand {
    IncidentCommand::AddComment {
        comment_id: Uuid::from_u128(0x3000 + n),
        body: CommentBody::parse(body).unwrap(),
    }
}

/// Every command other than Report, with valid payloads.
fn every_command_but_report() -> Vec<IncidentCommand> {
    vec![
        update(IncidentChanges {
            title: Some(title("Something else")),
            ..IncidentChanges::default()
        }),
        resolve(),
        change_severity(Severity::Critical),
        change_severity(Severity::Low),
        IncidentCommand::Delete,
        comment(99, "Anyone there?"),
    ]
}

/// The write side in miniature: decides against the fold, appends what
/// `decide` allows and folds it, with a fixed clock.
struct Desk {
    fold: IncidentFold,
    log: Vec<Event>,
    step: i64,
}

impl Desk {
    fn new() -> Self {
        Desk {
            fold: IncidentFold::default(),
            log: Vec::new(),
            step: 0,
        }
    }

    /// A desk with one incident reported by `reporter` at `severity`.
    fn with_incident(id: Uuid, reporter: Actor, severity: Severity) -> Self {
        let mut desk = Desk::new();
        desk.run(id, report(id, severity), reporter).unwrap();
        desk
    }

    fn decide(&self, id: Uuid, command: IncidentCommand, actor: Actor) -> Decision {
        decide(self.fold.get(id), command, actor, clock(self.step + 1))
    }

    /// Decides and, when there is an event, appends and applies it.
    fn run(&mut self, id: Uuid, command: IncidentCommand, actor: Actor) -> Decision {
        let before = self.fold.clone();
        self.step += 1;
        let now = clock(self.step);
        let decision = decide(self.fold.get(id), command, actor, now);
        match &decision {
            Ok(Some(payload)) => {
                let mut event = Event::new(payload.clone(), Some(actor.user_id));
                event.timestamp = now;
                assert_eq!(self.fold.apply(&event), FoldOutcome::Applied);
                self.log.push(event);
            }
            _ => assert_eq!(self.fold, before, "nothing appended, nothing changed"),
        }
        decision
    }

    fn incident(&self, id: Uuid) -> &Incident {
        self.fold.get(id).expect("the incident is in the fold")
    }
}

fn forbidden(decision: Decision) -> bool {
    matches!(
        decision,
        Err(Rejection::UpdateNeedsReporterOrStaff
            | Rejection::ResolveNeedsReporterOrStaff
            | Rejection::LoweringSeverityNeedsStaff
            | Rejection::DeleteNeedsReporterOrProfessor)
    )
}

fn conflict(decision: Decision) -> bool {
    matches!(
        decision,
        Err(Rejection::AlreadyExists { .. }
            | Rejection::ResolvedCannotBeUpdated
            | Rejection::AlreadyResolved
            | Rejection::ResolvedSeverityIsFinal)
    )
}

fn invalid(decision: Decision) -> bool {
    matches!(decision, Err(Rejection::ResolvedOnlyByResolving))
}

fn event(payload: impl Into<EventPayload>, step: i64, n: u128) -> Event {
    let mut event = Event::new(payload.into(), None);
    event.event_id = Uuid::from_u128(0x4000 + n);
    event.timestamp = clock(step);
    event
}

fn created(id: Uuid, version: u64, title: &str) -> IncidentCreated {
    IncidentCreated {
        id,
        title: title.into(),
        description: None,
        severity: Severity::Medium,
        location: Location::GreatHall,
        status: IncidentStatus::Open,
        reported_by: ron().user_id,
        assigned_to: None,
        resolved_by: None,
        resolution: None,
        created_at: clock(0),
        updated_at: clock(0),
        resolved_at: None,
        version,
    }
}

fn retitled(id: Uuid, version: u64, title: &str) -> IncidentUpdated {
    IncidentUpdated {
        id,
        version,
        title: Some(title.into()),
        description: None,
        location: None,
        status: None,
        assigned_to: None,
    }
}

// ---- Report -------------------------------------------------------------------

#[test]
fn anyone_may_report_an_incident_which_starts_open_at_version_one() {
    for (n, role) in Role::ALL.iter().enumerate() {
        let id = incident_id(n as u128);
        let reporter = actor(10 + n as u128, *role);
        let mut desk = Desk::new();
        let decision = desk.run(id, report(id, Severity::High), reporter);
        assert!(matches!(
            decision,
            Ok(Some(EventPayload::IncidentCreated(_)))
        ));
        let incident = desk.incident(id);
        assert_eq!(incident.version, 1);
        assert_eq!(incident.status, IncidentStatus::Open);
        assert_eq!(incident.reported_by, reporter.user_id);
        assert_eq!(incident.severity, Severity::High);
        assert!(!incident.deleted);
    }
}

#[test]
fn a_report_carries_the_full_incident_with_nothing_assigned_or_resolved() {
    let id = incident_id(1);
    let now = clock(7);
    let command = IncidentCommand::Report {
        id,
        title: title("  Troll in the dungeon  "),
        description: Description::parse("  It came through the cellar door ").unwrap(),
        severity: Severity::Critical,
        location: Location::Dungeons,
    };
    let decision = decide(None, command, ron(), now);
    assert_eq!(
        decision,
        Ok(Some(EventPayload::IncidentCreated(IncidentCreated {
            id,
            title: "Troll in the dungeon".into(),
            description: Some("It came through the cellar door".into()),
            severity: Severity::Critical,
            location: Location::Dungeons,
            status: IncidentStatus::Open,
            reported_by: ron().user_id,
            assigned_to: None,
            resolved_by: None,
            resolution: None,
            created_at: now,
            updated_at: now,
            resolved_at: None,
            version: 1,
        })))
    );
}

#[test]
fn a_report_with_a_blank_description_has_no_description() {
    let id = incident_id(1);
    let command = IncidentCommand::Report {
        id,
        title: title("Peeves again"),
        description: Description::parse("   ").unwrap(),
        severity: Severity::Low,
        location: Location::Library,
    };
    let mut desk = Desk::new();
    desk.run(id, command, neville()).unwrap();
    assert_eq!(desk.incident(id).description, None);
}

#[test]
fn reporting_an_id_that_already_exists_is_a_conflict() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::High);
    for reporter in [ron(), hermione(), mcgonagall()] {
        assert!(conflict(desk.run(id, report(id, Severity::Low), reporter)));
    }
    assert_eq!(desk.incident(id).version, 1);
}

#[test]
fn reporting_the_id_of_a_deleted_incident_is_still_a_conflict() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::High);
    desk.run(id, IncidentCommand::Delete, ron()).unwrap();
    assert!(conflict(desk.run(id, report(id, Severity::Low), ron())));
}

// ---- unknown and deleted incidents ------------------------------------------

#[test]
fn every_command_but_report_on_an_unknown_incident_is_not_found() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(incident_id(2), ron(), Severity::High);
    for command in every_command_but_report() {
        for who in [ron(), hermione(), mcgonagall()] {
            assert_eq!(
                desk.run(id, command.clone(), who),
                Err(Rejection::NotFound),
                "{command:?}"
            );
        }
    }
    assert!(desk.fold.get(id).is_none());
}

#[test]
fn every_command_but_report_on_a_deleted_incident_is_not_found() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::High);
    desk.run(id, IncidentCommand::Delete, mcgonagall()).unwrap();
    let deleted = desk.incident(id).clone();
    for command in every_command_but_report() {
        for who in [ron(), hermione(), mcgonagall()] {
            assert_eq!(
                desk.run(id, command.clone(), who),
                Err(Rejection::NotFound),
                "{command:?}"
            );
        }
    }
    assert_eq!(
        desk.incident(id),
        &deleted,
        "a deleted incident never changes"
    );
}

// ---- Update -------------------------------------------------------------------

#[test]
fn the_reporter_may_update_their_own_incident() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::High);
    let decision = desk.run(
        id,
        update(IncidentChanges {
            title: Some(title("Two trolls in the dungeon")),
            ..IncidentChanges::default()
        }),
        ron(),
    );
    assert!(matches!(
        decision,
        Ok(Some(EventPayload::IncidentUpdated(_)))
    ));
    assert_eq!(desk.incident(id).title, "Two trolls in the dungeon");
    assert_eq!(desk.incident(id).version, 2);
}

#[test]
fn a_prefect_or_a_professor_may_update_anyones_incident() {
    for who in [hermione(), percy(), mcgonagall()] {
        let id = incident_id(1);
        let mut desk = Desk::with_incident(id, ron(), Severity::High);
        let decision = desk.run(
            id,
            update(IncidentChanges {
                location: Some(Location::GreatHall),
                ..IncidentChanges::default()
            }),
            who,
        );
        assert!(decision.unwrap().is_some(), "{who:?}");
        assert_eq!(desk.incident(id).location, Location::GreatHall);
    }
}

#[test]
fn a_student_who_did_not_report_it_cannot_update_an_incident() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::High);
    let decision = desk.run(
        id,
        update(IncidentChanges {
            title: Some(title("Nothing to see here")),
            ..IncidentChanges::default()
        }),
        neville(),
    );
    assert!(forbidden(decision));
    assert_eq!(desk.incident(id).title, "Troll in the dungeon");
}

#[test]
fn an_update_cannot_set_the_status_to_resolved() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::High);
    for who in [ron(), hermione(), mcgonagall()] {
        let decision = desk.run(
            id,
            update(IncidentChanges {
                status: Some(IncidentStatus::Resolved),
                ..IncidentChanges::default()
            }),
            who,
        );
        assert!(invalid(decision), "{who:?}");
    }
    assert_eq!(desk.incident(id).status, IncidentStatus::Open);
}

#[test]
fn a_resolved_incident_cannot_be_updated() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::High);
    desk.run(id, resolve(), ron()).unwrap();
    for who in [ron(), hermione(), mcgonagall()] {
        let decision = desk.run(
            id,
            update(IncidentChanges {
                status: Some(IncidentStatus::Open),
                title: Some(title("Reopened")),
                ..IncidentChanges::default()
            }),
            who,
        );
        assert!(conflict(decision), "{who:?}");
    }
    assert_eq!(desk.incident(id).status, IncidentStatus::Resolved);
}

#[test]
fn an_update_carries_only_the_fields_that_changed() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::High);
    let snape = actor(6, Role::Professor).user_id;
    let decision = desk.run(
        id,
        update(IncidentChanges {
            title: Some(title("Troll in the dungeon")),
            description: Some(Description::parse("It is in the girls' bathroom now").unwrap()),
            location: Some(Location::Dungeons),
            status: Some(IncidentStatus::Investigating),
            assigned_to: Some(Some(snape)),
        }),
        hermione(),
    );
    assert_eq!(
        decision,
        Ok(Some(EventPayload::IncidentUpdated(IncidentUpdated {
            id,
            version: 2,
            title: None,
            description: Some("It is in the girls' bathroom now".into()),
            location: None,
            status: Some(IncidentStatus::Investigating),
            assigned_to: Some(Some(snape)),
        })))
    );
    let incident = desk.incident(id);
    assert_eq!(incident.title, "Troll in the dungeon");
    assert_eq!(
        incident.description.as_deref(),
        Some("It is in the girls' bathroom now")
    );
    assert_eq!(incident.location, Location::Dungeons);
    assert_eq!(incident.status, IncidentStatus::Investigating);
    assert_eq!(incident.assigned_to, Some(snape));
    assert_eq!(incident.updated_at, clock(2));
    assert_eq!(incident.created_at, clock(1));
    assert_eq!(incident.version, 2);
}

#[test]
fn an_update_that_changes_nothing_appends_nothing() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::High);
    let nothing = [
        IncidentChanges::default(),
        IncidentChanges {
            title: Some(title("  Troll in the dungeon ")),
            description: Some(Description::parse("It came through the cellar door").unwrap()),
            location: Some(Location::Dungeons),
            status: Some(IncidentStatus::Open),
            assigned_to: Some(None),
        },
    ];
    for changes in nothing {
        assert_eq!(
            desk.run(id, update(changes.clone()), ron()),
            Ok(None),
            "{changes:?}"
        );
    }
    assert_eq!(desk.incident(id).version, 1);
    assert_eq!(desk.log.len(), 1);
}

#[test]
fn an_update_with_assigned_to_some_none_unassigns() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::High);
    let snape = actor(6, Role::Professor).user_id;
    desk.run(
        id,
        update(IncidentChanges {
            assigned_to: Some(Some(snape)),
            ..IncidentChanges::default()
        }),
        mcgonagall(),
    )
    .unwrap();
    assert_eq!(desk.incident(id).assigned_to, Some(snape));

    // Leaving `assigned_to` out keeps the assignee.
    desk.run(
        id,
        update(IncidentChanges {
            title: Some(title("Troll, handled by Snape")),
            ..IncidentChanges::default()
        }),
        mcgonagall(),
    )
    .unwrap();
    assert_eq!(desk.incident(id).assigned_to, Some(snape));

    let decision = desk.run(
        id,
        update(IncidentChanges {
            assigned_to: Some(None),
            ..IncidentChanges::default()
        }),
        mcgonagall(),
    );
    let Ok(Some(EventPayload::IncidentUpdated(unassign))) = decision else {
        panic!("expected an update, got {decision:?}");
    };
    assert_eq!(unassign.assigned_to, Some(None));
    assert_eq!(desk.incident(id).assigned_to, None);
    assert_eq!(desk.incident(id).version, 4);
}

#[test]
fn an_update_moves_the_status_between_open_and_investigating() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::High);
    for status in [
        IncidentStatus::Investigating,
        IncidentStatus::Open,
        IncidentStatus::Investigating,
    ] {
        desk.run(
            id,
            update(IncidentChanges {
                status: Some(status),
                ..IncidentChanges::default()
            }),
            ron(),
        )
        .unwrap()
        .expect("a status change is appended");
        assert_eq!(desk.incident(id).status, status);
    }
    assert_eq!(desk.incident(id).version, 4);
}

// ---- Resolve ------------------------------------------------------------------

#[test]
fn the_reporter_may_resolve_their_own_incident() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::High);
    let decision = desk.run(id, resolve(), ron());
    assert_eq!(
        decision,
        Ok(Some(EventPayload::IncidentResolved(IncidentResolved {
            id,
            version: 2,
            resolved_by: ron().user_id,
            resolution: "Knocked out with its own club".into(),
        })))
    );
}

#[test]
fn a_prefect_or_a_professor_may_resolve_anyones_incident() {
    for who in [hermione(), percy(), mcgonagall()] {
        let id = incident_id(1);
        let mut desk = Desk::with_incident(id, ron(), Severity::High);
        assert!(desk.run(id, resolve(), who).unwrap().is_some(), "{who:?}");
        assert_eq!(desk.incident(id).resolved_by, Some(who.user_id));
    }
}

#[test]
fn a_student_who_did_not_report_it_cannot_resolve_an_incident() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::High);
    assert!(forbidden(desk.run(id, resolve(), neville())));
    assert_eq!(desk.incident(id).status, IncidentStatus::Open);
}

#[test]
fn resolving_a_resolved_incident_is_a_conflict() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::High);
    desk.run(id, resolve(), hermione()).unwrap();
    for who in [ron(), hermione(), mcgonagall()] {
        assert!(conflict(desk.run(id, resolve(), who)), "{who:?}");
    }
    assert_eq!(desk.incident(id).resolved_by, Some(hermione().user_id));
    assert_eq!(desk.incident(id).version, 2);
}

#[test]
fn resolving_sets_the_status_the_resolver_the_resolution_and_the_time() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::High);
    let before = desk.incident(id).clone();
    assert_eq!(before.resolved_by, None);
    assert_eq!(before.resolution, None);
    assert_eq!(before.resolved_at, None);
    desk.run(
        id,
        IncidentCommand::Resolve {
            resolution: Resolution::parse("  Mischief managed  ").unwrap(),
        },
        mcgonagall(),
    )
    .unwrap();
    let incident = desk.incident(id);
    assert_eq!(incident.status, IncidentStatus::Resolved);
    assert_eq!(incident.resolved_by, Some(mcgonagall().user_id));
    assert_eq!(incident.resolution.as_deref(), Some("Mischief managed"));
    assert_eq!(incident.resolved_at, Some(clock(2)));
    assert_eq!(incident.updated_at, clock(2));
    assert_eq!(incident.version, 2);
}

// ---- ChangeSeverity ---------------------------------------------------------

#[test]
fn anyone_may_raise_a_severity() {
    for (n, who) in [neville(), ron(), hermione(), mcgonagall()]
        .into_iter()
        .enumerate()
    {
        let id = incident_id(n as u128);
        let mut desk = Desk::with_incident(id, ron(), Severity::Low);
        assert!(desk.run(id, change_severity(Severity::High), who).is_ok());
        assert_eq!(desk.incident(id).severity, Severity::High, "{who:?}");
    }
}

#[test]
fn a_student_cannot_lower_a_severity() {
    for who in [neville(), ron()] {
        let id = incident_id(1);
        let mut desk = Desk::with_incident(id, ron(), Severity::Critical);
        for lower in [Severity::High, Severity::Medium, Severity::Low] {
            assert!(
                forbidden(desk.run(id, change_severity(lower), who)),
                "{who:?}"
            );
        }
        assert_eq!(desk.incident(id).severity, Severity::Critical);
    }
}

#[test]
fn a_prefect_or_a_professor_may_lower_a_severity() {
    for who in [hermione(), percy(), mcgonagall()] {
        let id = incident_id(1);
        let mut desk = Desk::with_incident(id, ron(), Severity::Critical);
        assert!(desk.run(id, change_severity(Severity::Low), who).is_ok());
        assert_eq!(desk.incident(id).severity, Severity::Low, "{who:?}");
    }
}

#[test]
fn setting_the_severity_it_already_has_appends_nothing() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::Medium);
    for who in [neville(), ron(), mcgonagall()] {
        assert_eq!(
            desk.run(id, change_severity(Severity::Medium), who),
            Ok(None)
        );
    }
    assert_eq!(desk.incident(id).version, 1);
}

#[test]
fn a_resolved_incidents_severity_cannot_change() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::Medium);
    desk.run(id, resolve(), ron()).unwrap();
    for who in [ron(), hermione(), mcgonagall()] {
        for severity in [Severity::Low, Severity::Critical] {
            assert!(
                conflict(desk.run(id, change_severity(severity), who)),
                "{who:?} {severity}"
            );
        }
    }
    assert_eq!(desk.incident(id).severity, Severity::Medium);
}

#[test]
fn a_severity_change_is_a_severity_escalated_event_with_old_and_new() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::Medium);
    assert_eq!(
        desk.run(id, change_severity(Severity::Critical), neville()),
        Ok(Some(EventPayload::SeverityEscalated(SeverityEscalated {
            incident_id: id,
            version: 2,
            old_severity: Severity::Medium,
            new_severity: Severity::Critical,
        })))
    );
    assert_eq!(
        desk.run(id, change_severity(Severity::Low), hermione()),
        Ok(Some(EventPayload::SeverityEscalated(SeverityEscalated {
            incident_id: id,
            version: 3,
            old_severity: Severity::Critical,
            new_severity: Severity::Low,
        })))
    );
    assert_eq!(desk.incident(id).severity, Severity::Low);
    assert_eq!(desk.incident(id).updated_at, clock(3));
}

// ---- Delete -------------------------------------------------------------------

#[test]
fn the_reporter_may_delete_their_own_incident() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::Medium);
    assert_eq!(
        desk.run(id, IncidentCommand::Delete, ron()),
        Ok(Some(EventPayload::IncidentDeleted(IncidentDeleted {
            id,
            version: 2,
            deleted_by: ron().user_id,
        })))
    );
    assert!(desk.incident(id).deleted);
}

#[test]
fn a_professor_may_delete_anyones_incident() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::Medium);
    assert!(desk.run(id, IncidentCommand::Delete, mcgonagall()).is_ok());
    assert!(desk.incident(id).deleted);
}

#[test]
fn a_prefect_who_did_not_report_it_cannot_delete_an_incident() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::Medium);
    for who in [hermione(), percy()] {
        assert!(
            forbidden(desk.run(id, IncidentCommand::Delete, who)),
            "{who:?}"
        );
    }
    assert!(!desk.incident(id).deleted);
}

#[test]
fn a_student_who_did_not_report_it_cannot_delete_an_incident() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::Medium);
    assert!(forbidden(desk.run(id, IncidentCommand::Delete, neville())));
    assert!(!desk.incident(id).deleted);
}

#[test]
fn a_prefect_may_delete_an_incident_they_reported() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, hermione(), Severity::Medium);
    assert!(desk.run(id, IncidentCommand::Delete, hermione()).is_ok());
    assert!(desk.incident(id).deleted);
}

#[test]
fn a_deleted_incident_stays_in_the_fold_marked_deleted() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::Medium);
    desk.run(id, IncidentCommand::Delete, ron()).unwrap();
    let incident = desk.incident(id);
    assert!(incident.deleted);
    assert_eq!(incident.version, 2);
    assert_eq!(incident.updated_at, clock(2));
    assert_eq!(desk.fold.len(), 1);
}

// ---- AddComment ---------------------------------------------------------------

#[test]
fn anyone_may_comment_on_an_incident() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::Medium);
    for (n, who) in [neville(), ron(), hermione(), mcgonagall()]
        .into_iter()
        .enumerate()
    {
        assert!(
            desk.run(id, comment(n as u128, "I saw it too"), who)
                .unwrap()
                .is_some()
        );
    }
    assert_eq!(desk.incident(id).version, 5);
}

#[test]
fn a_resolved_incident_may_still_be_commented_on() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::Medium);
    desk.run(id, resolve(), ron()).unwrap();
    let decision = desk.run(id, comment(1, "Well done, Ron"), neville());
    assert!(matches!(decision, Ok(Some(EventPayload::CommentAdded(_)))));
    assert_eq!(desk.incident(id).version, 3);
    assert_eq!(desk.incident(id).status, IncidentStatus::Resolved);
}

#[test]
fn a_comment_increments_the_version_and_names_its_author() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::Medium);
    let before = desk.incident(id).clone();
    let decision = desk.run(id, comment(7, "  Smells terrible  "), neville());
    assert_eq!(
        decision,
        Ok(Some(EventPayload::CommentAdded(CommentAdded {
            id: Uuid::from_u128(0x3000 + 7),
            incident_id: id,
            author_id: neville().user_id,
            body: "Smells terrible".into(),
            created_at: clock(2),
            version: 2,
        })))
    );
    let after = desk.incident(id);
    assert_eq!(after.version, before.version + 1);
    assert_eq!(
        Incident {
            version: before.version,
            ..after.clone()
        },
        before,
        "a comment changes nothing but the version"
    );
}

#[test]
fn an_incident_created_updated_commented_escalated_and_resolved_ends_at_version_five() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, hermione(), Severity::High);
    let snape = actor(6, Role::Professor).user_id;
    desk.run(
        id,
        update(IncidentChanges {
            assigned_to: Some(Some(snape)),
            ..IncidentChanges::default()
        }),
        mcgonagall(),
    )
    .unwrap();
    desk.run(id, comment(1, "On my way"), actor(6, Role::Professor))
        .unwrap();
    desk.run(id, change_severity(Severity::Critical), mcgonagall())
        .unwrap();
    desk.run(id, resolve(), mcgonagall()).unwrap();
    assert_eq!(desk.incident(id).version, 5);
    assert_eq!(desk.log.len(), 5);
    for (n, event) in desk.log.iter().enumerate() {
        assert!(desk.fold.was_accepted(id, n as u64 + 1, event.event_id));
    }
}

// ---- value types --------------------------------------------------------------

#[test]
fn a_title_is_trimmed_and_must_have_1_to_200_characters() {
    assert_eq!(IncidentTitle::parse("  Troll  ").unwrap().as_str(), "Troll");
    assert_eq!(IncidentTitle::parse("x").unwrap().as_str(), "x");
    assert!(IncidentTitle::parse("").is_err());
    assert!(IncidentTitle::parse("   \t\n ").is_err());
    let longest = "a".repeat(200);
    assert_eq!(IncidentTitle::parse(&longest).unwrap().as_str(), longest);
    assert!(IncidentTitle::parse(&"a".repeat(201)).is_err());
    assert!(
        IncidentTitle::parse(&format!("   {longest}   ")).is_ok(),
        "the limit applies after trimming"
    );
}

#[test]
fn a_title_counts_characters_not_bytes() {
    let accented = "é".repeat(200);
    assert_eq!(accented.len(), 400);
    assert!(IncidentTitle::parse(&accented).is_ok());
    assert!(IncidentTitle::parse(&"é".repeat(201)).is_err());
}

#[test]
fn a_comment_body_must_not_be_empty() {
    assert!(CommentBody::parse("").is_err());
    assert!(CommentBody::parse("  \n ").is_err());
    assert!(CommentBody::parse("!").is_ok());
    assert!(CommentBody::parse(&"b".repeat(2000)).is_ok());
    assert!(CommentBody::parse(&"b".repeat(2001)).is_err());
}

#[test]
fn a_resolution_must_not_be_empty() {
    assert!(Resolution::parse("").is_err());
    assert!(Resolution::parse(" \t ").is_err());
    assert!(Resolution::parse("Mischief managed").is_ok());
    assert!(Resolution::parse(&"r".repeat(2000)).is_ok());
    assert!(Resolution::parse(&"r".repeat(2001)).is_err());
}

#[test]
fn a_blank_description_is_no_description_and_a_long_one_is_refused() {
    assert_eq!(Description::parse("   ").unwrap().into_inner(), None);
    assert_eq!(Description::parse("").unwrap().into_inner(), None);
    assert_eq!(
        Description::parse(" near the lake ").unwrap().into_inner(),
        Some("near the lake".into())
    );
    assert!(Description::parse(&"d".repeat(5000)).is_ok());
    assert!(Description::parse(&"d".repeat(5001)).is_err());
}

#[test]
fn the_error_of_a_bad_value_names_the_field() {
    assert!(IncidentTitle::parse("").unwrap_err().contains("title"));
    assert!(CommentBody::parse("").unwrap_err().contains("body"));
    assert!(Resolution::parse("").unwrap_err().contains("resolution"));
}

// ---- IncidentFold -------------------------------------------------------------

#[test]
fn the_fold_accepts_an_event_only_at_the_next_version() {
    let id = incident_id(1);
    let mut fold = IncidentFold::default();
    assert_eq!(
        fold.apply(&event(created(id, 1, "Troll"), 1, 1)),
        FoldOutcome::Applied
    );
    let before = fold.clone();
    for version in [0, 1, 3, 4, 100] {
        let outcome = fold.apply(&event(retitled(id, version, "Too late or too early"), 2, 2));
        assert_eq!(outcome, FoldOutcome::Voided, "version {version}");
        assert_eq!(fold, before, "a voided event changes nothing");
    }
    assert_eq!(
        fold.apply(&event(retitled(id, 2, "Next"), 3, 3)),
        FoldOutcome::Applied
    );
    assert_eq!(fold.get(id).unwrap().title, "Next");
    assert_eq!(fold.get(id).unwrap().version, 2);
    assert_eq!(fold.get(id).unwrap().updated_at, clock(3));
}

#[test]
fn the_fold_accepts_incident_created_only_for_an_unknown_id() {
    let id = incident_id(1);
    let mut fold = IncidentFold::default();
    assert_eq!(
        fold.apply(&event(created(id, 2, "Not first"), 1, 1)),
        FoldOutcome::Voided,
        "a creation must be version 1"
    );
    assert_eq!(
        fold.apply(&event(retitled(id, 1, "No creation"), 1, 2)),
        FoldOutcome::Voided,
        "only a creation starts an incident"
    );
    assert!(fold.is_empty());
    assert_eq!(
        fold.apply(&event(created(id, 1, "First"), 1, 3)),
        FoldOutcome::Applied
    );
    let before = fold.clone();
    for version in [1, 2] {
        assert_eq!(
            fold.apply(&event(created(id, version, "Again"), 2, 4)),
            FoldOutcome::Voided,
            "version {version}"
        );
    }
    assert_eq!(fold, before);
    assert_eq!(fold.get(id).unwrap().title, "First");
}

#[test]
fn of_two_racing_events_with_the_same_version_the_first_applied_wins() {
    let id = incident_id(1);
    let mut fold = IncidentFold::default();
    let creation = event(created(id, 1, "Troll"), 1, 1);
    let first = event(retitled(id, 2, "First writer"), 2, 2);
    let second = event(retitled(id, 2, "Second writer"), 2, 3);
    assert_eq!(fold.apply(&creation), FoldOutcome::Applied);
    assert_eq!(fold.apply(&first), FoldOutcome::Applied);
    let before = fold.clone();
    assert_eq!(fold.apply(&second), FoldOutcome::Voided);
    assert_eq!(fold, before);
    assert_eq!(fold.get(id).unwrap().title, "First writer");
    assert!(fold.was_accepted(id, 1, creation.event_id));
    assert!(fold.was_accepted(id, 2, first.event_id));
    assert!(!fold.was_accepted(id, 2, second.event_id));

    // The other order: the other writer wins.
    let mut other = IncidentFold::default();
    other.apply(&creation);
    assert_eq!(other.apply(&second), FoldOutcome::Applied);
    assert_eq!(other.apply(&first), FoldOutcome::Voided);
    assert_eq!(other.get(id).unwrap().title, "Second writer");
    assert!(other.was_accepted(id, 2, second.event_id));
    assert!(!other.was_accepted(id, 2, first.event_id));
}

#[test]
fn racing_commands_decided_on_the_same_state_produce_one_winner() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::Medium);
    let state = desk.incident(id).clone();
    let now = clock(10);
    let resolution = decide(Some(&state), resolve(), hermione(), now).unwrap();
    let deletion = decide(Some(&state), IncidentCommand::Delete, mcgonagall(), now).unwrap();
    let resolution = event(resolution.unwrap(), 10, 10);
    let deletion = event(deletion.unwrap(), 10, 11);
    assert_eq!(desk.fold.apply(&deletion), FoldOutcome::Applied);
    assert_eq!(desk.fold.apply(&resolution), FoldOutcome::Voided);
    let incident = desk.incident(id);
    assert!(incident.deleted);
    assert_eq!(incident.status, IncidentStatus::Open, "the resolution lost");
    assert!(desk.fold.was_accepted(id, 2, deletion.event_id));
    assert!(!desk.fold.was_accepted(id, 2, resolution.event_id));
}

#[test]
fn an_event_applied_again_is_voided() {
    let id = incident_id(1);
    let mut desk = Desk::with_incident(id, ron(), Severity::Medium);
    desk.run(id, comment(1, "First!"), neville()).unwrap();
    let before = desk.fold.clone();
    for event in desk.log.clone() {
        assert_eq!(desk.fold.apply(&event), FoldOutcome::Voided);
    }
    assert_eq!(desk.fold, before);
}

#[test]
fn was_accepted_is_false_for_what_the_fold_never_accepted() {
    let id = incident_id(1);
    let desk = Desk::with_incident(id, ron(), Severity::Medium);
    let creation = desk.log[0].event_id;
    assert!(desk.fold.was_accepted(id, 1, creation));
    assert!(
        !desk.fold.was_accepted(id, 0, creation),
        "there is no version 0"
    );
    assert!(!desk.fold.was_accepted(id, 2, creation), "no version 2 yet");
    assert!(!desk.fold.was_accepted(incident_id(2), 1, creation));
    assert!(!desk.fold.was_accepted(id, 1, Uuid::from_u128(0xdead)));
    assert!(!desk.fold.was_accepted(id, u64::MAX, creation));
}

#[test]
fn events_of_other_topics_are_not_incident_events() {
    let mut fold = IncidentFold::default();
    let login = event(
        UserLoggedIn {
            user_id: ron().user_id,
            ip: "10.0.0.7".into(),
        },
        1,
        1,
    );
    assert_eq!(fold.apply(&login), FoldOutcome::NotAnIncidentEvent);
    assert!(fold.is_empty());
}

#[test]
fn the_fold_keeps_each_incident_apart() {
    let (first, second) = (incident_id(1), incident_id(2));
    let mut desk = Desk::with_incident(first, ron(), Severity::Low);
    desk.run(second, report(second, Severity::High), neville())
        .unwrap();
    desk.run(first, change_severity(Severity::Medium), ron())
        .unwrap();
    assert_eq!(desk.fold.len(), 2);
    assert_eq!(desk.incident(first).version, 2);
    assert_eq!(desk.incident(first).severity, Severity::Medium);
    assert_eq!(desk.incident(second).version, 1);
    assert_eq!(desk.incident(second).severity, Severity::High);
    assert_eq!(desk.incident(second).reported_by, neville().user_id);
}

#[test]
fn a_decision_reads_no_clock_but_the_one_it_is_given() {
    let id = incident_id(1);
    let desk = Desk::new();
    let a = desk.decide(id, report(id, Severity::Low), ron());
    let b = desk.decide(id, report(id, Severity::Low), ron());
    assert_eq!(a, b, "the same command at the same `now` decides the same");
}
