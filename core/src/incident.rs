//! The Incident aggregate, as pure functions.
//!
//! - [`decide`]: given the current state, a command and who issues it, the
//!   event to append — or why not ([`Rejection`]).
//! - [`evolve`]: given a state and an event, the next state.
//! - [`IncidentFold`]: every incident, folded from `incident-events` with the
//!   version rule. The write side and every projector fold with this same
//!   code, so they agree on which of two racing events counts.
//!
//! Nothing here does I/O or reads a clock: `now` comes in as an argument.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{IncidentStatus, Location, Role, Severity};
use crate::events::{
    CommentAdded, Event, EventPayload, IncidentCreated, IncidentDeleted, IncidentResolved,
    IncidentUpdated, SeverityEscalated,
};

/// Who issues a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Uuid,
    pub role: Role,
}

/// An incident as the write side knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub severity: Severity,
    pub location: Location,
    pub status: IncidentStatus,
    pub reported_by: Uuid,
    pub assigned_to: Option<Uuid>,
    pub resolved_by: Option<Uuid>,
    pub resolution: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// How many events this incident has had (1 after `incident.created`).
    pub version: u64,
    pub deleted: bool,
}

/// A title of 1 to 200 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentTitle(String);

impl IncidentTitle {
    pub fn parse(raw: &str) -> Result<Self, String> {
        bounded_text(raw, "title", 200).map(IncidentTitle)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A description of at most 5,000 characters; empty after trimming = none
/// (so an update with `""` clears it, like one with `null`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(Option<String>);

impl Description {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if has_forbidden_control(raw) {
            return Err("description must not contain control characters".into());
        }
        if raw.chars().count() > 5000 {
            return Err("description must be at most 5000 characters".into());
        }
        let text = raw.trim();
        Ok(Description((!text.is_empty()).then(|| text.to_owned())))
    }

    /// No description: what an update that clears it asks for.
    pub fn none() -> Self {
        Description(None)
    }

    pub fn into_inner(self) -> Option<String> {
        self.0
    }
}

/// How an incident was resolved: 1 to 2,000 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution(String);

impl Resolution {
    pub fn parse(raw: &str) -> Result<Self, String> {
        bounded_text(raw, "resolution", 2000).map(Resolution)
    }
}

/// A comment body: 1 to 2,000 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentBody(String);

impl CommentBody {
    pub fn parse(raw: &str) -> Result<Self, String> {
        bounded_text(raw, "body", 2000).map(CommentBody)
    }
}

/// Text as sent must have no control characters (but tabs and newlines)
/// and at most `max_chars` characters, and something other than spaces;
/// it is kept trimmed. (The rules are checked on the text as sent, so that
/// they read the same as the `pattern` and `maxLength` of the API document.)
fn bounded_text(raw: &str, field: &str, max_chars: usize) -> Result<String, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if has_forbidden_control(raw) {
        return Err(format!("{field} must not contain control characters"));
    }
    if raw.chars().count() > max_chars {
        return Err(format!("{field} must be at most {max_chars} characters"));
    }
    Ok(text.to_owned())
}

/// Control characters other than newline and tab: no text needs them, and
/// PostgreSQL cannot store NUL in a text column (a projector would stall on
/// it).
fn has_forbidden_control(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
}

/// The changes an update asks for; `None` = leave as is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentChanges {
    pub title: Option<IncidentTitle>,
    /// `Some(Description::none())` clears the description.
    pub description: Option<Description>,
    pub location: Option<Location>,
    /// OPEN or INVESTIGATING; RESOLVED only through [`IncidentCommand::Resolve`].
    pub status: Option<IncidentStatus>,
    /// `Some(None)` unassigns.
    pub assigned_to: Option<Option<Uuid>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentCommand {
    Report {
        id: Uuid,
        title: IncidentTitle,
        description: Description,
        severity: Severity,
        location: Location,
    },
    Update(IncidentChanges),
    Resolve {
        resolution: Resolution,
    },
    ChangeSeverity {
        severity: Severity,
    },
    Delete,
    AddComment {
        comment_id: Uuid,
        body: CommentBody,
    },
}

