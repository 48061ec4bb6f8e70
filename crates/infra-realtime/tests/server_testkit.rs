//! infra-core's `Realtime` suite, received by a WebSocket client of the embedded server:
//! once through the in-process handle, once through `PusherClient` over the HTTP API.
#![cfg(all(feature = "server", feature = "pusher"))]

mod server_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use infra_core::ChannelName;
use infra_core::testkit::realtime::{Inbox, Received, Subscriber, run_all};
use infra_realtime::{EncryptionMasterKey, PusherClient, PusherConfig};
use server_support::*;

/// Subscribes over a fresh WebSocket connection per channel.
struct WsSubscriber {
    addr: SocketAddr,
}

struct WsInbox {
    client: Client,
}

#[async_trait]
impl Subscriber for WsSubscriber {
    async fn subscribe(&self, channel: &ChannelName) -> Box<dyn Inbox> {
        let mut client = Client::connect(self.addr).await;
        let reply = if channel.is_private() {
            client.subscribe_private(channel.as_str()).await
        } else {
            client.subscribe(channel.as_str()).await
        };
        assert_eq!(
            reply["event"], "pusher_internal:subscription_succeeded",
            "{reply}"
        );
        Box::new(WsInbox { client })
    }
}

#[async_trait]
impl Inbox for WsInbox {
    async fn next(&mut self, within: Duration) -> Option<Received> {
        let read = async {
            loop {
                let frame = self.client.recv().await;
                let event = frame["event"].as_str().unwrap_or_default();
                if !event.starts_with("pusher") {
                    return Received {
                        channel: frame["channel"].as_str().unwrap_or_default().to_owned(),
                        event: event.to_owned(),
                        data: frame["data"].as_str().unwrap_or_default().to_owned(),
                    };
                }
            }
        };
        tokio::time::timeout(within, read).await.ok()
    }
}

#[tokio::test]
async fn the_in_process_handle_passes_the_realtime_suite() {
    let (server, addr) = start_default().await;
    run_all(Arc::new(server.clone()), Arc::new(WsSubscriber { addr })).await;
}

#[tokio::test]
async fn pusher_client_against_the_server_passes_the_realtime_suite() {
    let (server, addr) = start_default().await;
    let base = url::Url::parse(&format!("http://{addr}")).unwrap();
    // With a master key the client seals encrypted channels' data; the server relays it.
    let config = PusherConfig::new(base, APP_ID, KEY, SECRET)
        .with_encryption_master_key(EncryptionMasterKey::from_bytes([7; 32]));
    let client = PusherClient::new(config).unwrap();
    run_all(Arc::new(client), Arc::new(WsSubscriber { addr })).await;
    drop(server);
}

#[tokio::test]
async fn without_pusher_variables_trigger_reaches_websocket_subscribers() {
    use infra_core::{Env, EventName};
    use infra_realtime::RealtimeService;

    let service = RealtimeService::from_env(&Env::empty()).unwrap();
    assert_eq!(service.backend(), "local");
    let server = service.server().expect("the embedded server").clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().merge(server.router());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let key = server.app().key.clone();
    let mut client = Client::connect_with(addr, &key, 7).await;
    client.subscribe("calendar").await;
    service
        .realtime()
        .trigger(
            &[ChannelName::new("calendar").unwrap()],
            &EventName::new("meeting.moved").unwrap(),
            &serde_json::json!({"id": 7}),
        )
        .await
        .unwrap();
    let got = client.recv_event("meeting.moved", Some("calendar")).await;
    assert_eq!(got["data"], "{\"id\":7}");
    assert_eq!(server.connection_count(), 1);
}
