//! What a request to the service answered, typed: status, JSON body,
//! `Event-Offset`, headers — with assertions that show the body when they
//! fail.

use marauders_map::incident::{Rejection, Rule};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use uuid::Uuid;

/// One answer from the service.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// What was asked, e.g. `PATCH /api/incidents/…/resolve` (for messages).
    pub request: String,
    pub status: StatusCode,
    /// The body as JSON; `null` when empty.
    pub body: Value,
    /// The `Event-Offset` header of a command: where its event is on
    /// `incident-events` (a query's `minOffset`).
    pub offset: Option<u64>,
    pub headers: HeaderMap,
}

impl ApiResponse {
    pub(crate) async fn read(request: String, response: reqwest::Response) -> ApiResponse {
        let status = response.status();
        let headers = response.headers().clone();
        let offset = headers.get("Event-Offset").map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or_else(|| panic!("{request}: Event-Offset {value:?} is not a number"))
        });
        let bytes = response.bytes().await.expect("the body is read");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{request}: status {status}, body is not JSON: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        ApiResponse {
            request,
            status,
            body,
            offset,
            headers,
        }
    }

    /// Fails the test, showing the body, unless the status is `expected`.
    #[track_caller]
    pub fn assert_status(self, expected: u16) -> ApiResponse {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "{}: expected {expected}, got {}: {}",
            self.request,
            self.status,
            self.body
        );
        self
    }

    /// Fails the test unless this is the JSON error `{"error": {"code"}}`
    /// with `status` and `code`.
    #[track_caller]
    pub fn assert_error(self, status: u16, code: &str) -> ApiResponse {
        let response = self.assert_status(status);
        assert_eq!(
            response.error_code(),
            code,
            "{}: {}",
            response.request,
            response.body
        );
        response
    }

    /// Fails the test unless the domain refused the command with
    /// `rejection`: `status`, the rule's name in `rule`, its message.
    #[track_caller]
    pub fn assert_rejected(self, status: u16, rejection: Rejection) -> ApiResponse {
        let response = self.assert_rule(status, rejection.rule());
        assert_eq!(
            response.error_message(),
            rejection.to_string(),
            "{}: {}",
            response.request,
            response.body
        );
        response
    }

    /// Fails the test unless the answer is `status` with `rule` named in
    /// the error (a [`Rejection`]'s rule, or [`Rule::LostRace`]).
    #[track_caller]
    pub fn assert_rule(self, status: u16, rule: Rule) -> ApiResponse {
        let response = self.assert_status(status);
        assert_eq!(
            response.body["error"]["rule"].as_str(),
            Some(rule.as_str()),
            "{}: {}",
            response.request,
            response.body
        );
        response
    }

    /// `error.code` of an error body.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// `error.message` of an error body.
    pub fn error_message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }

    /// What `error.fields` says about `field`, if anything.
    pub fn field_error(&self, field: &str) -> Option<&str> {
        self.body["error"]["fields"][field].as_str()
    }

    /// The `id` of the body (an incident, a comment, a user…).
    ///
    /// # Panics
    ///
    /// When there is none.
    #[track_caller]
    pub fn id(&self) -> Uuid {
        self.body["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("{}: no id in {}", self.request, self.body))
    }

    /// The `Event-Offset` of a command that appended an event.
    ///
    /// # Panics
    ///
    /// When the header is missing.
    #[track_caller]
    pub fn event_offset(&self) -> u64 {
        self.offset
            .unwrap_or_else(|| panic!("{}: no Event-Offset header ({})", self.request, self.status))
    }

    /// `items` of a page.
    ///
    /// # Panics
    ///
    /// When the body has none.
    #[track_caller]
    pub fn items(&self) -> &Vec<Value> {
        self.body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no items in {}", self.request, self.body))
    }

    /// The string field `name` of each of `items`.
    pub fn item_strings(&self, name: &str) -> Vec<&str> {
        self.items()
            .iter()
            .map(|item| item[name].as_str().unwrap_or_default())
            .collect()
    }
}

/// Who a request is sent as: a [`crate::TestUser`], or a raw access token
/// (forged, expired…) as a `&str`.
pub trait Bearer {
    fn access_token(&self) -> &str;
}

impl Bearer for str {
    fn access_token(&self) -> &str {
        self
    }
}

impl Bearer for String {
    fn access_token(&self) -> &str {
        self
    }
}
