//! End-to-end encrypted channels (`private-encrypted-…`).
//!
//! Pusher never sees the plaintext: the app derives one secret per channel from its master
//! key, hands it to an authorized subscriber in the auth reply (`shared_secret`), and seals
//! every event's data with NaCl `secretbox` (XSalsa20-Poly1305) under a fresh random nonce.
//! The per-channel secret is SHA-256 of the channel name followed by the 32-byte master key,
//! as the official SDKs derive it. The cipher is RustCrypto's `crypto_secretbox`; nothing
//! here is home-made beyond the key derivation the protocol fixes.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use crypto_secretbox::aead::{Aead, AeadCore, KeyInit, OsRng};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};
use infra_core::{ChannelName, Error, ErrorKind, Result, Secret};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::channel_kind::ChannelKind;

/// The environment variable holding the master key.
pub const MASTER_KEY_VARIABLE: &str = "PUSHER_ENCRYPTION_MASTER_KEY";

/// Bytes of a master key and of a per-channel secret.
pub const KEY_BYTES: usize = 32;

/// Bytes of a secretbox nonce.
pub const NONCE_BYTES: usize = 24;

/// The app's encryption master key (`PUSHER_ENCRYPTION_MASTER_KEY`, base64 of 32 bytes).
/// Prints as `***`. Cheap to clone (the bytes are shared).
#[derive(Clone)]
pub struct EncryptionMasterKey(Secret<Arc<[u8; KEY_BYTES]>>);

impl EncryptionMasterKey {
    /// A master key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        EncryptionMasterKey(Secret::new(Arc::new(bytes)))
    }

    /// Decodes the base64 form the variable holds; an error names
    /// `PUSHER_ENCRYPTION_MASTER_KEY` and the rule, never the value.
    pub fn from_base64(encoded: &str) -> Result<Self> {
        let bytes = BASE64
            .decode(encoded.trim())
            .map_err(|_| Error::config(MASTER_KEY_VARIABLE, "is not valid base64"))?;
        let bytes: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
            Error::config(
                MASTER_KEY_VARIABLE,
                format_args!(
                    "must be the base64 of exactly {KEY_BYTES} bytes, but decodes to {} bytes \
                     (generate one with `openssl rand -base64 32`)",
                    bytes.len()
                ),
            )
        })?;
        Ok(EncryptionMasterKey::from_bytes(bytes))
    }

    /// The secret of one encrypted channel: SHA-256(channel name ‖ master key).
    ///
    /// Only `private-encrypted-` channels have one; any other is an invalid-input error.
    pub fn shared_secret(&self, channel: &ChannelName) -> Result<SharedSecret> {
        if ChannelKind::of(channel) != ChannelKind::PrivateEncrypted {
            return Err(Error::invalid_input(
                "channel",
                format_args!("`{channel}` is not a private-encrypted- channel"),
            ));
        }
        let mut hash = Sha256::new();
        hash.update(channel.as_str().as_bytes());
        hash.update(self.0.expose().as_slice());
        Ok(SharedSecret(Secret::new(hash.finalize().into())))
    }
}

impl fmt::Debug for EncryptionMasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionMasterKey(***)")
    }
}

/// One encrypted channel's secret. Prints as `***`.
#[derive(Clone)]
pub struct SharedSecret(Secret<[u8; KEY_BYTES]>);

