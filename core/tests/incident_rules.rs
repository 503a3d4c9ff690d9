//! The Incident aggregate's rules as a specification: for every command,
//! given the events that already happened, when someone issues it, then the
//! event it appends, nothing, or the named rule that refuses it
//! (`marauders_core::testing`). Then the value types, and the fold's
//! version rule.

use chrono::Duration;
use marauders_core::domain::{IncidentStatus, Location, Role, Severity};
use marauders_core::events::{
    CommentAdded, EventPayload, IncidentCreated, IncidentDeleted, IncidentResolved,
    IncidentUpdated, SeverityEscalated, UserLoggedIn,
};
use marauders_core::incident::{
    Actor, Claim, CommentBody, Description, FoldOutcome, IncidentChanges, IncidentCommand,
    IncidentTitle, Rejection, Resolution, decide,
};
use marauders_core::testing::{NOW, given, history_time};
use uuid::Uuid;

// ---- who ----------------------------------------------------------------------

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

fn snape() -> Actor {
    actor(6, Role::Professor)
}

// ---- what happened: the troll in the dungeon, event by event -------------------

const TROLL: Uuid = Uuid::from_u128(0x2001);
const PEEVES: Uuid = Uuid::from_u128(0x2002);

/// The troll as `reporter` reported it at `severity`, at `history_time(0)`.
fn troll_created(reporter: Actor, severity: Severity) -> IncidentCreated {
    IncidentCreated {
        id: TROLL,
        title: "Troll in the dungeon".into(),
        description: Some("It came through the cellar door".into()),
        severity,
        location: Location::Dungeons,
        status: IncidentStatus::Open,
        reported_by: reporter.user_id,
        assigned_to: None,
        resolved_by: None,
        resolution: None,
        created_at: history_time(0),
        updated_at: history_time(0),
        resolved_at: None,
        version: 1,
    }
}

/// The troll's report: the first event of every history below.
fn troll_reported(reporter: Actor, severity: Severity) -> EventPayload {
    troll_created(reporter, severity).into()
}

/// The troll's report as `decide` makes it at [`NOW`].
fn troll_reported_now(reporter: Actor, severity: Severity) -> IncidentCreated {
    IncidentCreated {
        created_at: NOW,
        updated_at: NOW,
        ..troll_created(reporter, severity)
    }
}

fn troll_updated(version: u64, change: impl FnOnce(&mut IncidentUpdated)) -> EventPayload {
    let mut update = IncidentUpdated {
        id: TROLL,
        version,
        title: None,
        description: None,
        location: None,
        status: None,
        assigned_to: None,
    };
    change(&mut update);
    update.into()
}

fn troll_retitled(version: u64, title: &str) -> EventPayload {
    troll_updated(version, |update| update.title = Some(title.into()))
}

fn troll_resolved(by: Actor, version: u64) -> EventPayload {
    IncidentResolved {
        id: TROLL,
        version,
        resolved_by: by.user_id,
        resolution: "Knocked out with its own club".into(),
    }
    .into()
}

fn troll_deleted(by: Actor, version: u64) -> EventPayload {
    IncidentDeleted {
        id: TROLL,
        version,
        deleted_by: by.user_id,
    }
    .into()
}

fn troll_escalated(version: u64, from: Severity, to: Severity) -> EventPayload {
    SeverityEscalated {
        incident_id: TROLL,
        version,
        old_severity: from,
        new_severity: to,
    }
    .into()
}

/// A comment as decided today: it commutes, claiming no version.
fn troll_commented(n: u128, by: Actor, body: &str) -> EventPayload {
    CommentAdded {
        id: Uuid::from_u128(0x3000 + n),
        incident_id: TROLL,
        author_id: by.user_id,
        body: body.into(),
        created_at: NOW,
        version: None,
    }
    .into()
}

/// A comment as decided before comments commuted: it took a version.
fn troll_commented_at_version(n: u128, by: Actor, version: u64, body: &str) -> EventPayload {
    match troll_commented(n, by, body) {
        EventPayload::CommentAdded(comment) => CommentAdded {
            version: Some(version),
            ..comment
        }
        .into(),
        _ => unreachable!("troll_commented makes a comment"),
    }
}

// ---- the commands -------------------------------------------------------------

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

