//! Security headers on every response of the router — the page, its files,
//! the API and Swagger UI:
//!
//! - `Content-Security-Policy`: scripts, styles, connections (`fetch` and
//!   the Socket.IO WebSocket) and fonts only from this origin, no inline
//!   script or style, images also as `data:` URLs (the page's favicon and
//!   Swagger UI's icons are), no plugins, no `<base>`, and no framing by
//!   anyone (`frame-ancestors 'none'`, against clickjacking).
//! - `X-Content-Type-Options: nosniff`: a response is only ever what its
//!   `Content-Type` says (a JSON error is never run as a script).
//! - `Referrer-Policy: no-referrer`: URLs (incident ids) do not leak to
//!   other sites.
//!
//! Socket.IO answers from its own layer, outside the router: its responses
//! are not documents, and the policy above is what governs the page's
//! connection to it.

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const HEADERS: [(HeaderName, &str); 3] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// Middleware (`axum::middleware::map_response`): adds the headers.
pub async fn add_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
