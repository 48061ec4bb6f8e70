//! HMAC-SHA256 request signatures, shared by every adapter that signs or verifies webhooks
//! (Pusher's API and webhooks, Inngest's call requests).
//!
//! Verification compares in constant time (`hmac`'s `verify_slice`), so a forger learns
//! nothing from how long a rejection takes.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &Secret<String>, message: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac =
        HmacSha256::new_from_slice(key.expose().as_bytes()).expect("HMAC accepts any key length");
    mac.update(message);
    mac
}

/// Hex HMAC-SHA256 of `message`, keyed with the bytes of `key`'s text.
///
/// ```
/// use infra_core::{Secret, hmac_sha256_hex};
/// let key = Secret::new("key".to_owned());
/// assert_eq!(
///     hmac_sha256_hex(&key, b"The quick brown fox jumps over the lazy dog"),
///     "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
/// );
/// ```
pub fn hmac_sha256_hex(key: &Secret<String>, message: &[u8]) -> String {
    hex::encode(mac(key, message).finalize().into_bytes())
}

/// Whether `signature_hex` is the hex HMAC-SHA256 of `message` under `key`, compared in
/// constant time. A signature that is not hex is simply wrong.
pub fn verify_hmac_sha256_hex(key: &Secret<String>, message: &[u8], signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    mac(key, message).verify_slice(&signature).is_ok()
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_its_own_signature_and_refuses_others() {
        let key = Secret::new("secret".to_owned());
        let sig = hmac_sha256_hex(&key, b"body");
        assert!(verify_hmac_sha256_hex(&key, b"body", &sig));
        assert!(verify_hmac_sha256_hex(&key, b"body", &sig.to_uppercase()));
        assert!(!verify_hmac_sha256_hex(&key, b"bodY", &sig));
        assert!(!verify_hmac_sha256_hex(&key, b"body", &sig[..62]));
        assert!(!verify_hmac_sha256_hex(&key, b"body", "not hex"));
        let other = Secret::new("other".to_owned());
        assert!(!verify_hmac_sha256_hex(&other, b"body", &sig));
    }

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
