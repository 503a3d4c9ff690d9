use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::catalog::{EventPayload, EventType};
use crate::log::{LogMessage, Topic};

/// The `source` of every event this service writes (the seed's value).
pub const EVENT_SOURCE: &str = "gryffindor-api";

/// JSON Schema (draft 2020-12) of the envelope, served by the API so clients
/// can validate what they receive.
pub const ENVELOPE_JSON_SCHEMA: &str = include_str!("event-envelope.schema.json");

/// The envelope exactly as it travels on the log: `data` is still untyped
/// JSON. Use [`Event::decode`] to get a typed [`Event`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventEnvelope {
    pub event_id: Uuid,
    pub event_type: String,
    pub timestamp: DateTime<Utc>,
    pub source: String,
    /// Who caused the event; `null` only for events no user caused (e.g. a
    /// role change made from the command line).
    pub user_id: Option<Uuid>,
    pub data: serde_json::Value,
    /// Only on events a command with an `Idempotency-Key` appended: the key
    /// and a fingerprint of the request, so that a retry with the same key
    /// is recognised — and one with another request refused — by any
    /// instance, after any restart. Absent on every other event (and on
    /// every event written before keys existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<IdempotencyRecord>,
}

/// The request a keyed command's event answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdempotencyRecord {
    /// The client's `Idempotency-Key`, unquoted.
    pub key: String,
    /// `sha256:<hex>` of the command as parsed (its kind, its incident and
    /// every field), so the same key with another request is told apart.
    pub fingerprint: String,
}

/// A decoded event: envelope metadata plus a typed payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// A UUIDv7, so ids sort by creation time; also the message id on the
    /// log, which consumers use to recognise an event they have seen.
    pub event_id: Uuid,
    /// When the event was created, in UTC, truncated to microseconds so it
    /// survives a round trip through PostgreSQL unchanged.
    pub timestamp: DateTime<Utc>,
    pub source: String,
    pub user_id: Option<Uuid>,
    pub payload: EventPayload,
    /// See [`EventEnvelope::idempotency`].
    pub idempotency: Option<IdempotencyRecord>,
}

/// Why bytes from the log are not a valid event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a JSON event envelope: {0}")]
    NotAnEnvelope(#[source] serde_json::Error),
    #[error("unknown event type '{0}'")]
    UnknownEventType(String),
    #[error("malformed data for {event_type}: {source}")]
    MalformedData {
        event_type: EventType,
        #[source]
        source: serde_json::Error,
    },
}

impl Event {
    /// Wraps a payload in a fresh envelope: a new UUIDv7, the current time,
    /// the service's source. The seed's `createEventEnvelopeForPublishing`.
    pub fn new(payload: EventPayload, user_id: Option<Uuid>) -> Self {
        Event::at(Uuid::now_v7(), Utc::now(), payload, user_id)
    }

    /// An event with a given id and time: a command's event carries the
    /// `now` its decision saw (one clock per command) and, with an
    /// idempotency key, an id derived from it.
    pub fn at(
        event_id: Uuid,
        timestamp: DateTime<Utc>,
        payload: EventPayload,
        user_id: Option<Uuid>,
    ) -> Self {
        Event {
            event_id,
            timestamp: timestamp.trunc_subsecs(6),
            source: EVENT_SOURCE.to_owned(),
            user_id,
            payload,
            idempotency: None,
        }
    }

    /// The same event, marked as the answer to a keyed request.
    pub fn with_idempotency(mut self, record: IdempotencyRecord) -> Self {
        self.idempotency = Some(record);
        self
    }

    pub fn event_type(&self) -> EventType {
        self.payload.event_type()
    }

    /// The topic this event belongs on; fixed by its type.
    pub fn topic(&self) -> Topic {
        self.event_type().topic()
    }

    pub fn to_envelope(&self) -> EventEnvelope {
        EventEnvelope {
            event_id: self.event_id,
            event_type: self.event_type().as_str().to_owned(),
            timestamp: self.timestamp,
            source: self.source.clone(),
            user_id: self.user_id,
            data: self.payload.to_data(),
            idempotency: self.idempotency.clone(),
        }
    }

    /// The JSON bytes written to the log.
    pub fn encode(&self) -> Bytes {
        // Serializing plain structs of strings, numbers and ids cannot fail.
        Bytes::from(serde_json::to_vec(&self.to_envelope()).expect("events serialize to JSON"))
    }

    /// The message to append: the event's id doubles as the log message id.
    pub fn to_log_message(&self) -> LogMessage {
        LogMessage {
            id: self.event_id,
            payload: self.encode(),
        }
    }

    /// Decodes bytes read from the log. Never panics: anything that is not a
    /// well-formed event of a known type is a [`DecodeError`].
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        let envelope: EventEnvelope =
            serde_json::from_slice(bytes).map_err(DecodeError::NotAnEnvelope)?;
        Event::try_from(envelope)
    }
}

impl TryFrom<EventEnvelope> for Event {
    type Error = DecodeError;

