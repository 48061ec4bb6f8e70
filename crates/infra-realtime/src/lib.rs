#![doc = include_str!("../README.md")]

mod auth_payload;
mod channel_kind;
mod config;
mod credentials;
pub mod encryption;
mod http_api;
mod limits;
#[cfg(feature = "pusher")]
mod pusher_client;
mod retry;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
mod service;
pub mod signature;
pub mod webhook;

pub use auth_payload::{ChannelAuth, PresenceMember, UserAuth, UserData};
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
pub use retry::RetryPolicy;
pub use service::RealtimeService;
pub use webhook::{Webhook, WebhookEvent, verify_webhook};