fn retitle(raw: &str) -> IncidentCommand {
    update(IncidentChanges {
        title: Some(title(raw)),
        ..IncidentChanges::default()
    })
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
        retitle("Something else"),
        resolve(),
        change_severity(Severity::Critical),
        change_severity(Severity::Low),
        IncidentCommand::Delete,
        comment(99, "Anyone there?"),
    ]
}

// ---- Report -------------------------------------------------------------------

#[test]
fn anyone_may_report_an_incident_which_starts_open_at_version_one() {
    for (n, role) in Role::ALL.iter().enumerate() {
        let reporter = actor(10 + n as u128, *role);
        let incident = given([])
            .when(report(TROLL, Severity::High), reporter)
            .then(troll_reported_now(reporter, Severity::High));
        assert_eq!(incident.version, 1);
        assert_eq!(incident.status, IncidentStatus::Open);
        assert!(!incident.deleted);
    }
}

#[test]
fn a_report_carries_the_full_incident_with_nothing_assigned_or_resolved() {
    let command = IncidentCommand::Report {
        id: TROLL,
        title: title("  Troll in the dungeon  "),
        description: Description::parse("  It came through the cellar door ").unwrap(),
        severity: Severity::Critical,
        location: Location::Dungeons,
    };
    given([])
        .when(command, ron())
        .then(troll_reported_now(ron(), Severity::Critical));
}

#[test]
fn a_report_with_a_blank_description_has_no_description() {
    let command = IncidentCommand::Report {
        id: PEEVES,
        title: title("Peeves again"),
        description: Description::parse("   ").unwrap(),
        severity: Severity::Low,
        location: Location::Library,
    };
    let incident = given([]).when(command, neville()).then(IncidentCreated {
        id: PEEVES,
        title: "Peeves again".into(),
        description: None,
        location: Location::Library,
        ..troll_reported_now(neville(), Severity::Low)
    });
    assert_eq!(incident.description, None);
}

#[test]
fn reporting_an_id_that_already_exists_is_refused_by_already_exists() {
    for reporter in [ron(), hermione(), mcgonagall()] {
        given([troll_reported(ron(), Severity::High)])
            .when(report(TROLL, Severity::Low), reporter)
            .then_rejected(Rejection::AlreadyExists { id: TROLL });
    }
}

#[test]
fn reporting_the_id_of_a_deleted_incident_is_still_refused_by_already_exists() {
    given([
        troll_reported(ron(), Severity::High),
        troll_deleted(ron(), 2),
    ])
    .when(report(TROLL, Severity::Low), ron())
    .then_rejected(Rejection::AlreadyExists { id: TROLL });
}

// ---- unknown and deleted incidents ------------------------------------------

#[test]
fn every_command_but_report_on_an_unknown_incident_is_refused_by_not_found() {
    for command in every_command_but_report() {
        for who in [ron(), hermione(), mcgonagall()] {
            given([troll_reported(ron(), Severity::High)])
                .when_on(PEEVES, command.clone(), who)
                .then_rejected(Rejection::NotFound);
        }
    }
}

#[test]
fn every_command_but_report_on_a_deleted_incident_is_refused_by_not_found() {
    for command in every_command_but_report() {
        for who in [ron(), hermione(), mcgonagall()] {
            given([
                troll_reported(ron(), Severity::High),
                troll_deleted(mcgonagall(), 2),
            ])
            .when(command.clone(), who)
            .then_rejected(Rejection::NotFound);
        }
    }
}

// ---- Update -------------------------------------------------------------------

#[test]
fn the_reporter_may_update_their_own_incident() {
    let incident = given([troll_reported(ron(), Severity::High)])
        .when(retitle("Two trolls in the dungeon"), ron())
        .then(troll_retitled(2, "Two trolls in the dungeon"));
    assert_eq!(incident.title, "Two trolls in the dungeon");
    assert_eq!(incident.version, 2);
}

#[test]
fn a_prefect_or_a_professor_may_update_anyones_incident() {
    for who in [hermione(), percy(), mcgonagall()] {
        let moved = update(IncidentChanges {
            location: Some(Location::GreatHall),
            ..IncidentChanges::default()
        });
        let incident = given([troll_reported(ron(), Severity::High)])
            .when(moved, who)
            .then(troll_updated(2, |u| u.location = Some(Location::GreatHall)));
        assert_eq!(incident.location, Location::GreatHall, "{who:?}");
    }
}