    fn try_from(envelope: EventEnvelope) -> Result<Self, Self::Error> {
        let event_type: EventType = envelope
            .event_type
            .parse()
            .map_err(|_| DecodeError::UnknownEventType(envelope.event_type.clone()))?;
        let payload = EventPayload::from_data(event_type, envelope.data)?;
        Ok(Event {
            event_id: envelope.event_id,
            timestamp: envelope.timestamp,
            source: envelope.source,
            user_id: envelope.user_id,
            payload,
            idempotency: envelope.idempotency,
        })
    }
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_envelope().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let envelope = EventEnvelope::deserialize(deserializer)?;
        Event::try_from(envelope).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    //! The seed's envelope tests (`event-envelope.test.js`).
    use super::*;
    use crate::domain::{Role, Severity};
    use crate::events::{SeverityEscalated, UserConnected};

    fn sample_payload() -> EventPayload {
        EventPayload::SeverityEscalated(SeverityEscalated {
            incident_id: Uuid::now_v7(),
            version: 2,
            old_severity: Severity::Low,
            new_severity: Severity::Critical,
        })
    }

    #[test]
    fn should_create_envelope_with_required_fields() {
        let user = Uuid::now_v7();
        let json = serde_json::to_value(Event::new(sample_payload(), Some(user))).unwrap();
        let object = json.as_object().unwrap();
        for field in [
            "eventId",
            "eventType",
            "timestamp",
            "source",
            "userId",
            "data",
        ] {
            assert!(object.contains_key(field), "missing {field} in {json}");
        }
        assert_eq!(
            object.len(),
            6,
            "no fields beyond the envelope's (the optional `idempotency` only on keyed commands): {json}"
        );
        assert_eq!(json["eventType"], "severity.escalated");
        assert_eq!(json["userId"], user.to_string());
    }

    #[test]
    fn should_generate_unique_event_id_each_call() {
        let first = Event::new(sample_payload(), None);
        let second = Event::new(sample_payload(), None);
        assert_ne!(first.event_id, second.event_id);
        assert_eq!(first.event_id.get_version_num(), 7, "event ids are UUIDv7");
    }

    #[test]
    fn should_set_timestamp_to_current_utc_time() {
        let event = Event::new(sample_payload(), None);
        let age = Utc::now() - event.timestamp;
        assert!(age >= chrono::Duration::zero() && age < chrono::Duration::seconds(1));
        let json = serde_json::to_value(&event).unwrap();
        let text = json["timestamp"].as_str().unwrap();
        assert!(text.ends_with('Z'), "RFC 3339 in UTC: {text}");
        assert_eq!(DateTime::parse_from_rfc3339(text).unwrap(), event.timestamp);
    }

    #[test]
    fn should_set_source_to_gryffindor_api_always() {
        for payload in [sample_payload(), sample_payload()] {
            assert_eq!(Event::new(payload, None).source, "gryffindor-api");
        }
    }

    #[test]
    fn should_preserve_original_data_payload_exactly() {
        let connection_id = Uuid::new_v4();
        let payload = EventPayload::UserConnected(UserConnected {
            user_id: Uuid::now_v7(),
            connection_id,
            role: Role::Prefect,
        });
        let event = Event::new(payload.clone(), None);
        let decoded = Event::decode(&event.encode()).unwrap();
        assert_eq!(decoded, event);
        assert_eq!(decoded.payload, payload);
        assert_eq!(
            event.to_envelope().data,
            serde_json::json!({
                "userId": payload_user(&payload),
                "connectionId": connection_id,
                "role": "PREFECT"
            })
        );
    }

    fn payload_user(payload: &EventPayload) -> String {
        match payload {
            EventPayload::UserConnected(connected) => connected.user_id.to_string(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn bytes_that_are_not_json_decode_to_an_error() {
        let error = Event::decode(b"\xff not json").unwrap_err();
        assert!(matches!(error, DecodeError::NotAnEnvelope(_)), "{error}");
    }

    #[test]
    fn an_unknown_event_type_is_named_in_the_error() {
        let mut envelope = Event::new(sample_payload(), None).to_envelope();
        envelope.event_type = "incident.teleported".into();
        let bytes = serde_json::to_vec(&envelope).unwrap();
        let error = Event::decode(&bytes).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown event type 'incident.teleported'"
        );
    }

    #[test]
    fn data_missing_a_field_is_malformed_not_a_panic() {
        let mut envelope = Event::new(sample_payload(), None).to_envelope();
        envelope.data.as_object_mut().unwrap().remove("newSeverity");
        let error = Event::decode(&serde_json::to_vec(&envelope).unwrap()).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("malformed data for severity.escalated"),
            "{error}"
        );
    }

    #[test]
    fn the_envelope_schema_is_valid_json_naming_every_field() {
        let schema: serde_json::Value = serde_json::from_str(ENVELOPE_JSON_SCHEMA).unwrap();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            required,
            [
                "eventId",
                "eventType",
                "timestamp",
                "source",
                "userId",
                "data"
            ]
        );
        let types: Vec<&str> = schema["properties"]["eventType"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let catalog: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(types, catalog, "the schema lists exactly the catalog");
    }
}
