//! Where everything goes on the broker: one place for every topic name.
//!
//! ```text
//! <prefix>/<board>/$state               online | offline (birth and last will), retained
//! <prefix>/<board>/$stats               the bridge's counters (JSON), retained
//! <prefix>/<board>/$in/<topic>          one [[bridge.in]]: state and counters (JSON), retained
//! <prefix>/<board>/<topic>              a frame as JSON (generation, times, value)
//! <prefix>/<board>/<topic>/$raw         the same frame as postcard bytes
//! <prefix>/<board>/<topic>/$status      publisher alive/stopped, stale (JSON), retained
//! <prefix>/<board>/<topic>/$schema      the postcard-schema bytes of the frames, retained
//! <prefix>/<board>/<topic>/$jsonschema  JSON Schema of the value, retained
//! <prefix>/<board>/<topic>/$schematext  the schema as declaration text, retained
//! ```
//!
//! Topic names on the bus never contain `$` (letters, digits, `_ . - /`),
//! so a `$` level can never collide with a topic; MQTT wildcards skip only
//! a `$` in the *first* level, so `<prefix>/<board>/#` sees everything.

/// The broker-side names of one board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    base: String,
}

impl Names {
    /// Names under `<prefix>/<board>`.
    pub fn new(prefix: &str, board: &str) -> Names {
        Names {
            base: format!("{prefix}/{board}"),
        }
    }

    /// `<prefix>/<board>`.
    pub fn base(&self) -> &str {
        &self.base
    }
    /// Birth and last will.
    pub fn state(&self) -> String {
        format!("{}/$state", self.base)
    }
    /// The bridge's counters.
    pub fn stats(&self) -> String {
        format!("{}/$stats", self.base)
    }
    /// State of the `[[bridge.in]]` into local `topic`.
    pub fn inbound(&self, topic: &str) -> String {
        format!("{}/$in/{topic}", self.base)
    }
    /// A topic's JSON frames.
    pub fn data(&self, topic: &str) -> String {
        format!("{}/{topic}", self.base)
    }
    /// A topic's `$`-suffixed companion: `raw`, `status`, `schema`,
    /// `jsonschema`, `schematext`.
    pub fn meta(&self, topic: &str, what: &str) -> String {
        format!("{}/{topic}/${what}", self.base)
    }
}

/// Payload of `$state` while the bridge is connected (the birth message).
pub const ONLINE: &str = "online";
/// Payload of `$state` after the bridge stopped or lost its link (the
/// last will, or the bridge's own goodbye).
pub const OFFLINE: &str = "offline";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_sits_under_prefix_and_board() {
        let n = Names::new("fleet/eu", "b17");
        assert_eq!(n.state(), "fleet/eu/b17/$state");
        assert_eq!(n.stats(), "fleet/eu/b17/$stats");
        assert_eq!(n.inbound("setpoint"), "fleet/eu/b17/$in/setpoint");
        assert_eq!(n.data("power/battery"), "fleet/eu/b17/power/battery");
        assert_eq!(n.meta("imu", "schema"), "fleet/eu/b17/imu/$schema");
    }
}
