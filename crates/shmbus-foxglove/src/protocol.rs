//! The Foxglove WebSocket protocol, the part this server speaks: the JSON
//! messages (`op` field) and the binary messages (one opcode byte, then
//! little-endian fields), and the choice of subprotocol.
//!
//! Two subprotocol names carry the same messages for everything used here:
//! `foxglove.websocket.v1` (Lichtblick, the `@foxglove/ws-protocol` npm
//! client, older Foxglove) and `foxglove.sdk.v1` (current Foxglove and its
//! SDK). The server accepts either and answers with the first one the
//! client lists that it knows.

use serde::{Deserialize, Serialize};
use shmbus_core::topic::shown;

/// The subprotocol of Lichtblick and the `@foxglove/ws-protocol` client.
pub const WEBSOCKET_V1: &str = "foxglove.websocket.v1";
/// The subprotocol of current Foxglove and the Foxglove SDK.
pub const SDK_V1: &str = "foxglove.sdk.v1";
/// Every subprotocol the server accepts.
pub const SUBPROTOCOLS: [&str; 2] = [WEBSOCKET_V1, SDK_V1];

/// Pick the subprotocol for a client from its `Sec-WebSocket-Protocol`
/// header values (each a comma-separated list), in the client's order of
/// preference. `None` if it offers none that the server speaks.
pub fn choose_subprotocol<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    headers
        .into_iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .find_map(|offer| SUBPROTOCOLS.into_iter().find(|p| *p == offer))
}

/// Binary opcode of a server's Message Data.
pub const OP_MESSAGE_DATA: u8 = 1;
/// Binary opcode of a client's Message Data (client publishing).
pub const OP_CLIENT_MESSAGE_DATA: u8 = 1;
/// Bytes before the payload of a server's Message Data: opcode, u32
/// subscription id, u64 timestamp.
pub const MESSAGE_DATA_HEADER: usize = 1 + 4 + 8;

/// A server's Message Data: `[1][subscription id: u32 LE][log time ns: u64 LE][payload]`.
pub fn message_data(subscription: u32, log_time_ns: u64, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(MESSAGE_DATA_HEADER + payload.len());
    m.push(OP_MESSAGE_DATA);
    m.extend_from_slice(&subscription.to_le_bytes());
    m.extend_from_slice(&log_time_ns.to_le_bytes());
    m.extend_from_slice(payload);
    m
}

/// A client's Message Data, split: the client channel id and the payload.
pub fn parse_client_message_data(m: &[u8]) -> Result<(u32, &[u8]), String> {
    match m {
        [OP_CLIENT_MESSAGE_DATA, a, b, c, d, payload @ ..] => {
            Ok((u32::from_le_bytes([*a, *b, *c, *d]), payload))
        }
        [OP_CLIENT_MESSAGE_DATA, ..] => Err(format!(
            "binary message of {} is too short for Message Data (at least 5)",
            shmbus_core::plural::count(m.len(), "byte")
        )),
        [op, ..] => Err(format!(
            "binary opcode {op} is not supported (only 1, Message Data)"
        )),
        [] => Err("empty binary message".to_string()),
    }
}

/// Status levels.
pub mod level {
    /// Information.
    pub const INFO: u8 = 0;
    /// Warning.
    pub const WARNING: u8 = 1;
    /// Error.
    pub const ERROR: u8 = 2;
}

/// A channel as advertised to clients.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    /// Channel id (never reused within one server run).
    pub id: u32,
    /// The topic name.
    pub topic: String,
    /// Message encoding: always `json`.
    pub encoding: &'static str,
    /// The schema's type name.
    pub schema_name: String,
    /// The JSON Schema, as text.
    pub schema: String,
    /// Always `jsonschema`.
    pub schema_encoding: &'static str,
}

/// A JSON message from the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ServerMessage<'a> {
    /// Sent first on every connection.
    ServerInfo {
        /// Free-form server name.
        name: &'a str,
        /// Optional features (`clientPublish`).
        capabilities: Vec<&'static str>,
        /// Encodings a client may publish in (only with `clientPublish`).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        supported_encodings: Vec<&'static str>,
        /// Key-value pairs about the server.
        metadata: &'a std::collections::BTreeMap<String, String>,
        /// Changes when the server restarts.
        session_id: &'a str,
    },
    /// A message for the user (problems panel).
    Status {
        /// [`level`].
        level: u8,
        /// The text.
        message: String,
        /// A later status with the same id replaces this one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Earlier statuses that no longer hold.
    RemoveStatus {
        /// Their ids.
        status_ids: Vec<String>,
    },
    /// New channels.
    Advertise {
        /// The channels.
        channels: &'a [Channel],
    },
    /// Channels that are gone.
    Unadvertise {
        /// Their ids.
        channel_ids: Vec<u32>,
    },
}

