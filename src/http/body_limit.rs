//! Request bodies over [`MAX_BODY_BYTES`] get the JSON 413 as a response
//! the client can actually read.
//!
//! Answering while the client is still sending is not enough: the server
//! then closes a socket with unread data in it, the kernel answers with a
//! reset, and a client busy writing its body (Node's `fetch`, reqwest)
//! usually sees "connection reset" instead of the 413. So:
//!
//! - a client that waits for `Expect: 100-continue` is refused before it
//!   sends anything;
//! - otherwise the body is read and thrown away, up to [`DRAIN_LIMIT_BYTES`]
//!   and for at most [`DRAIN_TIME_LIMIT`], and the 413 follows; the
//!   connection stays usable when the whole body was read;
//! - a body larger than that, or slower, is answered after the limit and
//!   the connection closed: that client may see a reset, and that is
//!   deliberate — the server does not read unbounded data to be polite.
//!
//! Bodies of declared length within the limit pass untouched (the
//! extractors read them whole); chunked bodies of unknown length are read
//! here up to the limit first.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::ApiError;

/// The largest request body accepted (413 beyond it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How much of an oversized body is read (and discarded) so the client can
/// read the 413.
pub const DRAIN_LIMIT_BYTES: usize = 8 * 1024 * 1024;
/// How long reading an oversized body may take before the 413 is sent
/// regardless.
pub const DRAIN_TIME_LIMIT: Duration = Duration::from_secs(5);

/// Middleware: see the module documentation.
pub async fn limit_request_body(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let chunked = headers
        .get(header::TRANSFER_ENCODING)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"chunked"));
    match declared {
        Some(length) if length > MAX_BODY_BYTES as u64 => {
            let waits_for_continue = request
                .headers()
                .get(header::EXPECT)
                .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            if waits_for_continue {
                // Hyper sends `100 Continue` only once the body is read,
                // which it never is: the client sends nothing.
                return too_large(false);
            }
            let drained = drain(request.into_body()).await;
            too_large(drained)
        }
        None if chunked => {
            let (parts, body) = request.into_parts();
            match read_within_limit(body).await {
                Ok(bytes) => {
                    next.run(Request::from_parts(parts, Body::from(bytes)))
                        .await
                }
                Err(Oversized(rest)) => too_large(drain(rest).await),
                Err(Unreadable) => {
                    ApiError::bad_request("the request body could not be read").into_response()
                }
            }
        }
        _ => next.run(request).await,
    }
}

enum ReadError {
    /// Over the limit: the rest of the body.
    Oversized(Body),
    Unreadable,
}
use ReadError::{Oversized, Unreadable};

async fn read_within_limit(body: Body) -> Result<Bytes, ReadError> {
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Unreadable)?;
        buffer.extend_from_slice(&chunk);
        if buffer.len() > MAX_BODY_BYTES {
            return Err(Oversized(Body::from_stream(stream)));
        }
    }
    Ok(buffer.into())
}

/// Reads and discards `body` within the drain limits; `true` when it was
/// read to its end (the connection can then be kept).
async fn drain(body: Body) -> bool {
    let mut stream = body.into_data_stream();
    let mut total = 0;
    let to_the_end = async {
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { return false };
            total += chunk.len();
            if total > DRAIN_LIMIT_BYTES {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME_LIMIT, to_the_end)
        .await
        .unwrap_or(false)
}

fn too_large(body_fully_read: bool) -> Response {
    let mut response = ApiError::PayloadTooLarge(format!(
        "the request body is over the limit of {} KiB",
        MAX_BODY_BYTES / 1024
    ))
    .into_response();
    if !body_fully_read {
        // Unread data may still be on its way: this connection cannot carry
        // another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
