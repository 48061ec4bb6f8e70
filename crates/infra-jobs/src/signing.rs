//! Inngest's signing keys: verifying `X-Inngest-Signature` on call requests and hashing the
//! key into the bearer token the Inngest API accepts.
//!
//! From Inngest's SDK specification (github.com/inngest/inngest, `docs/SDK_SPEC.md`):
//! - §4.1.1/§4.1.3: the header is `t=<unix seconds>&s=<hex>`, where `s` is the hex
//!   HMAC-SHA256 of the raw request body followed by the `t` string, keyed with the signing
//!   key minus its `signkey-<env>-` prefix; requests older than 5 minutes are refused, and
//!   `INNGEST_SIGNING_KEY_FALLBACK` is tried whenever `INNGEST_SIGNING_KEY` fails (§3.1).
//! - §4.1.4: requests to Inngest carry `Authorization: Bearer signkey-<env>-<hex>`, the hex
//!   being SHA-256 of the hex-decoded key part (`signkey-prod-12345678` →
//!   `signkey-prod-b2ed9921…916c`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infra_core::{Env, Error, Result, Secret, hmac_sha256_hex, sha256_hex, verify_hmac_sha256_hex};

/// The request header carrying Inngest's signature.
pub const SIGNATURE_HEADER: &str = "X-Inngest-Signature";
/// How far a signature's timestamp may be from now, either way.
pub const SIGNATURE_MAX_AGE: Duration = Duration::from_secs(5 * 60);
/// The variable holding the signing key.
pub const SIGNING_KEY_VAR: &str = "INNGEST_SIGNING_KEY";
/// The variable holding the key used while rotating.
pub const SIGNING_KEY_FALLBACK_VAR: &str = "INNGEST_SIGNING_KEY_FALLBACK";

/// The parsed value of an `X-Inngest-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    /// `t`: when Inngest signed the request, in Unix seconds.
    pub timestamp: i64,
    /// `s`: the hex HMAC-SHA256, as sent.
    pub signature: String,
}

impl SignatureHeader {
    /// Parses `t=<unix seconds>&s=<64 hex digits>` (other keys are ignored). Every refusal is
    /// an invalid-input error whose field is the header's name.
    pub fn parse(value: &str) -> Result<Self> {
        let mut timestamp = None;
        let mut signature = None;
        for pair in value.trim().split('&') {
            let Some((key, val)) = pair.split_once('=') else {
                return Err(header_error(
                    "must be `t=<unix seconds>&s=<hex>`: a part has no `=`",
                ));
            };
            let slot = match key {
                "t" => &mut timestamp,
                "s" => &mut signature,
                _ => continue,
            };
            if slot.replace(val).is_some() {
                return Err(header_error(format_args!("has `{key}` twice")));
            }
        }
        let t = timestamp.ok_or_else(|| header_error("has no `t` (timestamp)"))?;
        let s = signature.ok_or_else(|| header_error("has no `s` (signature)"))?;
        if t.is_empty() || t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(header_error("`t` must be Unix seconds"));
        }
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(header_error("`s` must be 64 hex digits (HMAC-SHA256)"));
        }
        Ok(SignatureHeader {
            // At most 12 digits: fits an i64.
            timestamp: t
                .parse()
                .map_err(|_| header_error("`t` must be Unix seconds"))?,
            signature: s.to_owned(),
        })
    }
}

fn header_error(rule: impl fmt::Display) -> Error {
    Error::invalid_input(SIGNATURE_HEADER, rule)
}

/// One signing key and the variable it came from (named in errors, never the value).
#[derive(Clone)]
pub struct SigningKey {
    variable: &'static str,
    key: Secret<String>,
}

impl SigningKey {
    /// A key read from `variable`.
    pub fn new(variable: &'static str, key: impl Into<String>) -> Self {
        SigningKey {
            variable,
            key: Secret::new(key.into().trim().to_owned()),
        }
    }

