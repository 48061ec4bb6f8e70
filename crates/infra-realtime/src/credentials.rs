//! An app's credentials and everything they sign: channel authorizations, user sign-ins,
//! webhooks. Needs no HTTP client, so an auth endpoint or an embedded server can hold one
//! alone.

use std::fmt;
use std::time::{Duration, SystemTime};

use infra_core::{ChannelName, Error, Result, Secret};

use crate::auth_payload::{ChannelAuth, PresenceMember, UserAuth, UserData};
use crate::channel_kind::ChannelKind;
use crate::config::PusherConfig;
use crate::encryption::{EncryptionMasterKey, MASTER_KEY_VARIABLE};
use crate::signature;
use crate::webhook::{self, DEFAULT_WEBHOOK_TOLERANCE, Webhook};

/// App id, key, secret and, for encrypted channels, the master key; and how old a webhook
/// signed with them may be.
#[derive(Clone)]
pub struct AppCredentials {
    /// `PUSHER_APP_ID`.
    pub app_id: String,
    /// `PUSHER_KEY`.
    pub key: String,
    /// `PUSHER_SECRET`.
    pub secret: Secret<String>,
    /// `PUSHER_ENCRYPTION_MASTER_KEY`, needed for `private-encrypted-` channels.
    pub encryption_master_key: Option<EncryptionMasterKey>,
    /// How far a webhook's `time_ms` may lie from now, either way (`PUSHER_WEBHOOK_TOLERANCE`,
    /// default [`DEFAULT_WEBHOOK_TOLERANCE`]).
    pub webhook_tolerance: Duration,
}

impl AppCredentials {
    /// Credentials without an encryption master key.
    pub fn new(
        app_id: impl Into<String>,
        key: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        AppCredentials {
            app_id: app_id.into(),
            key: key.into(),
            secret: Secret::new(secret.into()),
            encryption_master_key: None,
            webhook_tolerance: DEFAULT_WEBHOOK_TOLERANCE,
        }
    }

    /// Sets how far a webhook's `time_ms` may lie from now, either way.
    pub fn with_webhook_tolerance(mut self, tolerance: Duration) -> Self {
        self.webhook_tolerance = tolerance;
        self
    }

    /// Adds the master key encrypted channels derive their secrets from.
    pub fn with_encryption_master_key(mut self, key: EncryptionMasterKey) -> Self {
        self.encryption_master_key = Some(key);
        self
    }

    /// The master key, or a config error naming `PUSHER_ENCRYPTION_MASTER_KEY`.
    pub fn master_key(&self) -> Result<&EncryptionMasterKey> {
        self.encryption_master_key.as_ref().ok_or_else(|| {
            Error::config(
                MASTER_KEY_VARIABLE,
                "is not set, but private-encrypted- channels need it",
            )
        })
    }

    /// Authorizes `socket_id` on `channel`: a private channel with `member` `None`, a
    /// presence channel with the member to announce, an encrypted channel with the shared
    /// secret added to the reply.
    pub fn authorize_channel(
        &self,
        socket_id: &str,
        channel: &ChannelName,
        member: Option<&PresenceMember>,
    ) -> Result<ChannelAuth> {
        let channel_data = member.map(PresenceMember::to_channel_data);
        self.authorize_channel_raw(socket_id, channel, channel_data.as_deref())
    }

    /// As [`authorize_channel`](Self::authorize_channel), with presence data as a ready JSON
    /// string (signed and sent back byte for byte).
    pub fn authorize_channel_raw(
        &self,
        socket_id: &str,
        channel: &ChannelName,
        channel_data: Option<&str>,
    ) -> Result<ChannelAuth> {
        let mut auth = signature::authorize_channel(
            &self.key,
            &self.secret,
            socket_id,
            channel,
            channel_data,
        )?;
        if ChannelKind::of(channel) == ChannelKind::PrivateEncrypted {
            auth.shared_secret = Some(self.master_key()?.shared_secret(channel)?.to_base64());
        }
        Ok(auth)
    }

    /// Signs a user in (`pusher:signin`).
    pub fn authenticate_user(&self, socket_id: &str, user: &UserData) -> Result<UserAuth> {
        signature::authenticate_user(&self.key, &self.secret, socket_id, &user.to_user_data())
    }

    /// Verifies a webhook's headers against its raw body, parses its events and checks its
    /// `time_ms` against the clock within [`webhook_tolerance`](Self::webhook_tolerance).
    pub fn verify_webhook(
        &self,
        header_key: &str,
        header_signature: &str,
        body: &[u8],
    ) -> Result<Webhook> {
        self.verify_webhook_at(header_key, header_signature, body, SystemTime::now())
    }

    /// As [`verify_webhook`](Self::verify_webhook), with the receiver's clock given.
    pub fn verify_webhook_at(
        &self,
        header_key: &str,
        header_signature: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Webhook> {
        webhook::verify_webhook_at(
            &self.key,
            &self.secret,
            header_key,
            header_signature,
            body,
            self.webhook_tolerance,
            now,
        )
    }
}

impl From<&PusherConfig> for AppCredentials {
    fn from(config: &PusherConfig) -> Self {
        AppCredentials {
            app_id: config.app_id.clone(),
            key: config.key.clone(),
            secret: config.secret.clone(),
            encryption_master_key: config.encryption_master_key.clone(),
            webhook_tolerance: config.webhook_tolerance,
        }
    }
}

impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("secret", &self.secret)
            .field("encryption_master_key", &self.encryption_master_key)
            .field("webhook_tolerance", &self.webhook_tolerance)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_channels_need_the_master_key_and_get_a_shared_secret() {
        let creds = AppCredentials::new("3", "278d425bdf160c739803", "7ad3773142a6692b25b8");
        let ch = ChannelName::new("private-encrypted-x").unwrap();
        let err = creds.authorize_channel("1.2", &ch, None).unwrap_err();
        assert_eq!(err.variable(), Some(MASTER_KEY_VARIABLE));
        let master = EncryptionMasterKey::from_bytes([9; 32]);
        let creds = creds.with_encryption_master_key(master.clone());
        let auth = creds.authorize_channel("1.2", &ch, None).unwrap();
        assert_eq!(
            auth.shared_secret,
            Some(master.shared_secret(&ch).unwrap().to_base64())
        );
        assert!(!format!("{creds:?}").contains("7ad3773142a6692b25b8"));
        let private = ChannelName::new("private-x").unwrap();
        assert_eq!(
            creds
                .authorize_channel("1.2", &private, None)
                .unwrap()
                .shared_secret,
            None
        );
    }
}
