//! Reading a request body under a byte limit, refusing what is over it before reading it.

use axum::body::{Body, Bytes, to_bytes};
use axum::http::{HeaderMap, StatusCode, header};
use infra_core::Error;

/// Reads `body` if it is at most `limit` bytes. A declared `Content-Length` over the limit
/// is refused before anything is read, an undeclared body as soon as it passes the limit:
/// 413 with an invalid-input error naming `variable`, the setting that bounds it. A body
/// that fails to arrive (the client stalls or goes away) is 400.
pub(crate) async fn read_bounded(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    variable: &str,
) -> Result<Bytes, (StatusCode, Error)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            Error::invalid_input(
                "body",
                format_args!("is larger than the {limit}-byte limit ({variable})"),
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    to_bytes(body, limit).await.map_err(|err| {
        if is_length_limit(&err) {
            too_large()
        } else {
            (
                StatusCode::BAD_REQUEST,
                Error::invalid_input("body", format_args!("could not be read: {err}"))
                    .with_source(err),
            )
        }
    })
}

/// Whether a body error is the limit being hit, under however many layers of boxing.
fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if current.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_declared_and_streamed_bodies() {
        let mut headers = HeaderMap::new();
        let ok = read_bounded(&headers, Body::from("12345"), 5, "LIMIT").await;
        assert_eq!(ok.unwrap().as_ref(), b"12345");
        let (status, err) = read_bounded(&headers, Body::from("123456"), 5, "LIMIT")
            .await
            .unwrap_err();
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(err.message().contains("LIMIT"), "{err}");
        headers.insert(header::CONTENT_LENGTH, "999".parse().unwrap());
        let (status, _) = read_bounded(&headers, Body::empty(), 5, "LIMIT")
            .await
            .unwrap_err();
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
