//! A value that never prints.

use std::fmt;

/// Holds a password, key, token or DSN. `Debug` and `Display` print `***`; only
/// [`Secret::expose`] reads the value, so every use of it is visible in review.
///
/// It is deliberately not `Serialize`: writing a config back out must not leak it.
///
/// ```
/// use infra_core::Secret;
///
/// let key = Secret::new(String::from("sk_live_123"));
/// assert_eq!(format!("{key}"), "***");
/// assert_eq!(format!("{key:?}"), "Secret(***)");
/// assert_eq!(key.expose(), "sk_live_123");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// Reads the value. Call it only where the value is handed to the client that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: AsRef<[u8]>> Secret<T> {
    /// Compares `candidate` with the secret in constant time (for a given length), so a
    /// caller probing a token learns nothing from how long the answer took.
    ///
    /// ```
    /// use infra_core::Secret;
    ///
    /// let token = Secret::new(String::from("s3cr3t"));
    /// assert!(token.matches("s3cr3t"));
    /// assert!(!token.matches("s3cr3T"));
    /// assert!(!token.matches(""));
    /// ```
    pub fn matches(&self, candidate: impl AsRef<[u8]>) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_ref().ct_eq(candidate.as_ref()).into()
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret<String> {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Renders a URL with its password (and a `password=` query value) replaced by `***`,
/// for logs and health details.
///
/// ```
/// use infra_core::redact_url;
/// assert_eq!(
///     redact_url("postgres://app:hunter2@db:5432/app"),
///     "postgres://app:***@db:5432/app"
/// );
/// ```
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let hide =
                        k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("token");
                    (
                        k.into_owned(),
                        if hide { "***".into() } else { v.into_owned() },
                    )
                })
                .collect();
            if !pairs.is_empty() {
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string().replace("%2A%2A%2A", "***")
        }
        // Unparseable: show nothing of it rather than risk printing a password.
        Err(_) => "<unparseable url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code)] // read through Debug only
    struct Config {
        url: String,
        password: Secret<String>,
    }

    #[test]
    fn never_prints_in_debug_display_or_nested() {
        let s = Secret::new("hunter2".to_string());
        assert!(!format!("{s}").contains("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s:#?}").contains("hunter2"));
        let cfg = Config {
            url: "postgres://db".into(),
            password: s.clone(),
        };
        let printed = format!("{cfg:?} {cfg:#?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("***"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redacts_url_password_and_query() {
        assert_eq!(
            redact_url("redis://:pw@localhost:6379/0"),
            "redis://:***@localhost:6379/0"
        );
        let out = redact_url("postgres://u@h/db?password=pw&sslmode=require");
        assert!(!out.contains("pw&"), "{out}");
        assert!(out.contains("sslmode=require"));
        assert_eq!(redact_url("not a url with secret"), "<unparseable url>");
    }
}
