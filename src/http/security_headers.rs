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
//! One exception: Swagger UI (`/api/docs`) injects a `<style>` element of
//! its own at run time, so its pages — and only they — allow inline
//! *styles*. Inline script stays forbidden there too.
//!
//! Socket.IO answers from its own layer, outside the router: its responses
//! are not documents, and the policy above is what governs the page's
//! connection to it.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use super::openapi::DOCS_PATH;

/// The policy of the page, the API and everything else the router serves.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The same for Swagger UI, with inline styles allowed (see above).
pub const DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const OTHER_HEADERS: [(HeaderName, &str); 2] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// Middleware (`axum::middleware::from_fn`): adds the headers.
pub async fn add_security_headers(request: Request, next: Next) -> Response {
    let policy = if is_docs_path(request.uri().path()) {
        DOCS_CONTENT_SECURITY_POLICY
    } else {
        CONTENT_SECURITY_POLICY
    };
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    for (name, value) in OTHER_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn is_docs_path(path: &str) -> bool {
    path.strip_prefix(DOCS_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_swagger_ui_may_use_inline_styles_and_nothing_may_use_inline_script() {
        assert!(is_docs_path("/api/docs") && is_docs_path("/api/docs/index.css"));
        assert!(
            !is_docs_path("/api/docsx") && !is_docs_path("/") && !is_docs_path("/api/incidents")
        );
        for policy in [CONTENT_SECURITY_POLICY, DOCS_CONTENT_SECURITY_POLICY] {
            assert!(policy.contains("script-src 'self';"));
            assert!(policy.contains("frame-ancestors 'none'"));
            assert!(!policy.contains("unsafe-eval"));
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
    }
}