#[test]
fn a_student_who_did_not_report_it_is_refused_by_update_needs_reporter_or_staff() {
    given([troll_reported(ron(), Severity::High)])
        .when(retitle("Nothing to see here"), neville())
        .then_rejected(Rejection::UpdateNeedsReporterOrStaff);
}

#[test]
fn an_update_to_status_resolved_is_refused_by_resolved_only_by_resolving() {
    for who in [ron(), hermione(), mcgonagall()] {
        let to_resolved = update(IncidentChanges {
            status: Some(IncidentStatus::Resolved),
            ..IncidentChanges::default()
        });
        given([troll_reported(ron(), Severity::High)])
            .when(to_resolved, who)
            .then_rejected(Rejection::ResolvedOnlyByResolving);
    }
}

#[test]
fn an_update_of_a_resolved_incident_is_refused_by_resolved_cannot_be_updated() {
    for who in [ron(), hermione(), mcgonagall()] {
        let reopen = update(IncidentChanges {
            status: Some(IncidentStatus::Open),
            title: Some(title("Reopened")),
            ..IncidentChanges::default()
        });
        given([
            troll_reported(ron(), Severity::High),
            troll_resolved(ron(), 2),
        ])
        .when(reopen, who)
        .then_rejected(Rejection::ResolvedCannotBeUpdated);
    }
}

#[test]
fn an_update_carries_only_the_fields_that_changed() {
    let changes = update(IncidentChanges {
        title: Some(title("Troll in the dungeon")),
        description: Some(Description::parse("It is in the girls' bathroom now").unwrap()),
        location: Some(Location::Dungeons),
        status: Some(IncidentStatus::Investigating),
        assigned_to: Some(Some(snape().user_id)),
    });
    let incident = given([troll_reported(ron(), Severity::High)])
        .when(changes, hermione())
        .then(troll_updated(2, |u| {
            u.description = Some(Some("It is in the girls' bathroom now".into()));
            u.status = Some(IncidentStatus::Investigating);
            u.assigned_to = Some(Some(snape().user_id));
        }));
    assert_eq!(incident.title, "Troll in the dungeon");
    assert_eq!(
        incident.description.as_deref(),
        Some("It is in the girls' bathroom now")
    );
    assert_eq!(incident.location, Location::Dungeons);
    assert_eq!(incident.status, IncidentStatus::Investigating);
    assert_eq!(incident.assigned_to, Some(snape().user_id));
    assert_eq!(
        incident.updated_at, NOW,
        "an update stamps the event's time"
    );
    assert_eq!(incident.created_at, history_time(0));
}

#[test]
fn an_update_that_changes_nothing_appends_nothing() {
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
        given([troll_reported(ron(), Severity::High)])
            .when(update(changes), ron())
            .then_nothing();
    }
}

#[test]
fn an_update_with_no_description_clears_it_in_one_event() {
    // `null` and `""` both parse to no description.
    for cleared in [Description::none(), Description::parse("  ").unwrap()] {
        let clear = update(IncidentChanges {
            description: Some(cleared),
            ..IncidentChanges::default()
        });
        let incident = given([troll_reported(ron(), Severity::High)])
            .when(clear, ron())
            .then(troll_updated(2, |u| u.description = Some(None)));
        assert_eq!(incident.description, None);
    }
}

#[test]
fn clearing_a_description_that_is_already_empty_appends_nothing() {
    let clear = || {
        update(IncidentChanges {
            description: Some(Description::none()),
            ..IncidentChanges::default()
        })
    };
    given([
        troll_reported(ron(), Severity::High),
        troll_updated(2, |u| u.description = Some(None)),
    ])
    .when(clear(), ron())
    .then_nothing();
}

#[test]
fn a_cleared_description_can_be_written_again() {
    let rewrite = update(IncidentChanges {
        description: Some(Description::parse("Back in the dungeon").unwrap()),
        ..IncidentChanges::default()
    });
    let incident = given([
        troll_reported(ron(), Severity::High),
        troll_updated(2, |u| u.description = Some(None)),
    ])
    .when(rewrite, ron())
    .then(troll_updated(3, |u| {
        u.description = Some(Some("Back in the dungeon".into()))
    }));
    assert_eq!(incident.description.as_deref(), Some("Back in the dungeon"));
}