impl SharedSecret {
    /// A secret from its bytes (for example decoded from an auth reply).
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        SharedSecret(Secret::new(bytes))
    }

    /// Decodes the base64 form an auth reply's `shared_secret` carries.
    pub fn from_base64(encoded: &str) -> Result<Self> {
        let bytes = BASE64
            .decode(encoded)
            .ok()
            .and_then(|b| <[u8; KEY_BYTES]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| {
                Error::invalid_input("shared_secret", "must be the base64 of 32 bytes")
            })?;
        Ok(SharedSecret::from_bytes(bytes))
    }

    /// The base64 form the auth reply hands to the subscriber.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0.expose())
    }

    fn cipher(&self) -> XSalsa20Poly1305 {
        XSalsa20Poly1305::new(Key::from_slice(self.0.expose()))
    }

    /// Seals `plaintext` under a fresh random nonce.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<EncryptedPayload> {
        let nonce = XSalsa20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher()
            .encrypt(&nonce, plaintext)
            .map_err(|_| Error::backend("secretbox refused to encrypt the event data"))?;
        Ok(EncryptedPayload {
            nonce: BASE64.encode(nonce),
            ciphertext: BASE64.encode(ciphertext),
        })
    }

    /// Opens a payload sealed with this secret; a wrong secret or tampered data is a
    /// decode error.
    pub fn decrypt(&self, payload: &EncryptedPayload) -> Result<Vec<u8>> {
        let nonce = BASE64
            .decode(&payload.nonce)
            .ok()
            .filter(|n| n.len() == NONCE_BYTES)
            .ok_or_else(|| Error::invalid_input("nonce", "must be the base64 of 24 bytes"))?;
        let ciphertext = BASE64
            .decode(&payload.ciphertext)
            .map_err(|_| Error::invalid_input("ciphertext", "is not valid base64"))?;
        self.cipher()
            .decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice())
            .map_err(|_| {
                Error::new(
                    ErrorKind::Decode,
                    "the encrypted event does not open with this channel's secret",
                )
            })
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(***)")
    }
}

/// An encrypted event's data as it travels: `{"nonce", "ciphertext"}`, both base64.
/// Pusher carries it JSON-encoded in the event's `data` string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedPayload {
    /// The 24-byte nonce, base64.
    pub nonce: String,
    /// The secretbox output (16-byte tag and ciphertext), base64.
    pub ciphertext: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> EncryptionMasterKey {
        EncryptionMasterKey::from_bytes(*b"This is a string that is 32 chrs")
    }

    #[test]
    fn master_key_length_and_encoding_are_config_errors_naming_the_variable() {
        let short = EncryptionMasterKey::from_base64(&BASE64.encode([7u8; 31])).unwrap_err();
        assert_eq!(short.variable(), Some(MASTER_KEY_VARIABLE));
        assert!(short.to_string().contains("31 bytes"), "{short}");
        let garbage = EncryptionMasterKey::from_base64("not base64!").unwrap_err();
        assert_eq!(garbage.variable(), Some(MASTER_KEY_VARIABLE));
        let ok = EncryptionMasterKey::from_base64(&BASE64.encode([7u8; 32])).unwrap();
        assert_eq!(format!("{ok:?}"), "EncryptionMasterKey(***)");
    }

    #[test]
    fn shared_secret_is_sha256_of_name_then_key() {
        let ch = ChannelName::new("private-encrypted-bla").unwrap();
        let mut expected = Sha256::new();
        expected.update(b"private-encrypted-bla");
        expected.update(b"This is a string that is 32 chrs");
        let expected: [u8; 32] = expected.finalize().into();
        assert_eq!(
            master().shared_secret(&ch).unwrap().to_base64(),
            BASE64.encode(expected)
        );
        let plain = ChannelName::new("private-bla").unwrap();
        assert_eq!(
            master().shared_secret(&plain).unwrap_err().field(),
            Some("channel")
        );
    }

    #[test]
    fn round_trip_fresh_nonces_and_tampering() {
        let ch = ChannelName::new("private-encrypted-bla").unwrap();
        let secret = master().shared_secret(&ch).unwrap();
        let a = secret.encrypt(br#"{"id":7}"#).unwrap();
        let b = secret.encrypt(br#"{"id":7}"#).unwrap();
        assert_ne!(a.nonce, b.nonce, "every event gets a fresh nonce");
        assert_eq!(BASE64.decode(&a.nonce).unwrap().len(), NONCE_BYTES);
        assert_eq!(secret.decrypt(&a).unwrap(), br#"{"id":7}"#);
        let other = master()
            .shared_secret(&ChannelName::new("private-encrypted-other").unwrap())
            .unwrap();
        assert_eq!(other.decrypt(&a).unwrap_err().kind(), ErrorKind::Decode);
        let mut tampered = a.clone();
        tampered.nonce = b.nonce;
        assert!(secret.decrypt(&tampered).is_err());
    }
}
