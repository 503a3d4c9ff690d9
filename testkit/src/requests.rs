//! Request bodies the harness sends, with valid defaults a test changes
//! only where it matters.

use marauders_map::domain::{Location, Severity};
use serde_json::{Value, json};

/// The body of `POST /api/incidents`. `ReportIncident::new("Troll")` is a
/// MEDIUM incident in the LIBRARY without a description.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportIncident {
    pub title: String,
    pub description: Option<String>,
    pub severity: Severity,
    pub location: Location,
}

impl ReportIncident {
    pub fn new(title: &str) -> ReportIncident {
        ReportIncident {
            title: title.to_owned(),
            description: None,
            severity: Severity::Medium,
            location: Location::Library,
        }
    }

    pub fn severity(self, severity: Severity) -> ReportIncident {
        ReportIncident { severity, ..self }
    }

    pub fn location(self, location: Location) -> ReportIncident {
        ReportIncident { location, ..self }
    }

    pub fn description(self, description: &str) -> ReportIncident {
        ReportIncident {
            description: Some(description.to_owned()),
            ..self
        }
    }
}

impl From<ReportIncident> for Value {
    fn from(report: ReportIncident) -> Value {
        let mut body = json!({
            "title": report.title,
            "severity": report.severity,
            "location": report.location,
        });
        if let Some(description) = report.description {
            body["description"] = description.into();
        }
        body
    }
}