impl IncidentCommand {
    /// The command as one canonical JSON value: its kind and every field as
    /// parsed (trimmed, typed). The fingerprint of a keyed request is a hash
    /// of this and the incident it targets, and fingerprints are kept on the
    /// log, so the form of an existing command must never change.
    pub fn canonical(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            IncidentCommand::Report {
                id,
                title,
                description,
                severity,
                location,
            } => json!({
                "command": "report", "id": id, "title": title.0, "description": description.0,
                "severity": severity, "location": location,
            }),
            IncidentCommand::Update(changes) => json!({
                "command": "update",
                "title": changes.title.as_ref().map(|t| &t.0),
                "description": changes.description.as_ref().map(|d| &d.0),
                "location": changes.location,
                "status": changes.status,
                // Absent (unchanged), null (unassign) and an id are three
                // different requests.
                "assignedTo": changes.assigned_to.map(|a| json!({ "to": a })),
            }),
            IncidentCommand::Resolve { resolution } => {
                json!({ "command": "resolve", "resolution": resolution.0 })
            }
            IncidentCommand::ChangeSeverity { severity } => {
                json!({ "command": "change-severity", "severity": severity })
            }
            IncidentCommand::Delete => json!({ "command": "delete" }),
            IncidentCommand::AddComment { comment_id, body } => {
                json!({ "command": "add-comment", "commentId": comment_id, "body": body.0 })
            }
        }
    }
}

/// Why a command was refused: one variant per rule of [`decide`], each
/// with the message a person reads. Nothing is appended for a rejected
/// command. [`Rejection::rule`] names the rule for machines (and tests).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Unknown or deleted incident (every command but a report).
    #[error("incident not found")]
    NotFound,
    /// A report for an id the fold already knows (even a deleted one).
    #[error("incident {id} already exists")]
    AlreadyExists { id: Uuid },
    /// Update: the caller neither reported it nor is PREFECT or above.
    #[error("only the reporter or a PREFECT or PROFESSOR may update this incident")]
    UpdateNeedsReporterOrStaff,
    /// Update: `RESOLVED` is reached by resolving, never by an update.
    #[error("status RESOLVED is set by resolving the incident")]
    ResolvedOnlyByResolving,
    /// Update of a resolved incident: resolved is final.
    #[error("a resolved incident cannot be updated")]
    ResolvedCannotBeUpdated,
    /// Resolve: the caller neither reported it nor is PREFECT or above.
    #[error("only the reporter or a PREFECT or PROFESSOR may resolve this incident")]
    ResolveNeedsReporterOrStaff,
    /// Resolve of a resolved incident.
    #[error("the incident is already resolved")]
    AlreadyResolved,
    /// Severity change of a resolved incident, up or down.
    #[error("a resolved incident's severity cannot change")]
    ResolvedSeverityIsFinal,
    /// Lowering a severity: only PREFECT or above (anyone may raise it).
    #[error("only a PREFECT or PROFESSOR may lower a severity")]
    LoweringSeverityNeedsStaff,
    /// Delete: the caller neither reported it nor is a PROFESSOR.
    #[error("only the reporter or a PROFESSOR may delete this incident")]
    DeleteNeedsReporterOrProfessor,
}

impl Rejection {
    /// The rule that refused the command.
    pub fn rule(&self) -> Rule {
        match self {
            Rejection::NotFound => Rule::NotFound,
            Rejection::AlreadyExists { .. } => Rule::AlreadyExists,
            Rejection::UpdateNeedsReporterOrStaff => Rule::UpdateNeedsReporterOrStaff,
            Rejection::ResolvedOnlyByResolving => Rule::ResolvedOnlyByResolving,
            Rejection::ResolvedCannotBeUpdated => Rule::ResolvedCannotBeUpdated,
            Rejection::ResolveNeedsReporterOrStaff => Rule::ResolveNeedsReporterOrStaff,
            Rejection::AlreadyResolved => Rule::AlreadyResolved,
            Rejection::ResolvedSeverityIsFinal => Rule::ResolvedSeverityIsFinal,
            Rejection::LoweringSeverityNeedsStaff => Rule::LoweringSeverityNeedsStaff,
            Rejection::DeleteNeedsReporterOrProfessor => Rule::DeleteNeedsReporterOrProfessor,
        }
    }
}

/// The stable name of a rule that can refuse a command, as clients see it
/// in an error's `rule` field (`"already_resolved"`). Every [`Rejection`]
/// has one; so does the version rule of [`IncidentFold`], which voids the
/// event of a command that lost a race ([`Rule::LostRace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    NotFound,
    AlreadyExists,
    UpdateNeedsReporterOrStaff,
    ResolvedOnlyByResolving,
    ResolvedCannotBeUpdated,
    ResolveNeedsReporterOrStaff,
    AlreadyResolved,
    ResolvedSeverityIsFinal,
    LoweringSeverityNeedsStaff,
    DeleteNeedsReporterOrProfessor,
    /// Another command on the same incident reached the log first with the
    /// same version; the fold voided this command's event.
    LostRace,
}

