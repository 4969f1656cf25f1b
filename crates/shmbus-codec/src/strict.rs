//! JSON text to a [`Value`] for publishing, refusing what `serde_json`
//! would take silently: an object with the same key twice.
//!
//! `serde_json::from_str::<Value>` keeps the last of two equal keys, so
//! `{"x": 1, "x": 2}` published `x = 2` and dropped the 1 without a word. A
//! value published on the bus is a measurement someone typed or a program
//! built; two values for one field is a mistake in either, so every entry
//! that publishes JSON (`shmbus pub`, the C API, the MQTT bridge's inbound
//! routes, the Foxglove server's client publish) parses through
//! [`parse_json`] and says which key, where.
//!
//! It also refuses text of more than [`MAX_JSON_VALUES`] values, as soon as
//! it has read that many: no value with more can be encoded (the encoder
//! refuses a value of more than [`crate::MAX_VALUES`], and each of those
//! stands for at most two JSON values), and a `serde_json::Value` takes
//! about 80 bytes, so the 16 MiB line `shmbus pub -` accepts, written as
//! `[0,0,0,...]`, took 611 MB before it was refused.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The most values (scalars, arrays, objects) [`parse_json`] reads: twice
/// [`crate::MAX_VALUES`], as a unit variant written `{"Name": null}` is
/// two JSON values for one decoded value. Text with more could never be
/// encoded as a frame.
pub const MAX_JSON_VALUES: usize = 2 * crate::MAX_VALUES;

/// Parse one JSON value, as `serde_json::from_slice` does, but an object
/// that holds a key twice is an error naming the key and its position,
/// and so is the value after the first [`MAX_JSON_VALUES`].
pub fn parse_json(text: &[u8]) -> Result<Value, serde_json::Error> {
    let budget = Cell::new(MAX_JSON_VALUES);
    let mut de = serde_json::Deserializer::from_slice(text);
    let v = Strict(&budget).deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Whether a [`parse_json`] error refuses JSON (a key given twice, more
/// than [`MAX_JSON_VALUES`] values) rather than text that is not JSON (a
/// syntax error, text cut short, nesting too deep). Messages say "not
/// JSON" only for the second.
pub fn json_refused(e: &serde_json::Error) -> bool {
    e.classify() == serde_json::error::Category::Data
}

/// A [`Value`] built with duplicate keys refused, at every depth, and
/// with at most as many values as the budget it counts down.
#[derive(Clone, Copy)]
struct Strict<'b>(&'b Cell<usize>);

impl Strict<'_> {
    fn spend<E: de::Error>(self) -> Result<(), E> {
        match self.0.get() {
            0 => Err(E::custom(format_args!(
                "more than {MAX_JSON_VALUES} JSON values, more than any frame holds"
            ))),
            n => {
                self.0.set(n - 1);
                Ok(())
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::from(n))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::from(n))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        self.spend()?;
        // JSON text has no NaN or infinity; `from` maps them to null.
        Ok(Value::from(n))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(s))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.spend()?;
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(x) = seq.next_element_seed(self)? {
            v.push(x);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.spend()?;
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if m.contains_key(&k) {
                // The key is the input's: quoted and cut, so a key of
                // megabytes gives one short line.
                return Err(de::Error::custom(format_args!(
                    "key {} appears twice in one object",
                    crate::error::quote_short(&k)
                )));
            }
            let v = map.next_value_seed(self)?;
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn refused_json_is_told_from_text_that_is_not_json() {
        for refused in [&b"{\"a\": 1, \"a\": 2}"[..], b"[{\"k\": [], \"k\": 0}]"] {
            let e = parse_json(refused).expect_err("a key given twice");
            assert!(json_refused(&e), "{e}");
        }
        for not_json in [&b"{nope"[..], b"[1, 2", b"", b"{\"a\": 1} x"] {
            let e = parse_json(not_json).expect_err("not JSON");
            assert!(!json_refused(&e), "{e}");
        }
    }
    use super::*;

    #[test]
    fn the_same_values_as_serde_json_without_duplicates() {
        for text in [
            r#"{"t_us": 5, "accel": [1.5, -2, 3e300], "ok": true, "id": null}"#,
            r#"{"a": {"b": {"c": [{"d": "é\u0001"}, 18446744073709551615, -9223372036854775808]}}}"#,
            "[]",
            "{}",
            "  7 ",
            r#""s""#,
            r#"{"x": 1, "X": 2, "x ": 3}"#,
            r#"[{"x": 1}, {"x": 2}]"#,
            "0.1",
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(parse_json(text.as_bytes()).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn a_key_twice_is_refused_at_any_depth_with_its_name_and_place() {
        for (text, key, line) in [
            (r#"{"x": 1, "x": 2}"#, "x", 1),
            ("{\"a\": {\n\"b\": 1,\n\"b\": 1}}", "b", 3),
            (r#"[0, {"v": [{"k": 1, "k": {}}]}]"#, "k", 1),
            (r#"{"\u0078": 1, "x": 2}"#, "x", 1),
        ] {
            let e = parse_json(text.as_bytes()).unwrap_err();
            let s = e.to_string();
            assert!(
                s.contains(&format!("key \"{key}\" appears twice")),
                "{text}: {s}"
            );
            assert_eq!(e.line(), line, "{text}: {s}");
        }
    }

    #[test]
    fn what_serde_json_refuses_stays_refused() {
        for text in ["", "{", r#"{"x": 1} 2"#, "[1,]", "NaN", "{\"x\":\u{0}}"] {
            assert!(parse_json(text.as_bytes()).is_err(), "{text:?}");
            assert!(serde_json::from_str::<Value>(text).is_err(), "{text:?}");
        }
        // serde_json's nesting limit holds: an error, not a stack overflow.
        let deep = "[".repeat(100_000);
        assert!(parse_json(deep.as_bytes()).is_err());
    }
}
