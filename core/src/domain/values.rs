use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A string that is not one of an enum's allowed values; names the allowed
/// ones so the message can be shown to a person as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{given}' is not a valid {kind}; expected one of {allowed}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub given: String,
    pub allowed: String,
}

/// Declares a closed enum whose wire form is SCREAMING_SNAKE_CASE, with
/// `as_str`, `ALL`, `Display`, `FromStr` and its OpenAPI schema (derived
/// from the same serde names) kept in one list so they cannot drift apart.
macro_rules! wire_enum {
    // `$wire` is a `tt`, not a `literal`: a `literal` fragment reaches derive
    // macros wrapped in an invisible group, which utoipa's derive does not
    // read as a string, so the document showed the Rust variant names.
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident => $wire:tt),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire form, e.g. `"CRITICAL"`.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(given: &str) -> Result<Self, Self::Err> {
                match given {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(UnknownValue {
                        kind: $kind,
                        given: given.to_owned(),
                        allowed: [$($wire),+].join(", "),
                    }),
                }
            }
        }
    };
}

wire_enum! {
    /// How bad an incident is. Ordered: `LOW < MEDIUM < HIGH < CRITICAL`, so
    /// "raising" and "lowering" a severity are plain comparisons.
    Severity, "severity" {
        Low => "LOW",
        Medium => "MEDIUM",
        High => "HIGH",
        Critical => "CRITICAL",
    }
}

wire_enum! {
    /// Where an incident is in its life. `RESOLVED` is reached only through
    /// the resolve command, never by an update.
    IncidentStatus, "status" {
        Open => "OPEN",
        Investigating => "INVESTIGATING",
        Resolved => "RESOLVED",
    }
}

wire_enum! {
    /// The fixed set of places on the map where an incident can happen.
    Location, "location" {
        GreatHall => "GREAT_HALL",
        ForbiddenForest => "FORBIDDEN_FOREST",
        RoomOfRequirement => "ROOM_OF_REQUIREMENT",
        Dungeons => "DUNGEONS",
        AstronomyTower => "ASTRONOMY_TOWER",
        Library => "LIBRARY",
        Hogsmeade => "HOGSMEADE",
        GryffindorTower => "GRYFFINDOR_TOWER",
        QuidditchPitch => "QUIDDITCH_PITCH",
        HospitalWing => "HOSPITAL_WING",
        BlackLake => "BLACK_LAKE",
        Owlery => "OWLERY",
    }
}

wire_enum! {
    /// What a user may do. Ordered by privilege: `STUDENT < PREFECT <
    /// PROFESSOR`, so "PREFECT or above" is `role >= Role::Prefect`.
    Role, "role" {
        Student => "STUDENT",
        Prefect => "PREFECT",
        Professor => "PROFESSOR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms_round_trip_through_from_str_and_serde() {
        for severity in Severity::ALL {
            assert_eq!(severity.as_str().parse::<Severity>().unwrap(), *severity);
            let json = serde_json::to_string(severity).unwrap();
            assert_eq!(json, format!("\"{}\"", severity.as_str()));
        }
        for location in Location::ALL {
            assert_eq!(location.as_str().parse::<Location>().unwrap(), *location);
        }
    }

    #[test]
    fn unknown_value_names_the_allowed_ones() {
        let error = "PURPLE".parse::<Severity>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "'PURPLE' is not a valid severity; expected one of LOW, MEDIUM, HIGH, CRITICAL"
        );
        assert!(
            "low".parse::<Severity>().is_err(),
            "wire forms are case-sensitive"
        );
    }

    #[test]
    fn severities_and_roles_are_ordered_by_weight() {
        assert!(Severity::Low < Severity::Critical);
        assert!(Role::Professor >= Role::Prefect);
        assert!(Role::Student < Role::Prefect);
    }

    #[test]
    fn the_seed_locations_are_all_on_the_map() {
        for wire in [
            "GREAT_HALL",
            "FORBIDDEN_FOREST",
            "ROOM_OF_REQUIREMENT",
            "DUNGEONS",
            "ASTRONOMY_TOWER",
            "LIBRARY",
            "HOGSMEADE",
        ] {
            assert!(wire.parse::<Location>().is_ok(), "{wire} missing");
        }
    }
}