impl Rule {
    pub const ALL: [Rule; 11] = [
        Rule::NotFound,
        Rule::AlreadyExists,
        Rule::UpdateNeedsReporterOrStaff,
        Rule::ResolvedOnlyByResolving,
        Rule::ResolvedCannotBeUpdated,
        Rule::ResolveNeedsReporterOrStaff,
        Rule::AlreadyResolved,
        Rule::ResolvedSeverityIsFinal,
        Rule::LoweringSeverityNeedsStaff,
        Rule::DeleteNeedsReporterOrProfessor,
        Rule::LostRace,
    ];

    /// The wire name, e.g. `"lowering_severity_needs_staff"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::NotFound => "not_found",
            Rule::AlreadyExists => "already_exists",
            Rule::UpdateNeedsReporterOrStaff => "update_needs_reporter_or_staff",
            Rule::ResolvedOnlyByResolving => "resolved_only_by_resolving",
            Rule::ResolvedCannotBeUpdated => "resolved_cannot_be_updated",
            Rule::ResolveNeedsReporterOrStaff => "resolve_needs_reporter_or_staff",
            Rule::AlreadyResolved => "already_resolved",
            Rule::ResolvedSeverityIsFinal => "resolved_severity_is_final",
            Rule::LoweringSeverityNeedsStaff => "lowering_severity_needs_staff",
            Rule::DeleteNeedsReporterOrProfessor => "delete_needs_reporter_or_professor",
            Rule::LostRace => "lost_race",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `decide` allows: the event to append, or nothing when the command
/// changes nothing (e.g. setting the severity it already has).
pub type Decision = Result<Option<EventPayload>, Rejection>;

/// The rules. `state` is `None` for an incident that does not exist.
pub fn decide(
    state: Option<&Incident>,
    command: IncidentCommand,
    actor: Actor,
    now: DateTime<Utc>,
) -> Decision {
    let IncidentCommand::Report {
        id,
        title,
        description,
        severity,
        location,
    } = command
    else {
        let incident = state
            .filter(|incident| !incident.deleted)
            .ok_or(Rejection::NotFound)?;
        return decide_on_existing(incident, command, actor, now);
    };
    if state.is_some() {
        return Err(Rejection::AlreadyExists { id });
    }
    Ok(Some(EventPayload::IncidentCreated(IncidentCreated {
        id,
        title: title.0,
        description: description.0,
        severity,
        location,
        status: IncidentStatus::Open,
        reported_by: actor.user_id,
        assigned_to: None,
        resolved_by: None,
        resolution: None,
        created_at: now,
        updated_at: now,
        resolved_at: None,
        version: 1,
    })))
}

fn decide_on_existing(
    incident: &Incident,
    command: IncidentCommand,
    actor: Actor,
    now: DateTime<Utc>,
) -> Decision {
    let is_reporter = incident.reported_by == actor.user_id;
    let version = incident.version + 1;
    let resolved = incident.status == IncidentStatus::Resolved;
    match command {
        IncidentCommand::Report { .. } => unreachable!("handled by decide"),
        IncidentCommand::Update(changes) => {
            if !(is_reporter || actor.role >= Role::Prefect) {
                return Err(Rejection::UpdateNeedsReporterOrStaff);
            }
            if changes.status == Some(IncidentStatus::Resolved) {
                return Err(Rejection::ResolvedOnlyByResolving);
            }
            if resolved {
                return Err(Rejection::ResolvedCannotBeUpdated);
            }
            let title = changes.title.map(|t| t.0).filter(|t| *t != incident.title);
            let description = changes
                .description
                .map(|d| d.0)
                .filter(|d| *d != incident.description);
            let location = changes.location.filter(|l| *l != incident.location);
            let status = changes.status.filter(|s| *s != incident.status);
            let assigned_to = changes.assigned_to.filter(|a| *a != incident.assigned_to);
            if title.is_none()
                && description.is_none()
                && location.is_none()
                && status.is_none()
                && assigned_to.is_none()
            {
                return Ok(None);
            }
            Ok(Some(EventPayload::IncidentUpdated(IncidentUpdated {
                id: incident.id,
                version,
                title,
                description,
                location,
                status,
                assigned_to,
            })))
        }
        IncidentCommand::Resolve { resolution } => {
            if !(is_reporter || actor.role >= Role::Prefect) {
                return Err(Rejection::ResolveNeedsReporterOrStaff);
            }
            if resolved {
                return Err(Rejection::AlreadyResolved);
            }
            Ok(Some(EventPayload::IncidentResolved(IncidentResolved {
                id: incident.id,
                version,
                resolved_by: actor.user_id,
                resolution: resolution.0,
            })))
        }
        IncidentCommand::ChangeSeverity { severity } => {
            if resolved {
                return Err(Rejection::ResolvedSeverityIsFinal);
            }
            if severity == incident.severity {
                return Ok(None);
            }
            if severity < incident.severity && actor.role < Role::Prefect {
                return Err(Rejection::LoweringSeverityNeedsStaff);
            }
            Ok(Some(EventPayload::SeverityEscalated(SeverityEscalated {
                incident_id: incident.id,
                version,
                old_severity: incident.severity,
                new_severity: severity,
            })))
        }
        IncidentCommand::Delete => {
            if !(is_reporter || actor.role >= Role::Professor) {
                return Err(Rejection::DeleteNeedsReporterOrProfessor);
            }
            Ok(Some(EventPayload::IncidentDeleted(IncidentDeleted {
                id: incident.id,
                version,
                deleted_by: actor.user_id,
            })))
        }
        IncidentCommand::AddComment { comment_id, body } => {
            // A comment commutes with every other comment: it claims no
            // version, so two people commenting at once both succeed.
            Ok(Some(EventPayload::CommentAdded(CommentAdded {
                id: comment_id,
                incident_id: incident.id,
                author_id: actor.user_id,
                body: body.0,
                created_at: now,
                version: None,
            })))
        }
    }
}

/// What an incident event claims under the version rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Claim {
    /// The incident's next version: accepted only when it is the current
    /// version + 1, so of two racing state changes exactly one wins.
    Version(u64),
    /// A comment that commutes: it takes no version and is accepted while
    /// its incident exists and is not deleted (once per event id: a copy of
    /// an accepted comment is void). It neither conflicts with other
    /// comments nor with state changes; only a delete folded before it
    /// voids it.
    Commutes,
}