#[test]
fn an_update_with_assigned_to_some_none_unassigns() {
    let unassign = update(IncidentChanges {
        assigned_to: Some(None),
        ..IncidentChanges::default()
    });
    let incident = given([
        troll_reported(ron(), Severity::High),
        troll_updated(2, |u| u.assigned_to = Some(Some(snape().user_id))),
    ])
    .when(unassign, mcgonagall())
    .then(troll_updated(3, |u| u.assigned_to = Some(None)));
    assert_eq!(incident.assigned_to, None);
}

#[test]
fn an_update_that_leaves_assigned_to_out_keeps_the_assignee() {
    let incident = given([
        troll_reported(ron(), Severity::High),
        troll_updated(2, |u| u.assigned_to = Some(Some(snape().user_id))),
    ])
    .when(retitle("Troll, handled by Snape"), mcgonagall())
    .then(troll_retitled(3, "Troll, handled by Snape"));
    assert_eq!(incident.assigned_to, Some(snape().user_id));
}

#[test]
fn an_update_moves_the_status_between_open_and_investigating() {
    let to = |status| {
        update(IncidentChanges {
            status: Some(status),
            ..IncidentChanges::default()
        })
    };
    let investigating = given([troll_reported(ron(), Severity::High)])
        .when(to(IncidentStatus::Investigating), ron())
        .then(troll_updated(2, |u| {
            u.status = Some(IncidentStatus::Investigating)
        }));
    assert_eq!(investigating.status, IncidentStatus::Investigating);
    let open_again = given([
        troll_reported(ron(), Severity::High),
        troll_updated(2, |u| u.status = Some(IncidentStatus::Investigating)),
    ])
    .when(to(IncidentStatus::Open), ron())
    .then(troll_updated(3, |u| u.status = Some(IncidentStatus::Open)));
    assert_eq!(open_again.status, IncidentStatus::Open);
}

// ---- Resolve ------------------------------------------------------------------

#[test]
fn the_reporter_may_resolve_their_own_incident() {
    given([troll_reported(ron(), Severity::High)])
        .when(resolve(), ron())
        .then(troll_resolved(ron(), 2));
}

#[test]
fn a_prefect_or_a_professor_may_resolve_anyones_incident() {
    for who in [hermione(), percy(), mcgonagall()] {
        let incident = given([troll_reported(ron(), Severity::High)])
            .when(resolve(), who)
            .then(troll_resolved(who, 2));
        assert_eq!(incident.resolved_by, Some(who.user_id));
    }
}

#[test]
fn a_student_who_did_not_report_it_is_refused_by_resolve_needs_reporter_or_staff() {
    given([troll_reported(ron(), Severity::High)])
        .when(resolve(), neville())
        .then_rejected(Rejection::ResolveNeedsReporterOrStaff);
}

#[test]
fn resolving_a_resolved_incident_is_refused_by_already_resolved() {
    for who in [ron(), hermione(), mcgonagall()] {
        given([
            troll_reported(ron(), Severity::High),
            troll_resolved(hermione(), 2),
        ])
        .when(resolve(), who)
        .then_rejected(Rejection::AlreadyResolved);
    }
}

#[test]
fn resolving_sets_the_status_the_resolver_the_resolution_and_the_time() {
    let history = given([troll_reported(ron(), Severity::High)]);
    let before = history.incident(TROLL).clone();
    assert_eq!(
        (before.resolved_by, &before.resolution, before.resolved_at),
        (None, &None, None)
    );
    let trimmed = IncidentCommand::Resolve {
        resolution: Resolution::parse("  Mischief managed  ").unwrap(),
    };
    let incident = history.when(trimmed, mcgonagall()).then(IncidentResolved {
        id: TROLL,
        version: 2,
        resolved_by: mcgonagall().user_id,
        resolution: "Mischief managed".into(),
    });
    assert_eq!(incident.status, IncidentStatus::Resolved);
    assert_eq!(incident.resolved_by, Some(mcgonagall().user_id));
    assert_eq!(incident.resolution.as_deref(), Some("Mischief managed"));
    assert_eq!(incident.resolved_at, Some(NOW));
    assert_eq!(incident.updated_at, NOW);
}

// ---- ChangeSeverity ---------------------------------------------------------

#[test]
fn anyone_may_raise_a_severity() {
    for who in [neville(), ron(), hermione(), mcgonagall()] {
        let incident = given([troll_reported(ron(), Severity::Low)])
            .when(change_severity(Severity::High), who)
            .then(troll_escalated(2, Severity::Low, Severity::High));
        assert_eq!(incident.severity, Severity::High, "{who:?}");
    }
}

