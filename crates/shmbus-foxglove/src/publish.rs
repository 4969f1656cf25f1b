//! Client publishing (Foxglove's Publish panel): a client advertises a
//! channel on a topic and sends JSON messages; each is encoded with the
//! topic's own schema by the shared codec (ranges, declared capacities,
//! the frame capacity: the error names the field) and published.
//!
//! Only with `--allow-publish`, only on `json` channels, only on topics
//! this server serves (their schema and sizes come from the segment), and
//! never against a live publisher: the topic's publisher lock is taken for
//! each message and released right after, so a sensor that starts later
//! gets its topic back, and a message sent while it runs is refused with
//! its pid.

use std::collections::HashMap;

use shmbus_pub::RawPublisher;
use shmbus_sub::OpenError;

use crate::protocol::ClientChannel;
use crate::topics::Topics;

/// The client channels advertised for publishing.
#[derive(Debug)]
pub struct Publish {
    enabled: bool,
    /// (client id, client channel id) to topic name.
    adverts: HashMap<(u64, u32), String>,
}

impl Publish {
    /// Publishing allowed or not (`--allow-publish`).
    pub fn new(enabled: bool) -> Publish {
        Publish {
            enabled,
            adverts: HashMap::new(),
        }
    }

    /// A client advertised `ch`. The error is for a status message.
    pub fn advertise(
        &mut self,
        client: u64,
        ch: &ClientChannel,
        topics: &Topics,
    ) -> Result<(), String> {
        if !self.enabled {
            return Err(format!(
                "cannot publish on '{}': publishing is off; restart the server with --allow-publish",
                ch.topic
            ));
        }
        if ch.encoding != "json" {
            return Err(format!(
                "cannot publish on '{}': encoding '{}' is not supported; publish JSON (encoding \"json\")",
                ch.topic, ch.encoding
            ));
        }
        if topics.by_name(&ch.topic).is_none() {
            return Err(format!(
                "cannot publish on '{}': no such topic here; shmbus foxglove publishes only on existing topics (see `shmbus list`)",
                ch.topic
            ));
        }
        self.adverts.insert((client, ch.id), ch.topic.clone());
        Ok(())
    }

    /// A client unadvertised its channel `id`.
    pub fn unadvertise(&mut self, client: u64, id: u32) {
        self.adverts.remove(&(client, id));
    }

    /// A client disconnected.
    pub fn client_gone(&mut self, client: u64) {
        self.adverts.retain(|(c, _), _| *c != client);
    }

    /// A message on client channel `channel`: encode and publish it.
    pub fn message(
        &mut self,
        client: u64,
        channel: u32,
        payload: &[u8],
        topics: &Topics,
    ) -> Result<(), String> {
        let name = self.adverts.get(&(client, channel)).ok_or_else(|| {
            format!(
                "client channel {channel} was not advertised (or was refused): advertise it first"
            )
        })?;
        let t = topics
            .by_name(name)
            .ok_or_else(|| format!("cannot publish on '{name}': the topic has gone"))?;
        let value: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| format!("cannot publish on '{name}': the message is not JSON ({e})"))?;
        let frame = t
            .codec()
            .encode_message(&value)
            .map_err(|e| format!("cannot publish on '{name}': {e}"))?;
        let cap = t.frame_capacity();
        if frame.len() > cap {
            return Err(format!(
                "cannot publish on '{name}': the encoded frame is {} bytes, the topic's frames hold at most {cap}: shorten strings or lists",
                frame.len()
            ));
        }
        let seg = t.segment();
        let info = seg.info();
        let topic = seg
            .reopen_topic()
            .map_err(|e| format!("cannot publish on '{name}': {e}"))?;
        let mut publisher = RawPublisher::open(&topic, &info.schema, cap).map_err(|e| match e {
            OpenError::PublisherActive { pid, .. } => format!(
                "cannot publish on '{name}': it has a live publisher (pid {pid}), and a topic has one publisher at a time; stop that publisher to publish from here"
            ),
            other => format!("cannot publish on '{name}': {other}"),
        })?;
        publisher
            .publish_bytes(&frame)
            .map_err(|e| format!("cannot publish on '{name}': {e}"))?;
        Ok(())
    }
}
