//! Events as today's code writes them, for tests and benches that write the
//! log directly instead of going through the API.

use chrono::Utc;
use marauders_map::domain::{IncidentStatus, Location, Severity};
use marauders_map::events::{
    CommentAdded, Event, EventPayload, IncidentCreated, IncidentDeleted, UserJoinedRoom,
    UserLoggedOut,
};
use uuid::Uuid;

/// An `incident.created` event (version 1, LOW, in the LIBRARY) as the
/// write side would append it.
pub fn incident_created(id: Uuid, reported_by: Uuid, title: &str) -> Event {
    let now = Utc::now();
    Event::new(
        EventPayload::IncidentCreated(IncidentCreated {
            id,
            title: title.to_owned(),
            description: None,
            severity: Severity::Low,
            location: Location::Library,
            status: IncidentStatus::Open,
            reported_by,
            assigned_to: None,
            resolved_by: None,
            resolution: None,
            created_at: now,
            updated_at: now,
            resolved_at: None,
            version: 1,
        }),
        None,
    )
}

/// A `comment.added` event claiming `version` of `incident`, as comments
/// were before they commuted (the version rule still applies to these).
pub fn comment_added(incident: Uuid, author: Uuid, version: u64, body: &str) -> Event {
    Event::new(
        EventPayload::CommentAdded(CommentAdded {
            id: Uuid::now_v7(),
            incident_id: incident,
            author_id: author,
            body: body.to_owned(),
            created_at: Utc::now(),
            version: Some(version),
        }),
        None,
    )
}

/// A `comment.added` event as comments are decided today: it commutes,
/// claiming no version.
pub fn commuting_comment(incident: Uuid, author: Uuid, body: &str) -> Event {
    let mut event = comment_added(incident, author, 0, body);
    if let EventPayload::CommentAdded(comment) = &mut event.payload {
        comment.version = None;
    }
    event
}

/// An `incident.deleted` event claiming `version` of `incident`.
pub fn incident_deleted(incident: Uuid, deleted_by: Uuid, version: u64) -> Event {
    Event::new(
        EventPayload::IncidentDeleted(IncidentDeleted {
            id: incident,
            version,
            deleted_by,
        }),
        None,
    )
}

/// A `user.logged_out` event of a new user (an `auth-events` event that is
/// not an incident event).
pub fn user_logged_out() -> Event {
    Event::new(
        EventPayload::UserLoggedOut(UserLoggedOut {
            user_id: Uuid::now_v7(),
        }),
        None,
    )
}

/// A `user.joined_room` event of a new user (a `presence-events` event).
pub fn user_joined_room(room: &str) -> Event {
    Event::new(
        EventPayload::UserJoinedRoom(UserJoinedRoom {
            user_id: Uuid::now_v7(),
            room: room.to_owned(),
        }),
        None,
    )
}