impl ServerMessage<'_> {
    /// The JSON text.
    pub fn to_text(&self) -> String {
        // Serializing these plain structs to a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One subscription of a Subscribe message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// Chosen by the client; unique among its active subscriptions.
    pub id: u32,
    /// An advertised channel.
    pub channel_id: u32,
}

/// A channel a client advertises to publish on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientChannel {
    /// Chosen by the client.
    pub id: u32,
    /// The topic to publish on.
    pub topic: String,
    /// Message encoding (this server takes `json`).
    pub encoding: String,
    /// The client's name for the type.
    #[serde(default)]
    pub schema_name: String,
    /// Optional schema text.
    #[serde(default)]
    pub schema: Option<String>,
}

/// A JSON message from a client that this server handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Start streaming channels.
    Subscribe(Vec<Subscription>),
    /// Stop streaming.
    Unsubscribe(Vec<u32>),
    /// Channels the client will publish on.
    Advertise(Vec<ClientChannel>),
    /// Client channels that are gone.
    Unadvertise(Vec<u32>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subscribe {
    subscriptions: Vec<Subscription>,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Unsubscribe {
    subscription_ids: Vec<u32>,
}
#[derive(Deserialize)]
struct Advertise {
    channels: Vec<ClientChannel>,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Unadvertise {
    channel_ids: Vec<u32>,
}
#[derive(Deserialize)]
struct Op {
    op: String,
}

/// The client operations the server handles, for error messages.
pub const CLIENT_OPS: &str = "subscribe, unsubscribe, advertise, unadvertise";

/// Parse a client's JSON message. The error is a short sentence for a
/// status message.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, String> {
    let op: Op = serde_json::from_str(text)
        .map_err(|e| format!("not a JSON object with an \"op\" field: {e}"))?;
    let bad = |e: serde_json::Error| format!("malformed '{}' message: {e}", op.op);
    Ok(match op.op.as_str() {
        "subscribe" => ClientMessage::Subscribe(
            serde_json::from_str::<Subscribe>(text)
                .map_err(bad)?
                .subscriptions,
        ),
        "unsubscribe" => ClientMessage::Unsubscribe(
            serde_json::from_str::<Unsubscribe>(text)
                .map_err(bad)?
                .subscription_ids,
        ),
        "advertise" => ClientMessage::Advertise(
            serde_json::from_str::<Advertise>(text)
                .map_err(bad)?
                .channels,
        ),
        "unadvertise" => ClientMessage::Unadvertise(
            serde_json::from_str::<Unadvertise>(text)
                .map_err(bad)?
                .channel_ids,
        ),
        other => {
            return Err(format!(
                "operation '{}' is not supported by shmbus foxglove (it handles {CLIENT_OPS})",
                shown(other)
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subprotocol_follows_the_clients_preference() {
        assert_eq!(
            choose_subprotocol(["foxglove.websocket.v1"]),
            Some(WEBSOCKET_V1)
        );
        assert_eq!(choose_subprotocol(["foxglove.sdk.v1"]), Some(SDK_V1));
        assert_eq!(
            choose_subprotocol(["foxglove.sdk.v1, foxglove.websocket.v1"]),
            Some(SDK_V1)
        );
        assert_eq!(
            choose_subprotocol(["x", "foxglove.websocket.v1,foxglove.sdk.v1"]),
            Some(WEBSOCKET_V1)
        );
        assert_eq!(choose_subprotocol(["foxglove.websocket.v2", "chat"]), None);
        assert_eq!(choose_subprotocol([]), None);
    }

    #[test]
    fn message_data_layout() {
        let m = message_data(0x0403_0201, 0x0c0b_0a09_0807_0605, b"{}");
        assert_eq!(m, [1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, b'{', b'}']);
    }

    #[test]
    fn client_message_data() {
        assert_eq!(
            parse_client_message_data(&[1, 7, 0, 0, 0, b'{', b'}']),
            Ok((7, &b"{}"[..]))
        );
        assert_eq!(
            parse_client_message_data(&[1, 7, 0, 0, 0]),
            Ok((7, &b""[..]))
        );
        assert!(parse_client_message_data(&[1, 7]).is_err());
        assert!(
            parse_client_message_data(&[2, 0, 0, 0, 0])
                .unwrap_err()
                .contains("opcode 2")
        );
        assert!(parse_client_message_data(&[]).is_err());
    }

    #[test]
    fn server_messages_as_the_spec_writes_them() {
        let meta = std::collections::BTreeMap::from([("k".to_string(), "v".to_string())]);
        let info = ServerMessage::ServerInfo {
            name: "shmbus",
            capabilities: vec!["clientPublish"],
            supported_encodings: vec!["json"],
            metadata: &meta,
            session_id: "1",
        };
        assert_eq!(
            info.to_text(),
            r#"{"op":"serverInfo","name":"shmbus","capabilities":["clientPublish"],"supportedEncodings":["json"],"metadata":{"k":"v"},"sessionId":"1"}"#
        );
        let ch = [Channel {
            id: 3,
            topic: "imu".into(),
            encoding: "json",
            schema_name: "Imu".into(),
            schema: "{}".into(),
            schema_encoding: "jsonschema",
        }];
        assert_eq!(
            ServerMessage::Advertise { channels: &ch }.to_text(),
            r#"{"op":"advertise","channels":[{"id":3,"topic":"imu","encoding":"json","schemaName":"Imu","schema":"{}","schemaEncoding":"jsonschema"}]}"#
        );
        assert_eq!(
            ServerMessage::Unadvertise {
                channel_ids: vec![3]
            }
            .to_text(),
            r#"{"op":"unadvertise","channelIds":[3]}"#
        );
        assert_eq!(
            ServerMessage::Status {
                level: 1,
                message: "m".into(),
                id: Some("s".into())
            }
            .to_text(),
            r#"{"op":"status","level":1,"message":"m","id":"s"}"#
        );
        assert_eq!(
            ServerMessage::RemoveStatus {
                status_ids: vec!["s".into()]
            }
            .to_text(),
            r#"{"op":"removeStatus","statusIds":["s"]}"#
        );
    }

    #[test]
    fn client_messages_parse_and_bad_ones_say_why() {
        assert_eq!(
            parse_client_message(r#"{"op":"subscribe","subscriptions":[{"id":0,"channelId":3}]}"#),
            Ok(ClientMessage::Subscribe(vec![Subscription {
                id: 0,
                channel_id: 3
            }]))
        );
        assert_eq!(
            parse_client_message(r#"{"op":"unsubscribe","subscriptionIds":[0,1]}"#),
            Ok(ClientMessage::Unsubscribe(vec![0, 1]))
        );
        assert_eq!(
            parse_client_message(
                r#"{"op":"advertise","channels":[{"id":1,"topic":"cmd","encoding":"json","schemaName":"Cmd"}]}"#
            ),
            Ok(ClientMessage::Advertise(vec![ClientChannel {
                id: 1,
                topic: "cmd".into(),
                encoding: "json".into(),
                schema_name: "Cmd".into(),
                schema: None,
            }]))
        );
        assert_eq!(
            parse_client_message(r#"{"op":"unadvertise","channelIds":[1]}"#),
            Ok(ClientMessage::Unadvertise(vec![1]))
        );
        let e = parse_client_message(r#"{"op":"getParameters","parameterNames":[]}"#).unwrap_err();
        assert!(e.contains("'getParameters' is not supported"), "{e}");
        let e =
            parse_client_message(r#"{"op":"subscribe","subscriptions":[{"id":-1}]}"#).unwrap_err();
        assert!(e.starts_with("malformed 'subscribe' message"), "{e}");
        // The client's text is quoted as every shmbus message quotes
        // text from outside: cut, with its length.
        let long = format!(r#"{{"op":"{}"}}"#, "x".repeat(100_000));
        let e = parse_client_message(&long).unwrap_err();
        assert!(e.len() < 200 && e.contains("... (100000 bytes)"), "{e}");
        assert!(parse_client_message("[1,2]").is_err());
        assert!(parse_client_message("").is_err());
    }
}