/// The incident an incident event is about, and what it claims; `None`
/// for events of other topics.
pub fn incident_and_claim(payload: &EventPayload) -> Option<(Uuid, Claim)> {
    let versioned = |id, version| Some((id, Claim::Version(version)));
    match payload {
        EventPayload::IncidentCreated(e) => versioned(e.id, e.version),
        EventPayload::IncidentUpdated(e) => versioned(e.id, e.version),
        EventPayload::IncidentResolved(e) => versioned(e.id, e.version),
        EventPayload::IncidentDeleted(e) => versioned(e.id, e.version),
        EventPayload::CommentAdded(e) => Some((
            e.incident_id,
            e.version.map_or(Claim::Commutes, Claim::Version),
        )),
        EventPayload::SeverityEscalated(e) => versioned(e.incident_id, e.version),
        _ => None,
    }
}

/// The incident an incident event is about; `None` for other topics.
pub fn incident_of(payload: &EventPayload) -> Option<Uuid> {
    incident_and_claim(payload).map(|(id, _)| id)
}

/// The incident and the version an event claims, for events that claim
/// one (every incident event but a commuting comment).
pub fn incident_and_version(payload: &EventPayload) -> Option<(Uuid, u64)> {
    match incident_and_claim(payload)? {
        (id, Claim::Version(version)) => Some((id, version)),
        (_, Claim::Commutes) => None,
    }
}