#[test]
fn a_student_lowering_a_severity_is_refused_by_lowering_severity_needs_staff() {
    for who in [neville(), ron()] {
        for lower in [Severity::High, Severity::Medium, Severity::Low] {
            given([troll_reported(ron(), Severity::Critical)])
                .when(change_severity(lower), who)
                .then_rejected(Rejection::LoweringSeverityNeedsStaff);
        }
    }
}

#[test]
fn a_prefect_or_a_professor_may_lower_a_severity() {
    for who in [hermione(), percy(), mcgonagall()] {
        let incident = given([troll_reported(ron(), Severity::Critical)])
            .when(change_severity(Severity::Low), who)
            .then(troll_escalated(2, Severity::Critical, Severity::Low));
        assert_eq!(incident.severity, Severity::Low, "{who:?}");
    }
}

#[test]
fn setting_the_severity_it_already_has_appends_nothing() {
    for who in [neville(), ron(), mcgonagall()] {
        given([troll_reported(ron(), Severity::Medium)])
            .when(change_severity(Severity::Medium), who)
            .then_nothing();
    }
}

#[test]
fn a_severity_change_on_a_resolved_incident_is_refused_by_resolved_severity_is_final() {
    for who in [ron(), hermione(), mcgonagall()] {
        for severity in [Severity::Low, Severity::Critical] {
            given([
                troll_reported(ron(), Severity::Medium),
                troll_resolved(ron(), 2),
            ])
            .when(change_severity(severity), who)
            .then_rejected(Rejection::ResolvedSeverityIsFinal);
        }
    }
}

#[test]
fn a_severity_change_is_a_severity_escalated_event_with_old_and_new() {
    let incident = given([
        troll_reported(ron(), Severity::Medium),
        troll_escalated(2, Severity::Medium, Severity::Critical),
    ])
    .when(change_severity(Severity::Low), hermione())
    .then(troll_escalated(3, Severity::Critical, Severity::Low));
    assert_eq!(incident.severity, Severity::Low);
    assert_eq!(incident.updated_at, NOW);
}

// ---- Delete -------------------------------------------------------------------

#[test]
fn the_reporter_may_delete_their_own_incident() {
    let incident = given([troll_reported(ron(), Severity::Medium)])
        .when(IncidentCommand::Delete, ron())
        .then(troll_deleted(ron(), 2));
    assert!(incident.deleted);
}

#[test]
fn a_professor_may_delete_anyones_incident() {
    let incident = given([troll_reported(ron(), Severity::Medium)])
        .when(IncidentCommand::Delete, mcgonagall())
        .then(troll_deleted(mcgonagall(), 2));
    assert!(incident.deleted);
}

#[test]
fn a_prefect_who_did_not_report_it_is_refused_by_delete_needs_reporter_or_professor() {
    for who in [hermione(), percy()] {
        given([troll_reported(ron(), Severity::Medium)])
            .when(IncidentCommand::Delete, who)
            .then_rejected(Rejection::DeleteNeedsReporterOrProfessor);
    }
}

#[test]
fn a_student_who_did_not_report_it_is_refused_by_delete_needs_reporter_or_professor() {
    given([troll_reported(ron(), Severity::Medium)])
        .when(IncidentCommand::Delete, neville())
        .then_rejected(Rejection::DeleteNeedsReporterOrProfessor);
}

#[test]
fn a_prefect_may_delete_an_incident_they_reported() {
    given([troll_reported(hermione(), Severity::Medium)])
        .when(IncidentCommand::Delete, hermione())
        .then(troll_deleted(hermione(), 2));
}

#[test]
fn a_deleted_incident_stays_in_the_fold_marked_deleted() {
    let history = given([
        troll_reported(ron(), Severity::Medium),
        troll_deleted(ron(), 2),
    ]);
    let incident = history.incident(TROLL);
    assert!(incident.deleted);
    assert_eq!(incident.version, 2);
    assert_eq!(incident.updated_at, history.history()[1].timestamp);
    assert_eq!(history.fold().len(), 1);
}

// ---- AddComment ---------------------------------------------------------------

