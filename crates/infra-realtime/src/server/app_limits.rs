//! What one app's clients may use: connections, channels, subscribe rate, queued bytes,
//! presence members, payload sizes. Defaults sit where a pusher-js app never reaches them;
//! `INFRA_REALTIME_*` variables replace them for every app, and an apps file's `limits`
//! object replaces them again for its app.

use infra_core::{Env, Error, Result};
use serde::{Deserialize, Serialize};

/// See [`AppLimits::max_connections`].
const MAX_CONNECTIONS_VAR: &str = "INFRA_REALTIME_MAX_CONNECTIONS";
/// See [`AppLimits::max_connections_per_ip`].
const MAX_CONNECTIONS_PER_IP_VAR: &str = "INFRA_REALTIME_MAX_CONNECTIONS_PER_IP";
/// See [`AppLimits::max_channels_per_connection`].
const MAX_CHANNELS_PER_CONNECTION_VAR: &str = "INFRA_REALTIME_MAX_CHANNELS_PER_CONNECTION";
/// See [`AppLimits::max_subscribes_per_second`].
const MAX_SUBSCRIBES_PER_SECOND_VAR: &str = "INFRA_REALTIME_MAX_SUBSCRIBES_PER_SECOND";
/// See [`AppLimits::max_queued_bytes`].
const MAX_QUEUED_BYTES_VAR: &str = "INFRA_REALTIME_MAX_QUEUED_BYTES";
/// See [`AppLimits::max_presence_members`].
const MAX_PRESENCE_MEMBERS_VAR: &str = "INFRA_REALTIME_MAX_PRESENCE_MEMBERS";
/// See [`AppLimits::max_payload_bytes`].
const MAX_PAYLOAD_BYTES_VAR: &str = "INFRA_REALTIME_MAX_PAYLOAD_BYTES";

/// Per-app limits. Defaults follow Pusher's published limits where it has them; the others
/// are far above what a pusher-js app uses, so only an abusive client meets them. Beyond a
/// limit the client is always told: `pusher:subscription_error`, `pusher:error` or a close
/// code, never a silent drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AppLimits {
    /// Concurrent WebSocket connections; one more gets `pusher:error` and close 4100.
    pub max_connections: usize,
    /// Concurrent connections from one client address (IPv6: one /64), 0 for no limit; one
    /// more gets `pusher:error` and close 4100. The address is the connection's peer as the
    /// server sees it (axum's `ConnectInfo<SocketAddr>`; without it the limit does not
    /// apply): behind a proxy every client shares the proxy's address.
    pub max_connections_per_ip: usize,
    /// Channels one connection may be subscribed to at once; one more is refused with
    /// `pusher:subscription_error` (status 403), the connection stays.
    pub max_channels_per_connection: usize,
    /// `pusher:subscribe` frames one connection may send in one second; beyond, each is
    /// refused with `pusher:subscription_error` (status 429). Keep it at least
    /// `max_channels_per_connection`: pusher-js resubscribes every channel at once when it
    /// reconnects.
    pub max_subscribes_per_second: u32,
    /// Bytes of frames queued for one client; a client that reads slower than its events
    /// arrive is closed with 4100 when its queue would pass this.
    pub max_queued_bytes: usize,
    /// Bytes of one event's `data` (HTTP API and client events); 413 / error beyond.
    pub max_payload_bytes: usize,
    /// Members of one presence channel.
    pub max_presence_members: usize,
    /// Bytes of one member's `user_info` JSON.
    pub max_presence_user_info_bytes: usize,
    /// Whether sockets may send `client-` events.
    pub client_events: bool,
    /// Client events one connection may send per second (4301 beyond).
    pub client_events_per_second: u32,
    /// Frames queued for one client before it counts as too slow and is disconnected (4100).
    pub send_buffer_frames: usize,
}

impl Default for AppLimits {
    fn default() -> Self {
        AppLimits {
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            max_channels_per_connection: 1_000,
            max_subscribes_per_second: 1_000,
            max_queued_bytes: 1024 * 1024,
            max_payload_bytes: crate::MAX_DATA_BYTES,
            max_presence_members: 100,
            max_presence_user_info_bytes: 1024,
            client_events: true,
            client_events_per_second: 10,
            send_buffer_frames: 256,
        }
    }
}

