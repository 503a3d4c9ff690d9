//! The web page at `/`: the files `npm run build` wrote to `web/dist`
//! (`--web-dir` / `WEB_DIR`), served as the router's fallback.
//!
//! Only paths outside the service's own prefixes reach the files: an unknown
//! `/api/...` route keeps its JSON 404, and so do unknown paths under
//! `/socket.io`, `/health`, `/metrics` and `/schemas`.

use std::io;
use std::path::Path;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::services::ServeDir;

use super::error::route_not_found;
use super::{ApiError, AppState};

/// Path prefixes that belong to the service, never to the page.
const SERVICE_PREFIXES: [&str; 5] = ["/api", "/socket.io", "/health", "/metrics", "/schemas"];

/// Whether `dir` holds a built page (its `index.html`).
pub fn page_is_built(dir: &Path) -> bool {
    dir.join("index.html").is_file()
}

/// The router's fallback: a file of the built page, or the JSON 404.
pub async fn page_or_not_found(State(state): State<AppState>, request: Request) -> Response {
    let uri = request.uri().clone();
    let is_service_path = SERVICE_PREFIXES
        .iter()
        .any(|prefix| uri.path() == *prefix || uri.path().starts_with(&format!("{prefix}/")));
    if is_service_path || !matches!(*request.method(), Method::GET | Method::HEAD) {
        return route_not_found(uri).await.into_response();
    }
    if !page_is_built(&state.web_dir) {
        return page_not_built(&state.web_dir);
    }
    match ServeDir::new(&*state.web_dir).try_call(request).await {
        Ok(response) if response.status() != StatusCode::NOT_FOUND => {
            with_cache_policy(uri.path(), response.map(Body::new))
        }
        Ok(_) => route_not_found(uri).await.into_response(),
        Err(error) if is_missing_file(&error) => route_not_found(uri).await.into_response(),
        Err(error) => ApiError::Internal(
            anyhow::Error::new(error).context(format!("Failed to serve {}", uri.path())),
        )
        .into_response(),
    }
}

/// Vite puts a content hash in every file name under `assets/`, so those can
/// be cached for good; `index.html` names the current ones and must be
/// revalidated each time.
fn with_cache_policy(path: &str, mut response: Response) -> Response {
    let policy = if path.starts_with("/assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    response
}

fn is_missing_file(error: &io::Error) -> bool {
    // ENOTDIR (20): a path that treats a file as a directory.
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
    ) || (cfg!(unix) && error.raw_os_error() == Some(20))
}

/// A plain page that says how to build the web page, instead of a bare 404.
fn page_not_built(dir: &Path) -> Response {
    let message = format!(
        "The Marauder's Map: the web page is not built ({} has no index.html).\n\
         Build it with `npm ci && npm run build` in web/ (scripts/run does this), \
         or point --web-dir / WEB_DIR at a built copy. The API works without it.\n",
        dir.display()
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}
