//! The demo's sign-in: a token per tab naming a demo user, and the realtime authorizer built
//! on it — a user may join only their own `private-user-{id}` channel.
//!
//! A real app puts its own session check here (a cookie, a JWT); what stays the same is the
//! rule in [`DemoAuthorizer::authorize_channel`].

use axum::http::{HeaderMap, header};
use infra::core::{hmac_sha256_hex, verify_hmac_sha256_hex};
use infra::realtime::{AuthRequest, Authorizer, ChannelDecision};
use infra::{ChannelName, Result, Secret, async_trait};

/// Issues and checks demo session tokens: `{user_id}.{hex HMAC of the id}` under a key drawn
/// at random for this process, so tokens die with it and cannot be forged.
#[derive(Clone)]
pub struct DemoSessions {
    key: Secret<String>,
}

impl std::fmt::Debug for DemoSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoSessions").finish_non_exhaustive()
    }
}

impl Default for DemoSessions {
    fn default() -> Self {
        let key: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        DemoSessions {
            key: Secret::new(key),
        }
    }
}

impl DemoSessions {
    /// A token for `user_id`.
    pub fn issue(&self, user_id: i64) -> String {
        let mac = hmac_sha256_hex(&self.key, format!("demo-user:{user_id}").as_bytes());
        format!("{user_id}.{mac}")
    }

    /// The user a token names, if this process issued it.
    pub fn verify(&self, token: &str) -> Option<i64> {
        let (id, mac) = token.split_once('.')?;
        let user_id: i64 = id.parse().ok()?;
        verify_hmac_sha256_hex(&self.key, format!("demo-user:{user_id}").as_bytes(), mac)
            .then_some(user_id)
    }

    /// The user of a request carrying `Authorization: Bearer <token>`.
    pub fn user_of(&self, headers: &HeaderMap) -> Option<i64> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        self.verify(value.strip_prefix("Bearer ")?.trim())
    }
}

/// May join `private-user-{own id}` and nothing else private.
#[derive(Debug, Clone)]
pub struct DemoAuthorizer {
    sessions: DemoSessions,
}

impl DemoAuthorizer {
    /// The authorizer over `sessions`.
    pub fn new(sessions: DemoSessions) -> Self {
        DemoAuthorizer { sessions }
    }
}

#[async_trait]
impl Authorizer for DemoAuthorizer {
    async fn authorize_channel(
        &self,
        request: &AuthRequest,
        channel: &ChannelName,
    ) -> Result<ChannelDecision> {
        let Some(user_id) = self.sessions.user_of(&request.headers) else {
            return Ok(ChannelDecision::deny("sign in first"));
        };
        if channel.as_str() == format!("private-user-{user_id}") {
            Ok(ChannelDecision::Allow)
        } else {
            Ok(ChannelDecision::deny(format!(
                "user {user_id} may join only private-user-{user_id}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_user_and_cannot_be_forged() {
        let sessions = DemoSessions::default();
        let token = sessions.issue(42);
        assert_eq!(sessions.verify(&token), Some(42));
        let forged = token.replacen("42.", "43.", 1);
        assert_eq!(sessions.verify(&forged), None);
        assert_eq!(sessions.verify("garbage"), None);
        assert_eq!(
            DemoSessions::default().verify(&token),
            None,
            "other process"
        );
    }
}
