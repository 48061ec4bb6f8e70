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
use infra_realtime::{PusherClient, PusherConfig};
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
    let client = PusherClient::new(PusherConfig::new(base, APP_ID, KEY, SECRET)).unwrap();
    run_all(Arc::new(client), Arc::new(WsSubscriber { addr })).await;
    drop(server);
}