    /// The `signkey-<env>-` prefix (empty when the key has none) and the key part.
    fn split(&self) -> (&str, &str) {
        let key = self.key.expose().as_str();
        if let Some(rest) = key.strip_prefix("signkey-")
            && let Some(dash) = rest.find('-')
            && dash > 0
            && rest[..dash]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            let at = "signkey-".len() + dash + 1;
            return (&key[..at], &key[at..]);
        }
        ("", key)
    }

    /// The HMAC key: the key part as text, as the SDK specification says.
    fn hmac_key(&self) -> Secret<String> {
        Secret::new(self.split().1.to_owned())
    }

    /// The hex signature of `body` at `timestamp` (Unix seconds).
    pub fn signature(&self, body: &[u8], timestamp: i64) -> String {
        hmac_sha256_hex(&self.hmac_key(), &signed_message(body, timestamp))
    }

    /// A whole `X-Inngest-Signature` value for `body` at `timestamp`, as Inngest would send
    /// it (for stand-ins and tests).
    pub fn header_value(&self, body: &[u8], timestamp: i64) -> String {
        format!("t={timestamp}&s={}", self.signature(body, timestamp))
    }

    fn verifies(&self, body: &[u8], header: &SignatureHeader) -> bool {
        verify_hmac_sha256_hex(
            &self.hmac_key(),
            &signed_message(body, header.timestamp),
            &header.signature,
        )
    }

    /// The bearer token for Inngest's API: `signkey-<env>-` + hex(SHA-256(hex-decoded key
    /// part)). A key part that is not hex is a configuration error naming the variable.
    pub fn hashed(&self) -> Result<Secret<String>> {
        let (prefix, part) = self.split();
        let bytes = hex::decode(part).map_err(|_| {
            Error::config(
                self.variable,
                "must be `signkey-<env>-` followed by hex digits",
            )
        })?;
        Ok(Secret::new(format!("{prefix}{}", sha256_hex(&bytes))))
    }

    /// The variable the key came from.
    pub fn variable(&self) -> &'static str {
        self.variable
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("variable", &self.variable)
            .field("key", &self.key)
            .finish()
    }
}

fn signed_message(body: &[u8], timestamp: i64) -> Vec<u8> {
    let t = timestamp.to_string();
    let mut message = Vec::with_capacity(body.len() + t.len());
    message.extend_from_slice(body);
    message.extend_from_slice(t.as_bytes());
    message
}

/// `INNGEST_SIGNING_KEY` and, while rotating, `INNGEST_SIGNING_KEY_FALLBACK`.
#[derive(Debug, Clone)]
pub struct SigningKeys {
    primary: SigningKey,
    fallback: Option<SigningKey>,
}

impl SigningKeys {
    /// The primary key alone.
    pub fn new(primary: impl Into<String>) -> Self {
        SigningKeys {
            primary: SigningKey::new(SIGNING_KEY_VAR, primary),
            fallback: None,
        }
    }

    /// Adds the fallback key.
    pub fn with_fallback(mut self, fallback: impl Into<String>) -> Self {
        self.fallback = Some(SigningKey::new(SIGNING_KEY_FALLBACK_VAR, fallback));
        self
    }

