//! Every projection, in one closed list: running, rebuilding, status and
//! metrics all walk [`Projection::ALL`] and reach the projector through
//! [`Projection::visit`], the one `match` over it. Adding a projector is one
//! variant here, and the compiler points at the one arm to add.

use std::fmt;

use marauders_core::log::Topic;

use crate::audit::AuditProjector;
use crate::notifications::NotificationsProjector;
use crate::read_model::ReadModelProjector;
use crate::runtime::Projector;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Projection {
    ReadModel,
    Notifications,
    Audit,
}

/// Something to do with a projector, whichever it is (run it, rebuild it):
/// the generic half of [`Projection::visit`].
pub trait ProjectorVisitor {
    type Output;

    fn visit<P: Projector + 'static>(self, projector: P) -> Self::Output;
}

/// An unknown projection name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no projection named '{name}'; expected one of {}", Projection::names().join(", "))]
pub struct UnknownProjection {
    pub name: String,
}

impl Projection {
    pub const ALL: [Projection; 3] = [
        Projection::ReadModel,
        Projection::Notifications,
        Projection::Audit,
    ];

    /// Hands this projection's projector to `visitor`.
    pub fn visit<V: ProjectorVisitor>(self, visitor: V) -> V::Output {
        match self {
            Projection::ReadModel => visitor.visit(ReadModelProjector),
            Projection::Notifications => visitor.visit(NotificationsProjector),
            Projection::Audit => visitor.visit(AuditProjector),
        }
    }

    /// Its public name, under which its offset and bookkeeping are stored.
    pub fn name(self) -> &'static str {
        struct Name;
        impl ProjectorVisitor for Name {
            type Output = &'static str;
            fn visit<P: Projector + 'static>(self, projector: P) -> &'static str {
                projector.name()
            }
        }
        self.visit(Name)
    }

    pub fn topic(self) -> Topic {
        struct TopicOf;
        impl ProjectorVisitor for TopicOf {
            type Output = Topic;
            fn visit<P: Projector + 'static>(self, projector: P) -> Topic {
                projector.topic()
            }
        }
        self.visit(TopicOf)
    }

    pub fn names() -> Vec<&'static str> {
        Projection::ALL
            .iter()
            .map(|projection| projection.name())
            .collect()
    }

    pub fn find(name: &str) -> Result<Projection, UnknownProjection> {
        Projection::ALL
            .into_iter()
            .find(|projection| projection.name() == name)
            .ok_or_else(|| UnknownProjection {
                name: name.to_owned(),
            })
    }
}

impl fmt::Display for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_projection_is_found_by_its_own_name_and_names_are_unique() {
        for projection in Projection::ALL {
            assert_eq!(Projection::find(projection.name()), Ok(projection));
        }
        let mut names = Projection::names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Projection::ALL.len());
    }

    #[test]
    fn an_unknown_name_is_an_error_that_lists_the_known_ones() {
        let error = Projection::find("horcruxes").unwrap_err();
        assert_eq!(
            error.to_string(),
            "no projection named 'horcruxes'; expected one of read-model, notifications, audit"
        );
    }
}
