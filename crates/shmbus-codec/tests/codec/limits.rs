//! Limits the codec keeps whatever the input or the schema (eighth
//! adversarial pass): messages stay one short line, encode refuses what
//! decode would refuse as too large, and a rounded integer is not called
//! out of range.

use postcard_schema::schema::owned::{
    OwnedDataModelType as D, OwnedDataModelVariant as V, OwnedNamedType, OwnedNamedValue,
    OwnedNamedVariant,
};
use serde_json::{Value, json};
use shmbus_codec::{Codec, DecodeProblem, EncodeProblem, MAX_VALUES, parse_json};

fn ty(name: &str, ty: D) -> OwnedNamedType {
    OwnedNamedType {
        name: name.to_string(),
        ty,
    }
}

/// No message is longer than this, nor holds a control character.
fn short(what: &str, msg: &str) {
    assert!(
        msg.len() < 400,
        "{what}: {} bytes: {}",
        msg.len(),
        &msg[..msg.len().min(400)]
    );
    assert!(
        !msg.chars().any(char::is_control),
        "{what}: a control character in {msg:?}"
    );
}

#[test]
fn messages_stay_one_short_line_whatever_the_input_or_the_schema() {
    // From the input: a 100,000-digit decimal string, a key given twice.
    let c = Codec::parse("struct A { x: u64 }").unwrap();
    let digits = "9".repeat(100_000);
    let e = c.encode(&json!({ "x": digits })).unwrap_err();
    assert!(matches!(e.problem, EncodeProblem::IntOutOfRange { .. }));
    let msg = e.to_string();
    short("decimal string", &msg);
    assert!(msg.contains("(100000 bytes) does not fit in u64"), "{msg}");
    let key = format!("\u{1b}[2J{}", "k".repeat(100_000));
    let text = format!(
        r#"{{"{0}": 1, "{0}": 2}}"#,
        key.replace('\u{1b}', "\\u001b")
    );
    let msg = parse_json(text.as_bytes()).unwrap_err().to_string();
    short("duplicate key", &msg);
    assert!(msg.contains("(100004 bytes) appears twice"), "{msg}");

    // From the schema (a segment's creator chose it): 3,000 fields and
    // variants, a type name of 10 kB with terminal escapes.
    let fields: Vec<OwnedNamedValue> = (0..3000)
        .map(|i| OwnedNamedValue {
            name: format!("field_{i}\u{1b}]0;"),
            ty: ty("u8", D::U8),
        })
        .collect();
    let c = Codec::new(ty("Many", D::Struct(fields))).unwrap();
    let msg = c.encode(&json!({"nope": 1})).unwrap_err().to_string();
    short("fields", &msg);
    assert!(msg.contains("field_0\\u{1b}]0;, field_1"), "{msg}");
    assert!(msg.ends_with(" more"), "{msg}");
    let variants: Vec<OwnedNamedVariant> = (0..3000)
        .map(|i| OwnedNamedVariant {
            name: format!("V{i}{}", "v".repeat(100)),
            ty: V::UnitVariant,
        })
        .collect();
    let c = Codec::new(ty("E", D::Enum(variants))).unwrap();
    let msg = c.encode(&json!("nope")).unwrap_err().to_string();
    short("variants", &msg);
    assert!(msg.ends_with(" more"), "{msg}");
    let name = format!("\u{1b}[2J\u{9b}{}<2>", "n".repeat(10_000));
    let c = Codec::new(ty(
        "S",
        D::Struct(vec![OwnedNamedValue {
            name: "s".into(),
            ty: ty(&name, D::String),
        }]),
    ))
    .unwrap();
    let msg = c.encode(&json!({"s": "abc"})).unwrap_err().to_string();
    short("encode capacity", &msg);
    assert!(msg.starts_with(".s: 3 bytes exceed \\u{1b}[2J"), "{msg}");
    let e = c.decode(&[3, b'a', b'b', b'c']).unwrap_err();
    assert!(matches!(e.problem, DecodeProblem::OverCapacity { .. }));
    short("decode capacity", &e.to_string());
}

