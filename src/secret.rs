//! [`Secret`]: a string that never shows itself by accident (DESIGN 3.2 invariant 5).

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// A secret string: an access or refresh token, an API key, a client secret.
///
/// `Debug` and `Display` print `[redacted]`, so a secret cannot leak through a log line, an
/// error message or a `{:?}` of the struct that holds it (DESIGN 3.2 invariant 5). The only way
/// to read it is [`Secret::expose`], which makes every use greppable. The buffer is overwritten
/// with zeros when the value is dropped (best effort: copies made before it became a `Secret`,
/// or by reallocation, are out of reach). Serde sees a plain string (`#[serde(transparent)]`),
/// which is what lets a [`crate::vault::TokenRecord`] be sealed as JSON.
///
/// ```
/// use portcullis::secret::Secret;
///
/// let token = Secret::new("ghp_example");
/// assert_eq!(format!("{token:?} {token}"), "[redacted] [redacted]");
/// assert_eq!(token.expose(), "ghp_example");
/// ```
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself. Call it only where the value must leave the process (an
    /// `Authorization` header, a Lambda client context) or be compared.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

/// Compares in time that depends only on the lengths, so that comparing a presented API key
/// with a stored one does not leak how many leading bytes matched.
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let secret = Secret::new("s3cr3t-value");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(
            format!("{:#?}", Some(secret.clone())),
            "Some(\n    [redacted],\n)"
        );
    }

    #[test]
    fn serde_is_a_plain_string() {
        let secret = Secret::new("abc");
        assert_eq!(
            serde_json::to_string(&secret).ok().as_deref(),
            Some("\"abc\"")
        );
        let back: Secret = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(back, secret);
        assert_ne!(back, Secret::new("abd"));
        assert_ne!(back, Secret::new("abcd"));
    }
}