#[test]
fn anyone_may_comment_on_an_incident() {
    for who in [neville(), ron(), hermione(), mcgonagall()] {
        given([troll_reported(ron(), Severity::Medium)])
            .when(comment(1, "I saw it too"), who)
            .then(troll_commented(1, who, "I saw it too"));
    }
}

#[test]
fn a_resolved_incident_may_still_be_commented_on() {
    let incident = given([
        troll_reported(ron(), Severity::Medium),
        troll_resolved(ron(), 2),
    ])
    .when(comment(1, "Well done, Ron"), neville())
    .then(troll_commented(1, neville(), "Well done, Ron"));
    assert_eq!(incident.status, IncidentStatus::Resolved);
}

#[test]
fn a_comment_names_its_author_and_changes_nothing_of_the_incident_not_even_its_version() {
    let history = given([troll_reported(ron(), Severity::Medium)]);
    let before = history.incident(TROLL).clone();
    let after = history
        .when(comment(7, "  Smells terrible  "), neville())
        .then(troll_commented(7, neville(), "Smells terrible"));
    assert_eq!(after, before, "a comment commutes: it claims no version");
}

#[test]
fn a_comment_from_before_comments_commuted_still_takes_its_version() {
    let history = given([
        troll_reported(ron(), Severity::Medium),
        troll_commented_at_version(1, neville(), 2, "First!"),
        troll_commented_at_version(2, ron(), 2, "Also first"),
    ]);
    assert_eq!(
        history.outcomes(),
        [
            FoldOutcome::Applied,
            FoldOutcome::Applied,
            FoldOutcome::Voided
        ],
        "the old rule: the second comment at version 2 lost its race"
    );
    assert_eq!(history.incident(TROLL).version, 2);
}

#[test]
fn two_comments_decided_on_the_same_state_are_both_accepted() {
    let history = given([
        troll_reported(ron(), Severity::Medium),
        troll_commented(1, neville(), "I saw it"),
        troll_commented(2, hermione(), "So did I"),
    ]);
    assert_eq!(history.outcomes(), [FoldOutcome::Applied; 3]);
    assert_eq!(history.incident(TROLL).version, 1);
}

#[test]
fn a_comment_and_a_state_change_decided_on_the_same_state_both_apply() {
    let history = given([
        troll_reported(ron(), Severity::Medium),
        troll_resolved(ron(), 2),
        troll_commented(1, neville(), "Is it gone?"),
    ]);
    assert_eq!(history.outcomes(), [FoldOutcome::Applied; 3]);
    assert_eq!(history.incident(TROLL).status, IncidentStatus::Resolved);
}

#[test]
fn a_comment_folded_after_its_incident_was_deleted_is_voided() {
    let history = given([
        troll_reported(ron(), Severity::Medium),
        troll_deleted(ron(), 2),
        troll_commented(1, neville(), "Too late"),
    ]);
    assert_eq!(
        history.outcomes(),
        [
            FoldOutcome::Applied,
            FoldOutcome::Applied,
            FoldOutcome::Voided
        ]
    );
    let comment_on_nothing = given([troll_commented(1, neville(), "Where?")]);
    assert_eq!(comment_on_nothing.outcomes(), [FoldOutcome::Voided]);
}

#[test]
fn a_copy_of_an_accepted_comment_is_voided() {
    let history = given([troll_reported(ron(), Severity::Medium)]);
    let mut fold = history.fold().clone();
    let comment = marauders_core::events::Event::at(
        Uuid::from_u128(0xC0),
        NOW,
        troll_commented(1, neville(), "Once"),
        None,
    );
    assert_eq!(fold.apply(&comment), FoldOutcome::Applied);
    assert_eq!(
        fold.apply(&comment),
        FoldOutcome::Voided,
        "the same event again"
    );
    assert!(fold.was_accepted_as(TROLL, Claim::Commutes, comment.event_id));
    assert!(!fold.was_accepted_as(TROLL, Claim::Commutes, Uuid::from_u128(0xC1)));
}

