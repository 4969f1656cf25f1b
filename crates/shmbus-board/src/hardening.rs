//! Hardening scenarios run on the emulated board (being written).

/// A named scenario: returns a one-line result on success, the reason on failure.
pub type Scenario = (&'static str, fn() -> Result<String, String>);

/// The hardening scenarios, in the order to run them.
pub fn scenarios() -> Vec<Scenario> {
    Vec::new()
}
