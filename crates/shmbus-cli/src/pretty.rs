//! Decoded frames as readable text (`shmbus echo` without `--json`):
//! one `field: value` per line, nested structs indented, short arrays of
//! plain values on one line.
//!
//! ```text
//! t_us: 1234
//! acc: [0.0, -0.25, 9.81]
//! fix:
//!   Gps:
//!     sats: 9
//! ```
//!
//! A field name or map key is written bare when it reads as one word (no
//! white space, no `:` or `"`, no control character), and as a JSON string
//! otherwise (`"a b": 1`, `"cpu\nalarm: FIRE": 20.5`), as the schema text
//! quotes such names: names come from the schema and keys from the frame,
//! both chosen by whoever publishes, and a newline in one must not make a
//! line that looks like another field.

use std::borrow::Cow;

use serde_json::Value;

/// Render `v` as indented lines (no trailing newline).
pub fn render(v: &Value) -> String {
    let mut s = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => fields(m, 0, &mut s),
        other => s.push_str(&inline(other)),
    }
    while s.ends_with('\n') {
        s.pop();
    }
    s
}

fn is_plain(v: &Value) -> bool {
    !matches!(v, Value::Object(m) if !m.is_empty())
        && !matches!(v, Value::Array(a) if a.iter().any(|x| !is_plain(x)))
}

fn inline(v: &Value) -> String {
    match v {
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(inline).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Number(n) => {
            // Keep a float recognisable: 0.0, not 0.
            let t = n.to_string();
            if n.is_f64() && !t.contains(['.', 'e', 'E']) {
                format!("{t}.0")
            } else {
                t
            }
        }
        other => other.to_string(),
    }
}

/// A field name or map key as a line shows it: bare when it is one plain
/// word, else quoted and escaped as a JSON string.
fn key(k: &str) -> Cow<'_, str> {
    let plain = !k.is_empty()
        && !k.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, ':' | '"')
                || shmbus_toolbox::printable::is_unsafe(c)
        });
    if plain {
        Cow::Borrowed(k)
    } else {
        Cow::Owned(Value::from(k).to_string())
    }
}

fn fields(m: &serde_json::Map<String, Value>, depth: usize, s: &mut String) {
    for (k, v) in m {
        for _ in 0..depth {
            s.push_str("  ");
        }
        s.push_str(&key(k));
        s.push(':');
        block(v, depth, s);
    }
}

fn block(v: &Value, depth: usize, s: &mut String) {
    if is_plain(v) && (inline(v).len() <= 100 || !v.is_array()) {
        s.push(' ');
        s.push_str(&inline(v));
        s.push('\n');
        return;
    }
    s.push('\n');
    match v {
        Value::Object(m) => fields(m, depth + 1, s),
        Value::Array(a) => {
            for x in a {
                for _ in 0..depth + 1 {
                    s.push_str("  ");
                }
                s.push('-');
                match x {
                    Value::Object(m) if !m.is_empty() => {
                        s.push('\n');
                        fields(m, depth + 2, s);
                    }
                    other => block(other, depth + 1, s),
                }
            }
        }
        other => {
            s.push_str(&inline(other));
            s.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_nested_values() {
        let v = json!({"t": 1, "acc": [0.0, 9.81], "fix": {"Gps": {"sats": 9}}, "name": "imu0",
                       "pts": [{"x": 1}, {"x": 2}]});
        assert_eq!(
            render(&v),
            "t: 1\nacc: [0.0, 9.81]\nfix:\n  Gps:\n    sats: 9\nname: \"imu0\"\npts:\n  -\n    x: 1\n  -\n    x: 2"
        );
        assert_eq!(render(&json!(5)), "5");
    }

    /// A newline in a map key (from the frame) or a field name (from the
    /// schema) made a line that read as another field: `alarm: FIRE: 20.5`
    /// at the top level. Keys that are not one plain word are quoted.
    #[test]
    fn keys_that_are_not_one_word_are_quoted() {
        let v = json!({"temps": {"cpu\nalarm: FIRE": 20.5, "": 1.0, "gpu-0": 3.0, "é": 1},
                       "a b": 1, "x\ny": 2, "t:": 3, "q\"": 4, "-5": 5, "bidi\u{202e}": 6,
                       "tab\t": 7});
        let text = render(&v);
        assert_eq!(
            text,
            "temps:\n  \"cpu\\nalarm: FIRE\": 20.5\n  \"\": 1.0\n  gpu-0: 3.0\n  é: 1\n\
             \"a b\": 1\n\"x\\ny\": 2\n\"t:\": 3\n\"q\\\"\": 4\n-5: 5\n\"bidi\u{202e}\": 6\n\"tab\\t\": 7"
        );
        // Every line is a field of the value: as many lines as fields.
        assert_eq!(text.lines().count(), 12);
    }
}
