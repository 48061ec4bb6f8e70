//! What the app decides at its auth endpoint: may this request's user join this channel,
//! with which presence data, and who is signing in.
//!
//! The app implements [`Authorizer`]; the [`auth_router`](crate::auth_router) does the
//! protocol (form parsing, signing, the JSON pusher-js expects). The request's headers are
//! handed over so the app can find its session (cookie, bearer token) the way it always does.

use async_trait::async_trait;
use axum::http::HeaderMap;
use infra_core::{ChannelName, Result};

use crate::auth_payload::{PresenceMember, UserData};

/// Who is asking: the socket pusher-js named and the HTTP request's headers.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    /// The socket to authorize (`1234.5678`), already checked for shape.
    pub socket_id: String,
    /// The auth request's headers (cookies, `Authorization`, …).
    pub headers: HeaderMap,
}

/// The app's answer for one channel.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ChannelDecision {
    /// Allowed on a private or encrypted channel.
    Allow,
    /// Allowed on a presence channel as this member.
    AllowPresence(PresenceMember),
    /// Refused; the reason goes back with the 403.
    Deny(String),
}

impl ChannelDecision {
    /// Refuses with `reason`.
    pub fn deny(reason: impl Into<String>) -> Self {
        ChannelDecision::Deny(reason.into())
    }
}

/// The app's answer to a user sign-in.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum UserDecision {
    /// Signed in as this user.
    Allow(UserData),
    /// Refused; the reason goes back with the 403.
    Deny(String),
}

/// The app's policy for its auth endpoints. Object-safe, so a router holds an
/// `Arc<dyn Authorizer>`.
///
/// The usual rule — a user may join only their own `private-user-{id}` channel:
///
/// ```
/// use infra_core::{async_trait, ChannelName, Result};
/// use infra_realtime::{AuthRequest, Authorizer, ChannelDecision, UserData, UserDecision, private_user_channel};
///
/// struct OwnChannelOnly;
///
/// /// Finds the signed-in user; a real app reads its session cookie or token here.
/// fn current_user(request: &AuthRequest) -> Option<String> {
///     let token = request.headers.get("authorization")?.to_str().ok()?;
///     token.strip_prefix("Bearer ").map(str::to_owned)
/// }
///
/// #[async_trait]
/// impl Authorizer for OwnChannelOnly {
///     async fn authorize_channel(
///         &self,
///         request: &AuthRequest,
///         channel: &ChannelName,
///     ) -> Result<ChannelDecision> {
///         let Some(user_id) = current_user(request) else {
///             return Ok(ChannelDecision::deny("not signed in"));
///         };
///         if *channel == private_user_channel(&user_id)? {
///             Ok(ChannelDecision::Allow)
///         } else {
///             Ok(ChannelDecision::deny(format!("user {user_id} may not join {channel}")))
///         }
///     }
///
///     async fn authenticate_user(&self, request: &AuthRequest) -> Result<UserDecision> {
///         Ok(match current_user(request) {
///             Some(id) => UserDecision::Allow(UserData::new(id)),
///             None => UserDecision::Deny("not signed in".into()),
///         })
///     }
/// }
/// ```
#[async_trait]
pub trait Authorizer: Send + Sync {
    /// May the request's user subscribe to `channel` (a `private-`, `private-encrypted-` or
    /// `presence-` channel), and as which presence member? An `Err` answers 500 (503 when
    /// retryable) without its message.
    async fn authorize_channel(
        &self,
        request: &AuthRequest,
        channel: &ChannelName,
    ) -> Result<ChannelDecision>;

    /// Who is the request's user, for `pusher:signin`? Refuses by default: apps that use
    /// user authentication (and [`terminate_user_connections`]) implement it.
    ///
    /// [`terminate_user_connections`]: crate::PusherClient::terminate_user_connections
    async fn authenticate_user(&self, request: &AuthRequest) -> Result<UserDecision> {
        let _ = request;
        Ok(UserDecision::Deny(
            "user authentication is not enabled on this server".into(),
        ))
    }
}

#[async_trait]
impl<T: Authorizer + ?Sized> Authorizer for std::sync::Arc<T> {
    async fn authorize_channel(
        &self,
        request: &AuthRequest,
        channel: &ChannelName,
    ) -> Result<ChannelDecision> {
        (**self).authorize_channel(request, channel).await
    }

    async fn authenticate_user(&self, request: &AuthRequest) -> Result<UserDecision> {
        (**self).authenticate_user(request).await
    }
}