    /// The keys from `INNGEST_SIGNING_KEY` / `INNGEST_SIGNING_KEY_FALLBACK`; `None` without
    /// the first. A fallback without a primary key is a configuration error.
    pub fn from_env(env: &Env) -> Result<Option<Self>> {
        let primary = env.optional_secret(SIGNING_KEY_VAR);
        let fallback = env.optional_secret(SIGNING_KEY_FALLBACK_VAR);
        match (primary, fallback) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(Error::config(
                SIGNING_KEY_VAR,
                format_args!("is not set but {SIGNING_KEY_FALLBACK_VAR} is"),
            )),
            (Some(primary), fallback) => {
                let keys = SigningKeys::new(primary.into_inner());
                Ok(Some(match fallback {
                    Some(f) => keys.with_fallback(f.into_inner()),
                    None => keys,
                }))
            }
        }
    }

    /// The primary key.
    pub fn primary(&self) -> &SigningKey {
        &self.primary
    }

    /// The fallback key, if any.
    pub fn fallback(&self) -> Option<&SigningKey> {
        self.fallback.as_ref()
    }

    /// Checks a request's `X-Inngest-Signature` (`header`, `None` when absent) against its
    /// raw `body` at the current time. See [`SigningKeys::verify_at`].
    pub fn verify(&self, header: Option<&str>, body: &[u8]) -> Result<&SigningKey> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        self.verify_at(header, body, now)
    }

    /// Checks the signature as of `now` (Unix seconds): the header must parse, its timestamp
    /// be within [`SIGNATURE_MAX_AGE`] of `now`, and its signature match under the primary or
    /// the fallback key (compared in constant time). Returns the key that matched.
    pub fn verify_at(&self, header: Option<&str>, body: &[u8], now: i64) -> Result<&SigningKey> {
        let header = SignatureHeader::parse(header.ok_or_else(|| header_error("is missing"))?)?;
        let age = now.saturating_sub(header.timestamp);
        if age.unsigned_abs() > SIGNATURE_MAX_AGE.as_secs() {
            return Err(header_error(format_args!(
                "is {} by {age}s, beyond the {}s window",
                if age >= 0 { "stale" } else { "from the future" },
                SIGNATURE_MAX_AGE.as_secs()
            ))
            .with_context("age_seconds", age.to_string()));
        }
        if self.primary.verifies(body, &header) {
            return Ok(&self.primary);
        }
        if let Some(fallback) = &self.fallback
            && fallback.verifies(body, &header)
        {
            return Ok(fallback);
        }
        Err(header_error(match self.fallback {
            Some(_) => format!(
                "does not match the body under {SIGNING_KEY_VAR} or {SIGNING_KEY_FALLBACK_VAR}"
            ),
            None => format!("does not match the body under {SIGNING_KEY_VAR}"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra_core::ErrorKind;

    #[test]
    fn splits_the_env_prefix_like_the_official_sdk() {
        let key = SigningKey::new(SIGNING_KEY_VAR, "signkey-branch_1-abcd");
        assert_eq!(key.split(), ("signkey-branch_1-", "abcd"));
        let key = SigningKey::new(SIGNING_KEY_VAR, "abcd");
        assert_eq!(key.split(), ("", "abcd"));
        let key = SigningKey::new(SIGNING_KEY_VAR, "signkey--abcd");
        assert_eq!(key.split(), ("", "signkey--abcd"));
    }

    #[test]
    fn header_parser_names_the_header() {
        for bad in [
            "",
            "t=1",
            "s=00",
            "t=x&s=00",
            "t=1&s=zz",
            "t=1&t=2&s=00",
            "garbage",
        ] {
            let err = SignatureHeader::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
            assert_eq!(err.field(), Some(SIGNATURE_HEADER), "{bad}");
        }
        let ok = SignatureHeader::parse(&format!("t=1700000000&s={}&v=1", "a".repeat(64))).unwrap();
        assert_eq!(ok.timestamp, 1_700_000_000);
    }

    #[test]
    fn debug_hides_the_keys() {
        let keys = SigningKeys::new("signkey-prod-deadbeef").with_fallback("signkey-prod-cafe");
        let printed = format!("{keys:?}");
        assert!(
            !printed.contains("deadbeef") && !printed.contains("cafe"),
            "{printed}"
        );
    }

    #[test]
    fn fallback_without_primary_is_a_config_error() {
        let env = Env::from_pairs([(SIGNING_KEY_FALLBACK_VAR, "signkey-prod-00")]);
        let err = SigningKeys::from_env(&env).unwrap_err();
        assert_eq!(err.variable(), Some(SIGNING_KEY_VAR));
        assert!(SigningKeys::from_env(&Env::empty()).unwrap().is_none());
    }
}
