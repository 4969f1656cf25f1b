//! Client publishing (Foxglove's Publish panel): a client advertises a
//! channel on a topic and sends JSON messages; each is encoded with the
//! topic's own schema by the shared codec (ranges, declared capacities,
//! the frame capacity: the error names the field) and published.
//!
//! Only with `--allow-publish`, only on `json` channels, only on topics
//! this server serves (their schema and sizes come from the segment),
//! only on topics that exist (opened existing-only: a removed topic is
//! refused, never created again at its key), and
//! never against a live publisher: the topic's publisher lock is taken for
//! each message and released right after, so a sensor that starts later
//! gets its topic back, and a message sent while it runs is refused with
//! its pid.

use std::collections::HashMap;

use shmbus_core::topic::shown;
use shmbus_pub::RawPublisher;
use shmbus_sub::OpenError;

use crate::protocol::ClientChannel;
use crate::topics::Topics;

/// Client channels one client may have advertised at once: each costs
/// the server memory, so a client advertising without end is refused past
/// this (one per topic it publishes is what the Publish panel needs).
pub const MAX_ADVERTS_PER_CLIENT: usize = 256;

/// The client channels advertised for publishing.
#[derive(Debug)]
pub struct Publish {
    enabled: bool,
    /// (client id, client channel id) to topic name.
    adverts: HashMap<(u64, u32), String>,
    /// Client id to how many channels it has advertised.
    per_client: HashMap<u64, usize>,
}

impl Publish {
    /// Publishing allowed or not (`--allow-publish`).
    pub fn new(enabled: bool) -> Publish {
        Publish {
            enabled,
            adverts: HashMap::new(),
            per_client: HashMap::new(),
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
                shown(&ch.topic)
            ));
        }
        if ch.encoding != "json" {
            return Err(format!(
                "cannot publish on '{}': encoding '{}' is not supported; publish JSON (encoding \"json\")",
                shown(&ch.topic),
                shown(&ch.encoding)
            ));
        }
        if topics.by_name(&ch.topic).is_none() {
            return Err(format!(
                "cannot publish on '{}': no such topic here; shmbus foxglove publishes only on existing topics (see `shmbus list`)",
                shown(&ch.topic)
            ));
        }
        if !self.adverts.contains_key(&(client, ch.id)) {
            let n = self.per_client.entry(client).or_insert(0);
            if *n >= MAX_ADVERTS_PER_CLIENT {
                return Err(format!(
                    "cannot advertise channel {} on '{}': this connection already has {MAX_ADVERTS_PER_CLIENT} client channels advertised; unadvertise some first",
                    ch.id, ch.topic
                ));
            }
            *n += 1;
        }
        self.adverts.insert((client, ch.id), ch.topic.clone());
        Ok(())
    }

    /// A client unadvertised its channel `id`.
    pub fn unadvertise(&mut self, client: u64, id: u32) {
        if self.adverts.remove(&(client, id)).is_some() {
            if let Some(n) = self.per_client.get_mut(&client) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// A client disconnected.
    pub fn client_gone(&mut self, client: u64) {
        self.adverts.retain(|(c, _), _| *c != client);
        self.per_client.remove(&client);
    }

    /// A message on client channel `channel`: encode and publish it.
    pub fn message(
        &mut self,
        client: u64,
        channel: u32,
        payload: &[u8],
        topics: &Topics,
    ) -> Result<(), String> {
        if !self.enabled {
            // Nothing is ever advertised then: "advertise it first" would
            // send the client round in a circle.
            return Err(format!(
                "cannot publish on client channel {channel}: publishing is off; restart the server with --allow-publish"
            ));
        }
        let name = self.adverts.get(&(client, channel)).ok_or_else(|| {
            format!(
                "client channel {channel} was not advertised (or was refused): advertise it first"
            )
        })?;
        let t = topics
            .by_name(name)
            .ok_or_else(|| format!("cannot publish on '{name}': the topic has gone"))?;
        let value: serde_json::Value = shmbus_codec::parse_json(payload).map_err(|e| {
            let what = if shmbus_codec::json_refused(&e) {
                "refused"
            } else {
                "not JSON"
            };
            format!("cannot publish on '{name}': the message is {what} ({e})")
        })?;
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
        // Removed (`shmbus rm`, `ipcrm -M`) since the last scan: the server
        // is still attached, but the topic is gone, and opening it as its
        // publisher would create it again at its key.
        let removed = || {
            format!(
                "cannot publish on '{name}': the topic was removed (its segment is gone); shmbus foxglove writes only to topics that exist and never creates one"
            )
        };
        if seg.is_removed() {
            return Err(removed());
        }
        let topic = seg
            .reopen_topic()
            .map_err(|e| format!("cannot publish on '{name}': {e}"))?;
        // Existing only: removed between the check and the open, it is
        // refused the same, and nothing is left at the key.
        let mut publisher =
            RawPublisher::open_existing(&topic, &info.schema, cap).map_err(|e| match e {
                OpenError::PublisherActive { pid, .. } => format!(
                    "cannot publish on '{name}': it has a live publisher (pid {pid}), and a topic has one publisher at a time; stop that publisher to publish from here"
                ),
                OpenError::NotFound { .. } | OpenError::Removed { .. } => removed(),
                other => format!("cannot publish on '{name}': {other}"),
            })?;
        publisher
            .publish_bytes(&frame)
            .map_err(|e| format!("cannot publish on '{name}': {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_client_are_quoted_cut() {
        let topics = Topics::new(Vec::new(), None, None, Vec::new());
        let mut ch = ClientChannel {
            id: 1,
            topic: "t".repeat(100_000),
            encoding: "e".repeat(100_000),
            schema_name: String::new(),
            schema: None,
        };
        let short = |e: String| {
            assert!(e.len() < 400 && e.contains("... (100000 bytes)"), "{e}");
        };
        short(Publish::new(false).advertise(1, &ch, &topics).unwrap_err());
        short(Publish::new(true).advertise(1, &ch, &topics).unwrap_err());
        ch.encoding = "json".into();
        short(Publish::new(true).advertise(1, &ch, &topics).unwrap_err());
    }

    /// With publishing off nothing can be advertised, so a message on a
    /// client channel is told that publishing is off, not sent back to
    /// advertise first (which it cannot).
    #[test]
    fn a_message_while_publishing_is_off_says_so() {
        let topics = Topics::new(Vec::new(), None, None, Vec::new());
        let e = Publish::new(false)
            .message(1, 7, b"{}", &topics)
            .unwrap_err();
        assert!(
            e.contains("publishing is off") && e.contains("--allow-publish"),
            "{e}"
        );
        let e = Publish::new(true)
            .message(1, 7, b"{}", &topics)
            .unwrap_err();
        assert!(e.contains("was not advertised"), "{e}");
    }
}
