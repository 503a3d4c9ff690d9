//! Idempotency keys, and the ids derived from them.
//!
//! A client that cannot tell whether its command took effect (the answer
//! was lost, the service crashed, the log timed out) retries it with the
//! same `Idempotency-Key`. For that retry to take effect at most once, the
//! retry must be *recognisable*, and the simplest way to make it so is to
//! derive every id the command creates from the key:
//!
//! - the incident a report creates, and the comment a comment creates, from
//!   (user, key) — so a retry names the same incident or comment;
//! - the event id from (user, key, incident, the version it was decided at)
//!   — so a late-landing original and a retry decided on the same state are
//!   *the same event*, and the version rule lets only one copy count.
//!
//! Derived ids are UUIDv5 (name-based, SHA-1): they carry no time, so
//! nothing may sort by them to mean "newest first".

use std::fmt;

use uuid::Uuid;

use crate::incident::Claim;

/// The longest key accepted, after unquoting.
pub const MAX_KEY_LENGTH: usize = 255;

/// A client's idempotency key: 1 to 255 visible ASCII characters, from the
/// `Idempotency-Key` header (plain, or as the IETF draft's quoted string).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses a header value: either a plain token (`abc-123`) or a
    /// structured-field string as the draft writes it (`"abc-123"`, with
    /// `\"` and `\\` escapes). Either way the key is what is between the
    /// quotes, and it must be 1–255 visible ASCII characters.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let key = match raw.strip_prefix('"') {
            Some(rest) => unquote(rest)?,
            None => raw.to_owned(),
        };
        if key.is_empty() {
            return Err("must not be empty".into());
        }
        if key.len() > MAX_KEY_LENGTH {
            return Err(format!("must be at most {MAX_KEY_LENGTH} characters"));
        }
        if !key.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(
                "must be visible ASCII characters (no spaces or control characters)".into(),
            );
        }
        Ok(IdempotencyKey(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The body of an sf-string after its opening quote: up to the closing
/// quote, which must end the value.
fn unquote(rest: &str) -> Result<String, String> {
    let mut key = String::new();
    let mut chars = rest.chars();
    loop {
        match chars.next() {
            None => return Err("has an opening quote but no closing one".into()),
            Some('"') => break,
            Some('\\') => match chars.next() {
                Some(escaped @ ('"' | '\\')) => key.push(escaped),
                _ => return Err("may escape only '\"' and '\\' inside quotes".into()),
            },
            Some(other) => key.push(other),
        }
    }
    if chars.next().is_some() {
        return Err("must end at its closing quote".into());
    }
    Ok(key)
}

// Fixed namespaces, one per kind of derived id: the same (user, key) names
// an incident and a comment that are different things. Never change them —
// ids already on the log were derived with them.
const INCIDENT_NAMESPACE: Uuid = Uuid::from_u128(0x6d61_7261_7564_6572_0001_0000_0000_0001);
const COMMENT_NAMESPACE: Uuid = Uuid::from_u128(0x6d61_7261_7564_6572_0001_0000_0000_0002);
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x6d61_7261_7564_6572_0001_0000_0000_0003);

/// `user` followed by the key's bytes: the name both of them identify.
/// The user id has a fixed length, so no two (user, key) pairs collide.
fn name_of(user: Uuid, key: &IdempotencyKey) -> Vec<u8> {
    let mut name = Vec::with_capacity(16 + key.0.len());
    name.extend_from_slice(user.as_bytes());
    name.extend_from_slice(key.0.as_bytes());
    name
}

/// The id of the incident a report with this key creates.
pub fn derived_incident_id(user: Uuid, key: &IdempotencyKey) -> Uuid {
    Uuid::new_v5(&INCIDENT_NAMESPACE, &name_of(user, key))
}

/// The id of the comment a comment command with this key creates.
pub fn derived_comment_id(user: Uuid, key: &IdempotencyKey) -> Uuid {
    Uuid::new_v5(&COMMENT_NAMESPACE, &name_of(user, key))
}

/// The id of the event a keyed command appends when decided on `incident`
/// with `claim` (the version the event claims, or none for a commuting
/// comment). The incident is part of the name so that one key reused on two
/// incidents can never yield one event id for two different events.
pub fn derived_event_id(user: Uuid, key: &IdempotencyKey, incident: Uuid, claim: Claim) -> Uuid {
    let mut name = name_of(user, key);
    name.extend_from_slice(incident.as_bytes());
    // A commuting comment's name is shorter than any versioned event's: the
    // two can never share an id.
    if let Claim::Version(version) = claim {
        name.extend_from_slice(&version.to_be_bytes());
    }
    Uuid::new_v5(&EVENT_NAMESPACE, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_token_and_its_quoted_form_are_the_same_key() {
        let plain = IdempotencyKey::parse("8e03978e-40d5-43e8-bc93-6894a57f9324").unwrap();
        let quoted = IdempotencyKey::parse("\"8e03978e-40d5-43e8-bc93-6894a57f9324\"").unwrap();
        assert_eq!(plain, quoted);
        assert_eq!(
            IdempotencyKey::parse(r#""a\"b\\c""#).unwrap().as_str(),
            r#"a"b\c"#
        );
    }

    #[test]
    fn empty_long_and_invisible_keys_are_refused() {
        for bad in [
            "",
            "\"\"",
            "has space",
            "tab\there",
            "é",
            "\"open",
            "\"a\"b",
        ] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }

    #[test]
    fn derived_ids_depend_on_user_key_and_kind_and_never_on_time() {
        let (harry, ron) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let key = IdempotencyKey::parse("k-1").unwrap();
        let other = IdempotencyKey::parse("k-2").unwrap();
        assert_eq!(
            derived_incident_id(harry, &key),
            derived_incident_id(harry, &key)
        );
        assert_ne!(
            derived_incident_id(harry, &key),
            derived_incident_id(ron, &key)
        );
        assert_ne!(
            derived_incident_id(harry, &key),
            derived_incident_id(harry, &other)
        );
        assert_ne!(
            derived_incident_id(harry, &key),
            derived_comment_id(harry, &key)
        );
        let incident = derived_incident_id(harry, &key);
        assert_ne!(
            derived_event_id(harry, &key, incident, Claim::Version(1)),
            derived_event_id(harry, &key, incident, Claim::Version(2))
        );
        assert_ne!(
            derived_event_id(harry, &key, incident, Claim::Version(2)),
            derived_event_id(harry, &key, Uuid::from_u128(9), Claim::Version(2))
        );
        assert_eq!(derived_incident_id(harry, &key).get_version_num(), 5);
    }
}