impl AppLimits {
    /// The defaults, replaced by whichever `INFRA_REALTIME_MAX_*` variables are set.
    pub fn from_env(env: &Env) -> Result<Self> {
        let mut limits = AppLimits::default();
        let at_least_one = |var: &str| -> Result<Option<usize>> {
            match env.integer::<usize>(var)? {
                Some(0) => Err(Error::config(var, "must be at least 1")),
                other => Ok(other),
            }
        };
        if let Some(n) = at_least_one(MAX_CONNECTIONS_VAR)? {
            limits.max_connections = n;
        }
        if let Some(n) = env.integer::<usize>(MAX_CONNECTIONS_PER_IP_VAR)? {
            limits.max_connections_per_ip = n;
        }
        if let Some(n) = at_least_one(MAX_CHANNELS_PER_CONNECTION_VAR)? {
            limits.max_channels_per_connection = n;
        }
        if let Some(n) = at_least_one(MAX_SUBSCRIBES_PER_SECOND_VAR)? {
            limits.max_subscribes_per_second = u32::try_from(n).map_err(|_| {
                Error::config(MAX_SUBSCRIBES_PER_SECOND_VAR, "must be at most 4294967295")
            })?;
        }
        if let Some(n) = at_least_one(MAX_QUEUED_BYTES_VAR)? {
            limits.max_queued_bytes = n;
        }
        if let Some(n) = at_least_one(MAX_PRESENCE_MEMBERS_VAR)? {
            limits.max_presence_members = n;
        }
        if let Some(n) = at_least_one(MAX_PAYLOAD_BYTES_VAR)? {
            limits.max_payload_bytes = n;
        }
        Ok(limits)
    }

    /// What must hold for the server to work at all; the problem names the field.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        let positive = [
            ("max_connections", self.max_connections),
            (
                "max_channels_per_connection",
                self.max_channels_per_connection,
            ),
            (
                "max_subscribes_per_second",
                self.max_subscribes_per_second as usize,
            ),
            ("max_queued_bytes", self.max_queued_bytes),
            ("max_payload_bytes", self.max_payload_bytes),
            ("max_presence_members", self.max_presence_members),
            ("send_buffer_frames", self.send_buffer_frames),
        ];
        match positive.iter().find(|(_, value)| *value == 0) {
            Some((field, _)) => Err(format!("`{field}` must be at least 1")),
            None => Ok(()),
        }
    }

    /// These limits with the fields an apps file's `limits` object names replaced.
    pub(crate) fn overridden_by(
        &self,
        fields: &serde_json::Map<String, serde_json::Value>,
    ) -> std::result::Result<AppLimits, String> {
        let mut merged = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err("limits cannot be encoded".into()),
        };
        for (field, value) in fields {
            merged.insert(field.clone(), value.clone());
        }
        serde_json::from_value(serde_json::Value::Object(merged)).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_replace_the_defaults() {
        let env = Env::from_pairs([
            (MAX_CONNECTIONS_VAR, "50"),
            (MAX_CONNECTIONS_PER_IP_VAR, "0"),
            (MAX_CHANNELS_PER_CONNECTION_VAR, "20"),
            (MAX_SUBSCRIBES_PER_SECOND_VAR, "30"),
            (MAX_QUEUED_BYTES_VAR, "65536"),
            (MAX_PRESENCE_MEMBERS_VAR, "7"),
            (MAX_PAYLOAD_BYTES_VAR, "2048"),
        ]);
        let limits = AppLimits::from_env(&env).unwrap();
        assert_eq!(limits.max_connections, 50);
        assert_eq!(limits.max_connections_per_ip, 0, "0 turns the limit off");
        assert_eq!(limits.max_channels_per_connection, 20);
        assert_eq!(limits.max_subscribes_per_second, 30);
        assert_eq!(limits.max_queued_bytes, 65536);
        assert_eq!(limits.max_presence_members, 7);
        assert_eq!(limits.max_payload_bytes, 2048);
        assert_eq!(
            AppLimits::from_env(&Env::empty()).unwrap(),
            AppLimits::default()
        );
        for var in [
            MAX_CONNECTIONS_VAR,
            MAX_CHANNELS_PER_CONNECTION_VAR,
            MAX_SUBSCRIBES_PER_SECOND_VAR,
            MAX_QUEUED_BYTES_VAR,
        ] {
            let zero = Env::from_pairs([(var, "0")]);
            assert_eq!(
                AppLimits::from_env(&zero).unwrap_err().variable(),
                Some(var)
            );
            let junk = Env::from_pairs([(var, "many")]);
            assert_eq!(
                AppLimits::from_env(&junk).unwrap_err().variable(),
                Some(var)
            );
        }
        let huge = Env::from_pairs([(MAX_SUBSCRIBES_PER_SECOND_VAR, "99999999999")]);
        assert!(AppLimits::from_env(&huge).is_err());
    }

    #[test]
    fn an_apps_file_replaces_only_what_it_names() {
        let base = AppLimits {
            max_channels_per_connection: 5,
            ..AppLimits::default()
        };
        let fields = serde_json::json!({"client_events": false, "max_connections": 3});
        let limits = base.overridden_by(fields.as_object().unwrap()).unwrap();
        assert!(!limits.client_events);
        assert_eq!(limits.max_connections, 3);
        assert_eq!(limits.max_channels_per_connection, 5, "from the base");
        let unknown = serde_json::json!({"max_conections": 3});
        assert!(
            base.overridden_by(unknown.as_object().unwrap())
                .unwrap_err()
                .contains("max_conections")
        );
        let zero = AppLimits {
            max_queued_bytes: 0,
            ..AppLimits::default()
        };
        assert!(zero.check().unwrap_err().contains("max_queued_bytes"));
    }
}
