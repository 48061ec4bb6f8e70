#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth_payload;
#[cfg(feature = "http")]
mod auth_router;
#[cfg(feature = "http")]
mod authorizer;
mod channel_kind;
mod config;
mod credentials;
pub mod encryption;
mod http_api;
mod limits;
#[cfg(feature = "pusher")]
mod pusher_client;
mod pusher_retry;
mod realtime_event;
mod realtime_notify;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
mod service;
pub mod signature;
pub mod webhook;
#[cfg(feature = "http")]
mod webhook_extractor;

pub use auth_payload::{ChannelAuth, PresenceMember, UserAuth, UserData};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use auth_router::{CHANNEL_AUTH_PATH, USER_AUTH_PATH, auth_router};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use authorizer::{AuthRequest, Authorizer, ChannelDecision, UserDecision};
pub use channel_kind::ChannelKind;
pub use config::{PusherConfig, RealtimeConfig};
pub use credentials::AppCredentials;
pub use encryption::{EncryptedPayload, EncryptionMasterKey, SharedSecret};
pub use http_api::{
    ChannelAttribute, ChannelAttributes, ChannelInfo, ChannelsList, ChannelsQuery, PresenceUser,
    PresenceUsers, TriggerOptions, TriggerReply, check_user_id, info_param,
};
pub use limits::{MAX_BATCH_EVENTS, MAX_CHANNELS_PER_TRIGGER, MAX_DATA_BYTES};
#[cfg(feature = "pusher")]
pub use pusher_client::PusherClient;
pub use pusher_retry::DEFAULT_PUSHER_RETRY;
pub use realtime_event::RealtimeEvent;
pub use realtime_notify::{RealtimeNotify, private_user_channel};
pub use service::RealtimeService;
pub use webhook::{
    DEFAULT_WEBHOOK_TOLERANCE, Webhook, WebhookEvent, verify_webhook, verify_webhook_at,
};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use webhook_extractor::{VerifiedWebhook, WebhookRejection};

/// The axum version the `http` feature's router and extractor are built on.
#[cfg(feature = "http")]
pub use axum;