/// The decoder refuses a frame that would produce more than `MAX_VALUES`
/// JSON values; the encoder made such frames from JSON (a `Vec<()>` of
/// 1.1 million `null`s is 4 bytes), which `shmbus pub` published and
/// `shmbus echo` then could not show. Both count the same way now: what
/// encodes decodes, one more value is refused by both.
#[test]
fn encode_refuses_exactly_what_decode_refuses_as_too_large() {
    // (schema, the value with n elements, values outside the list, values
    // one element costs)
    type Case = (&'static str, fn(usize) -> Value, usize, usize);
    let cases: [Case; 4] = [
        (
            "struct A { v: Vec<()> }",
            |n| json!({ "v": vec![Value::Null; n] }),
            2,
            1,
        ),
        (
            "struct A { v: Vec<u8> }",
            |n| json!({ "v": vec![7; n] }),
            2,
            1,
        ),
        // A left-out Option field decodes as one value (null).
        (
            "struct A { v: Vec<struct S { a: Option<u8> }> }",
            |n| json!({ "v": vec![json!({}); n] }),
            2,
            2,
        ),
        (
            "(u8, Vec<Option<()>>)",
            |n| json!([1, vec![Value::Null; n]]),
            3,
            1,
        ),
    ];
    for (schema, value, outside, each) in cases {
        let c = Codec::parse(schema).unwrap();
        let most = (MAX_VALUES - outside) / each;
        let frame = c
            .encode(&value(most))
            .unwrap_or_else(|e| panic!("{schema}: {e}"));
        if let Err(e) = c.decode(&frame) {
            panic!("{schema}: {most} elements encode but do not decode: {e}");
        }
        let Err(e) = c.encode(&value(most + 1)) else {
            panic!("{schema}: {} elements encode", most + 1);
        };
        assert_eq!(e.problem, EncodeProblem::TooManyValues, "{schema}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(".v[") || msg.starts_with("[1]["),
            "{schema}: {msg}"
        );
        assert!(msg.contains("more than 1048576 JSON values"), "{msg}");
    }
}

/// A `u128`/`i128` beyond 64 bits written as a JSON number, with all its
/// digits: serde_json reads it as a double, so it may be rounded however
/// it is written. The message said "written with a point or an exponent;
/// write it with all its digits", which the user had done; it now says to
/// write a decimal string, and that string is taken, exactly.
#[test]
fn a_128_bit_number_beyond_64_bits_is_told_to_be_a_string() {
    let c = Codec::parse("struct T { u: u128, i: i128 }").unwrap();
    let enc = |u: &str, i: &str| {
        let v = parse_json(format!(r#"{{"u": {u}, "i": {i}}}"#).as_bytes()).unwrap();
        c.encode(&v)
    };
    for (u, i, field) in [
        ("18446744073709551616", "0", ".u"),
        ("0", "-9223372036854775809", ".i"),
        ("340282366920938463463374607431768211455", "0", ".u"),
    ] {
        let e = enc(u, i).unwrap_err();
        assert!(
            matches!(
                e.problem,
                EncodeProblem::InexactInteger {
                    beyond_64_bits: true,
                    ..
                }
            ),
            "{u} {i}: {e}"
        );
        let msg = e.to_string();
        assert!(msg.starts_with(field), "{msg}");
        assert!(
            msg.contains("beyond 64 bits") && msg.contains("as a decimal string"),
            "{msg}"
        );
        assert!(!msg.contains("with all its digits"), "{msg}");
    }
    // Within 64 bits a number is exact; beyond, the string form is.
    enc("18446744073709551615", "-9223372036854775808").unwrap();
    let exact = enc(r#""18446744073709551616""#, r#""-9223372036854775809""#).unwrap();
    assert_eq!(
        c.to_json(&exact).unwrap(),
        r#"{"u":"18446744073709551616","i":"-9223372036854775809"}"#
    );
}

#[test]
fn a_rounded_integer_is_called_rounded_not_out_of_range() {
    let c = Codec::parse("struct T { u: u64, i: i64, s: u16 }").unwrap();
    let enc = |u: &str, i: &str, s: &str| {
        let v = parse_json(format!(r#"{{"u": {u}, "i": {i}, "s": {s}}}"#).as_bytes()).unwrap();
        c.encode(&v)
    };
    // Within range, exact: taken.
    enc("9007199254740991.0", "-9007199254740991.0", "5e3").unwrap();
    enc("18446744073709551615", "-9223372036854775808", "0").unwrap();
    // Within range, beyond 2^53 with an exponent or a point: may be rounded.
    for (u, i, what) in [
        ("1e16", "0", ".u: 1e+16 may have been rounded"),
        ("0", "-9.2e18", ".i: -9.2e+18 may have been rounded"),
        (
            "9007199254740993.0",
            "0",
            ".u: 9007199254740992.0 may have been rounded",
        ),
    ] {
        let e = enc(u, i, "0").unwrap_err();
        assert!(
            matches!(e.problem, EncodeProblem::InexactInteger { .. }),
            "{u} {i}: {e}"
        );
        let msg = e.to_string();
        assert!(msg.starts_with(what), "{msg}");
        assert!(
            msg.contains("with all its digits, or as a decimal string"),
            "{msg}"
        );
    }
    // Beyond the range: out of range, rounded or not.
    for (u, i, s, what) in [
        ("1e20", "0", "0", ".u: 1e+20 does not fit in u64"),
        ("0", "-1e19", "0", ".i: -1e+19 does not fit in i64"),
        ("0", "0", "1e5", ".s: 100000.0 does not fit in u16"),
        ("-1e16", "0", "0", ".u: -1e+16 does not fit in u64"),
    ] {
        assert_eq!(enc(u, i, s).unwrap_err().to_string(), what);
    }
}

/// `parse_json` built a `serde_json::Value` of whatever the text held:
/// `shmbus pub -` reads lines of up to 16 MiB, and such a line written as
/// `[0,0,0,...]` took 611 MB (8 million values of about 80 bytes each)
/// before the encoder refused it. It now stops at `MAX_JSON_VALUES`, which
/// no encodable value exceeds.
#[test]
fn parse_json_stops_at_the_values_no_frame_can_hold() {
    use shmbus_codec::MAX_JSON_VALUES;
    let list = |n: usize| {
        let mut t = String::with_capacity(2 * n + 2);
        t.push('[');
        for i in 0..n {
            t.push_str(if i == 0 { "0" } else { ",0" });
        }
        t.push(']');
        t
    };
    // The array itself and its elements.
    let v = parse_json(list(MAX_JSON_VALUES - 1).as_bytes()).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(MAX_JSON_VALUES - 1));
    drop(v);
    let e = parse_json(list(MAX_JSON_VALUES).as_bytes()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("more than 2097152 JSON values, more than any frame holds at line 1"),
        "{msg}"
    );
    // The same in objects, strings and nulls, at any depth.
    let mut t = String::from(r#"{"a": [{"b": null}, "#);
    for _ in 0..MAX_JSON_VALUES {
        t.push_str(r#""s","#);
    }
    t.push_str("1]}");
    assert!(
        parse_json(t.as_bytes())
            .unwrap_err()
            .to_string()
            .starts_with("more than 2097152 JSON values")
    );
    // The most values an encodable value can have: every unit variant
    // written as {"Name": null}, two JSON values for one decoded value.
    let c = Codec::parse("struct A { v: Vec<enum E { On, Off }> }").unwrap();
    let n = MAX_VALUES - 2;
    let mut t = String::from(r#"{"v": ["#);
    for i in 0..n {
        t.push_str(if i == 0 {
            r#"{"On":null}"#
        } else {
            r#",{"On":null}"#
        });
    }
    t.push_str("]}");
    let v = parse_json(t.as_bytes()).unwrap();
    let frame = c.encode(&v).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.decode(&frame).is_ok());
}

/// Two JSON keys that are one key of the map's key type (`"7"` and `"007"`
/// for a `u8`) were encoded as that key twice: the frame was published,
/// and the decoder (so `echo`, the recorder, the bridges) refused it as
/// `map key "7" appears twice`. The encoder now refuses the second, naming
/// the first.
#[test]
fn encode_refuses_two_spellings_of_one_map_key() {
    for (schema, json, path, first) in [
        (
            "BTreeMap<u8, u8>",
            r#"{"7": 1, "007": 2}"#,
            r#"["007"]"#,
            r#""7""#,
        ),
        (
            "BTreeMap<i32, u8>",
            r#"{"0": 1, "-0": 2}"#,
            r#"["-0"]"#,
            r#""0""#,
        ),
        (
            "BTreeMap<(u8, u8), u8>",
            r#"{"[1,2]": 1, "[1, 2]": 2}"#,
            r#"["[1, 2]"]"#,
            r#""[1,2]""#,
        ),
        (
            "BTreeMap<f64, u8>",
            r#"{"1.0": 1, "1": 2}"#,
            r#"["1"]"#,
            r#""1.0""#,
        ),
        (
            "BTreeMap<bool, u8>",
            r#"{"true": 1, " true ": 2}"#,
            r#"[" true "]"#,
            r#""true""#,
        ),
    ] {
        let c = Codec::parse(schema).unwrap();
        let v = parse_json(json.as_bytes()).unwrap();
        let e = match c.encode(&v) {
            Ok(frame) => panic!(
                "{schema} {json}: encoded; decoding says {:?}",
                c.decode(&frame).map(|_| ())
            ),
            Err(e) => e,
        };
        assert!(
            matches!(e.problem, EncodeProblem::BadMapKey(_)),
            "{schema}: {e}"
        );
        assert_eq!(
            e.to_string(),
            format!("{path}: bad map key: the same key as {first}"),
            "{schema}"
        );
    }
    // Different keys stay different, whatever they look like.
    let c = Codec::parse("BTreeMap<String, u8>").unwrap();
    let v = parse_json(r#"{"7": 1, "007": 2, " 7": 3}"#.as_bytes()).unwrap();
    let frame = c.encode(&v).unwrap();
    assert_eq!(c.decode(&frame).unwrap(), v);
}
