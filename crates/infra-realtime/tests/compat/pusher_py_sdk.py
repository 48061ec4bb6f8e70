# Drives the official PyPI `pusher` SDK (pinned in requirements.txt) against a running
# infra-realtime server for the compatibility test `tests/official_py_sdk.rs`.
# Usage: python pusher_py_sdk.py <port> <socket-id>
# Prints one JSON object: what the server answered each call, and the authorizations the SDK
# signed for <socket-id>.
import json
import sys

import pusher

port, socket_id = int(sys.argv[1]), sys.argv[2]
client = pusher.Pusher(
    app_id="3",
    key="278d425bdf160c739803",
    secret="7ad3773142a6692b25b8",
    host="127.0.0.1",
    port=port,
    ssl=False,
)

out = {}
try:
    out["trigger"] = client.trigger("news", "py.event", {"from": "python"})
    out["send_to_user"] = client.send_to_user("u1", "py.private", {"for": "u1"})
    out["channels_info"] = client.channels_info(prefix_filter="presence-", attributes=["user_count"])
    out["channel_info"] = client.channel_info("news", attributes=["subscription_count"])
    out["users_info"] = client.users_info("presence-room")
    out["private_auth"] = client.authenticate("private-room", socket_id)
    out["presence_auth"] = client.authenticate(
        "presence-room", socket_id, {"user_id": "py", "user_info": {"name": "Py"}}
    )
    out["user_auth"] = client.authenticate_user(socket_id, {"id": "py"})
    # The path this SDK version posts to has no `/apps/{app_id}` prefix.
    out["terminate"] = client.terminate_user_connections("u2")
except Exception as error:  # the test prints what the SDK raised
    out["error"] = "%s: %s" % (type(error).__name__, error)
    print(json.dumps(out))
    sys.exit(1)
print(json.dumps(out))
