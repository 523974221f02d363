//! Reading an HTTP response body without trusting its size: targets, token endpoints, discovery
//! and JWKS documents all come from elsewhere, and a body that never ends must not exhaust the
//! gateway's memory. A leaf, so that every module reading a response shares one bounded reader.

/// Why a body was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body (or its announced `Content-Length`) exceeded the limit.
    #[error("the response exceeded {0} bytes")]
    TooLarge(usize),
    /// The connection failed while the body was streaming.
    #[error("the response body could not be read: {0}")]
    Read(String),
}

/// Reads a response body, refusing to buffer more than `limit` bytes. A `Content-Length` above
/// the limit is refused before anything is read.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BodyError::Read(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