/// Applies one accepted event. Callers check the version first (see
/// [`IncidentFold::apply`]); `evolve` trusts it.
pub fn evolve(
    state: Option<Incident>,
    event: &EventPayload,
    at: DateTime<Utc>,
) -> Option<Incident> {
    if let EventPayload::IncidentCreated(created) = event {
        return Some(Incident {
            id: created.id,
            title: created.title.clone(),
            description: created.description.clone(),
            severity: created.severity,
            location: created.location,
            status: created.status,
            reported_by: created.reported_by,
            assigned_to: created.assigned_to,
            resolved_by: created.resolved_by,
            resolution: created.resolution.clone(),
            created_at: created.created_at,
            updated_at: created.updated_at,
            resolved_at: created.resolved_at,
            version: created.version,
            deleted: false,
        });
    }
    let mut incident = state?;
    match event {
        EventPayload::IncidentUpdated(update) => {
            if let Some(title) = &update.title {
                incident.title = title.clone();
            }
            if let Some(description) = &update.description {
                incident.description = description.clone();
            }
            if let Some(location) = update.location {
                incident.location = location;
            }
            if let Some(status) = update.status {
                incident.status = status;
            }
            if let Some(assigned_to) = update.assigned_to {
                incident.assigned_to = assigned_to;
            }
            incident.updated_at = at;
        }
        EventPayload::IncidentResolved(resolved) => {
            incident.status = IncidentStatus::Resolved;
            incident.resolved_by = Some(resolved.resolved_by);
            incident.resolution = Some(resolved.resolution.clone());
            incident.resolved_at = Some(at);
            incident.updated_at = at;
        }
        EventPayload::IncidentDeleted(_) => {
            incident.deleted = true;
            incident.updated_at = at;
        }
        EventPayload::SeverityEscalated(change) => {
            incident.severity = change.new_severity;
            incident.updated_at = at;
        }
        EventPayload::CommentAdded(_) => {}
        _ => return Some(incident),
    }
    if let Some((_, version)) = incident_and_version(event) {
        incident.version = version;
    }
    Some(incident)
}

/// What [`IncidentFold::apply`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldOutcome {
    /// The event's version was the incident's current version + 1.
    Applied,
    /// A lost race (or a duplicate, or a replay): its version was not next,
    /// or a commuting comment found its incident deleted or itself already
    /// accepted.
    Voided,
    /// Not an incident event.
    NotAnIncidentEvent,
}

/// All incidents, folded from `incident-events` with the version rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentFold {
    incidents: HashMap<Uuid, Incident>,
    /// The event that produced each version of each incident, so a command
    /// handler can tell whether its event was the one accepted.
    accepted: HashMap<Uuid, Vec<Uuid>>,
    /// The accepted commuting comments of each incident, by event id: a
    /// copy of one is void.
    #[serde(default)]
    comments: HashMap<Uuid, HashSet<Uuid>>,
}

impl IncidentFold {
    /// Applies `event` if the version rule accepts it: a version that is
    /// the next one for its incident, or a commuting comment on an incident
    /// that exists and is not deleted (see [`Claim`]).
    pub fn apply(&mut self, event: &Event) -> FoldOutcome {
        let Some((id, claim)) = incident_and_claim(&event.payload) else {
            return FoldOutcome::NotAnIncidentEvent;
        };
        let Claim::Version(version) = claim else {
            let open = self
                .incidents
                .get(&id)
                .is_some_and(|incident| !incident.deleted);
            if !open || !self.comments.entry(id).or_default().insert(event.event_id) {
                return FoldOutcome::Voided;
            }
            return FoldOutcome::Applied;
        };
        let current = self.incidents.get(&id);
        let current_version = current.map_or(0, |incident| incident.version);
        let creates = matches!(event.payload, EventPayload::IncidentCreated(_));
        if version != current_version + 1 || creates != (current_version == 0) {
            return FoldOutcome::Voided;
        }
        let next = evolve(current.cloned(), &event.payload, event.timestamp);
        if let Some(next) = next {
            self.incidents.insert(id, next);
            self.accepted.entry(id).or_default().push(event.event_id);
        }
        FoldOutcome::Applied
    }

    pub fn get(&self, id: Uuid) -> Option<&Incident> {
        self.incidents.get(&id)
    }

    /// Whether `event_id` is the event accepted for `claim` of `incident`.
    pub fn was_accepted_as(&self, incident: Uuid, claim: Claim, event_id: Uuid) -> bool {
        match claim {
            Claim::Version(version) => self.was_accepted(incident, version, event_id),
            Claim::Commutes => self
                .comments
                .get(&incident)
                .is_some_and(|comments| comments.contains(&event_id)),
        }
    }

    /// Whether `event_id` is the event accepted as `version` of `incident`.
    pub fn was_accepted(&self, incident: Uuid, version: u64, event_id: Uuid) -> bool {
        let index = version.checked_sub(1).and_then(|v| usize::try_from(v).ok());
        index
            .and_then(|index| self.accepted.get(&incident)?.get(index))
            .is_some_and(|accepted| *accepted == event_id)
    }

    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.values()
    }

    pub fn len(&self) -> usize {
        self.incidents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.incidents.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rules_name_is_its_wire_form() {
        for rule in Rule::ALL {
            assert_eq!(
                serde_json::to_value(rule).unwrap(),
                serde_json::Value::from(rule.as_str())
            );
        }
    }
}