#[test]
fn an_incident_created_updated_commented_escalated_and_resolved_ends_at_version_five() {
    let history = given([
        troll_reported(hermione(), Severity::High),
        troll_updated(2, |u| u.assigned_to = Some(Some(snape().user_id))),
        troll_commented_at_version(1, snape(), 3, "On my way"),
        troll_escalated(4, Severity::High, Severity::Critical),
    ]);
    assert_eq!(history.outcomes(), [FoldOutcome::Applied; 4]);
    let accepted: Vec<Uuid> = history.history().iter().map(|e| e.event_id).collect();
    let fold_before = history.fold().clone();
    let incident = history
        .when(resolve(), mcgonagall())
        .then(troll_resolved(mcgonagall(), 5));
    assert_eq!(incident.version, 5);
    for (n, event_id) in accepted.into_iter().enumerate() {
        assert!(fold_before.was_accepted(TROLL, n as u64 + 1, event_id));
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
        IncidentTitle::parse(&format!("   {longest}   ")).is_err(),
        "the limit applies to the title as sent, as the API document's maxLength says"
    );
}

#[test]
fn a_control_character_is_refused_even_where_trimming_would_remove_it() {
    // U+0085 (next line) is both a control character and white space.
    assert!(IncidentTitle::parse("\u{85}Troll").is_err());
    assert!(Description::parse("Troll\u{85}").is_err());
    assert!(IncidentTitle::parse("Troll\tin the\ndungeon").is_ok());
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

// ---- the fold's version rule --------------------------------------------------

#[test]
fn the_fold_accepts_an_event_only_at_the_next_version() {
    for version in [0, 1, 3, 4, 100] {
        let history = given([
            troll_reported(ron(), Severity::Medium),
            troll_retitled(version, "Too late or too early"),
        ]);
        assert_eq!(
            history.outcomes(),
            [FoldOutcome::Applied, FoldOutcome::Voided],
            "version {version}"
        );
        assert_eq!(
            history.fold(),
            given([troll_reported(ron(), Severity::Medium)]).fold(),
            "a voided event changes nothing"
        );
    }
    let history = given([
        troll_reported(ron(), Severity::Medium),
        troll_retitled(2, "Next"),
    ]);
    assert_eq!(history.outcomes(), [FoldOutcome::Applied; 2]);
    let incident = history.incident(TROLL);
    assert_eq!(incident.title, "Next");
    assert_eq!(incident.version, 2);
    assert_eq!(incident.updated_at, history.history()[1].timestamp);
}

#[test]
fn the_fold_voids_a_creation_that_is_not_version_one() {
    let not_first = IncidentCreated {
        version: 2,
        ..troll_created(ron(), Severity::Medium)
    };
    let history = given([not_first.into()]);
    assert_eq!(history.outcomes(), [FoldOutcome::Voided]);
    assert!(history.fold().is_empty());
}

#[test]
fn the_fold_voids_any_other_event_before_the_creation() {
    let history = given([troll_retitled(1, "No creation")]);
    assert_eq!(history.outcomes(), [FoldOutcome::Voided]);
    assert!(history.fold().is_empty());
}

#[test]
fn the_fold_voids_a_second_creation_of_a_known_id() {
    let again = |version| {
        EventPayload::from(IncidentCreated {
            title: "Again".into(),
            version,
            ..troll_created(neville(), Severity::Low)
        })
    };
    for version in [1, 2] {
        let history = given([troll_reported(ron(), Severity::Medium), again(version)]);
        assert_eq!(
            history.outcomes(),
            [FoldOutcome::Applied, FoldOutcome::Voided],
            "version {version}"
        );
        assert_eq!(history.incident(TROLL).title, "Troll in the dungeon");
    }
}

#[test]
fn of_two_racing_events_with_the_same_version_the_first_applied_wins() {
    let history = given([
        troll_reported(ron(), Severity::Medium),
        troll_retitled(2, "First writer"),
        troll_retitled(2, "Second writer"),
    ]);
    assert_eq!(
        history.outcomes(),
        [
            FoldOutcome::Applied,
            FoldOutcome::Applied,
            FoldOutcome::Voided
        ]
    );
    assert_eq!(history.incident(TROLL).title, "First writer");
    let [creation, first, second] = [0, 1, 2].map(|n| history.history()[n].event_id);
    assert!(history.fold().was_accepted(TROLL, 1, creation));
    assert!(history.fold().was_accepted(TROLL, 2, first));
    assert!(!history.fold().was_accepted(TROLL, 2, second));
}

#[test]
fn of_two_racing_events_in_the_other_order_the_other_writer_wins() {
    let history = given([
        troll_reported(ron(), Severity::Medium),
        troll_retitled(2, "Second writer"),
        troll_retitled(2, "First writer"),
    ]);
    assert_eq!(history.incident(TROLL).title, "Second writer");
    let [_, winner, loser] = [0, 1, 2].map(|n| history.history()[n].event_id);
    assert!(history.fold().was_accepted(TROLL, 2, winner));
    assert!(!history.fold().was_accepted(TROLL, 2, loser));
}

#[test]
fn racing_commands_decided_on_the_same_state_produce_one_winner() {
    let before = given([troll_reported(ron(), Severity::Medium)]);
    let state = before.incident(TROLL).clone();
    let resolution = decide(Some(&state), resolve(), hermione(), NOW).unwrap();
    let deletion = decide(Some(&state), IncidentCommand::Delete, mcgonagall(), NOW).unwrap();
    // The log holds the deletion first: it takes version 2.
    let history = given([
        troll_reported(ron(), Severity::Medium),
        deletion.unwrap(),
        resolution.unwrap(),
    ]);
    assert_eq!(
        history.outcomes()[1..],
        [FoldOutcome::Applied, FoldOutcome::Voided]
    );
    let incident = history.incident(TROLL);
    assert!(incident.deleted);
    assert_eq!(incident.status, IncidentStatus::Open, "the resolution lost");
    assert!(
        history
            .fold()
            .was_accepted(TROLL, 2, history.history()[1].event_id)
    );
    assert!(
        !history
            .fold()
            .was_accepted(TROLL, 2, history.history()[2].event_id)
    );
}

#[test]
fn an_event_applied_again_is_voided() {
    let first = [
        troll_reported(ron(), Severity::Medium),
        troll_commented_at_version(1, neville(), 2, "First!"),
    ];
    let history = given(first.iter().cloned().chain(first.iter().cloned()));
    assert_eq!(
        history.outcomes(),
        [
            FoldOutcome::Applied,
            FoldOutcome::Applied,
            FoldOutcome::Voided,
            FoldOutcome::Voided
        ]
    );
    assert_eq!(history.fold(), given(first).fold());
}

#[test]
fn was_accepted_is_false_for_what_the_fold_never_accepted() {
    let history = given([troll_reported(ron(), Severity::Medium)]);
    let (fold, creation) = (history.fold(), history.history()[0].event_id);
    assert!(fold.was_accepted(TROLL, 1, creation));
    assert!(
        !fold.was_accepted(TROLL, 0, creation),
        "there is no version 0"
    );
    assert!(!fold.was_accepted(TROLL, 2, creation), "no version 2 yet");
    assert!(!fold.was_accepted(PEEVES, 1, creation));
    assert!(!fold.was_accepted(TROLL, 1, Uuid::from_u128(0xdead)));
    assert!(!fold.was_accepted(TROLL, u64::MAX, creation));
}

#[test]
fn events_of_other_topics_are_not_incident_events() {
    let login = UserLoggedIn {
        user_id: ron().user_id,
        ip: "10.0.0.7".into(),
    };
    let history = given([login.into()]);
    assert_eq!(history.outcomes(), [FoldOutcome::NotAnIncidentEvent]);
    assert!(history.fold().is_empty());
}

#[test]
fn the_fold_keeps_each_incident_apart() {
    let peeves_reported = IncidentCreated {
        id: PEEVES,
        ..troll_created(neville(), Severity::High)
    };
    let history = given([
        troll_reported(ron(), Severity::Low),
        peeves_reported.into(),
        troll_escalated(2, Severity::Low, Severity::Medium),
    ]);
    assert_eq!(history.fold().len(), 2);
    assert_eq!(history.incident(TROLL).version, 2);
    assert_eq!(history.incident(TROLL).severity, Severity::Medium);
    assert_eq!(history.incident(PEEVES).version, 1);
    assert_eq!(history.incident(PEEVES).severity, Severity::High);
    assert_eq!(history.incident(PEEVES).reported_by, neville().user_id);
}

#[test]
fn a_decision_reads_no_clock_but_the_one_it_is_given() {
    let decide_report = || decide(None, report(TROLL, Severity::Low), ron(), NOW);
    assert_eq!(
        decide_report(),
        decide_report(),
        "the same command at the same `now` decides the same"
    );
    let later = decide(
        None,
        report(TROLL, Severity::Low),
        ron(),
        NOW + Duration::hours(1),
    );
    assert_ne!(
        decide_report(),
        later,
        "and another `now` stamps another time"
    );
}
