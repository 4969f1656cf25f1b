//! The generated JSON Schema validates every decoded value, and refuses
//! values the encoder refuses.

use serde_json::{Value, json};
use shmbus_codec::{Codec, SchemaError};

use crate::types::*;

/// A JSON Schema validator for the keywords the codec emits (type, enum,
/// const, minimum/maximum, min/maxLength, pattern (the digit patterns),
/// items, prefixItems, min/maxItems, properties, required,
/// additionalProperties, propertyNames, maxProperties, anyOf, oneOf, not).
/// Returns the first failure's path.
fn validate(s: &Value, v: &Value, at: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("{at}: {why} (value {v}, schema {s})"));
    let Some(m) = s.as_object() else {
        return fail("schema is not an object");
    };
    for (k, x) in m {
        match k.as_str() {
            "$schema" | "title" | "description" => {}
            "type" => {
                let ok = match x.as_str().unwrap() {
                    "null" => v.is_null(),
                    "boolean" => v.is_boolean(),
                    "integer" => v.is_i64() || v.is_u64(),
                    "number" => v.is_number(),
                    "string" => v.is_string(),
                    "array" => v.is_array(),
                    "object" => v.is_object(),
                    t => return fail(&format!("unknown type {t}")),
                };
                if !ok {
                    return fail("wrong type");
                }
            }
            "enum" => {
                if !x.as_array().unwrap().contains(v) {
                    return fail("not in enum");
                }
            }
            "const" => {
                if x != v {
                    return fail("not the const");
                }
            }
            "minimum" | "maximum" => {
                if let Some(n) = v.as_f64() {
                    // Compare exactly for integers.
                    let below = match (v.as_i64(), x.as_i64(), v.as_u64(), x.as_u64()) {
                        (Some(a), Some(b), _, _) => a < b,
                        (_, _, Some(a), Some(b)) => a < b,
                        _ => n < x.as_f64().unwrap(),
                    };
                    let above = match (v.as_i64(), x.as_i64(), v.as_u64(), x.as_u64()) {
                        (Some(a), Some(b), _, _) => a > b,
                        (_, _, Some(a), Some(b)) => a > b,
                        _ => n > x.as_f64().unwrap(),
                    };
                    if (k == "minimum" && below) || (k == "maximum" && above) {
                        return fail(k);
                    }
                }
            }
            "minLength" | "maxLength" => {
                if let Some(t) = v.as_str() {
                    let n = t.chars().count() as u64;
                    let lim = x.as_u64().unwrap();
                    if (k == "minLength" && n < lim) || (k == "maxLength" && n > lim) {
                        return fail(k);
                    }
                }
            }
            "pattern" => {
                if let Some(t) = v.as_str() {
                    let digits = match x.as_str().unwrap() {
                        "^[0-9]+$" => t,
                        "^-?[0-9]+$" => t.strip_prefix('-').unwrap_or(t),
                        p => return fail(&format!("unknown pattern {p}")),
                    };
                    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                        return fail("pattern");
                    }
                }
            }
            "items" => {
                if let Some(a) = v.as_array() {
                    let skip = m
                        .get("prefixItems")
                        .map_or(0, |p| p.as_array().unwrap().len());
                    for (i, e) in a.iter().enumerate().skip(skip) {
                        validate(x, e, &format!("{at}[{i}]"))?;
                    }
                }
            }
            "prefixItems" => {
                if let Some(a) = v.as_array() {
                    for (i, (ps, e)) in x.as_array().unwrap().iter().zip(a).enumerate() {
                        validate(ps, e, &format!("{at}[{i}]"))?;
                    }
                }
            }
            "minItems" | "maxItems" => {
                if let Some(a) = v.as_array() {
                    let n = a.len() as u64;
                    let lim = x.as_u64().unwrap();
                    if (k == "minItems" && n < lim) || (k == "maxItems" && n > lim) {
                        return fail(k);
                    }
                }
            }
            "maxProperties" => {
                if let Some(o) = v.as_object() {
                    if o.len() as u64 > x.as_u64().unwrap() {
                        return fail(k);
                    }
                }
            }
            "properties" => {
                if let Some(o) = v.as_object() {
                    for (pk, ps) in x.as_object().unwrap() {
                        if let Some(pv) = o.get(pk) {
                            validate(ps, pv, &format!("{at}.{pk}"))?;
                        }
                    }
                }
            }
            "required" => {
                if let Some(o) = v.as_object() {
                    for r in x.as_array().unwrap() {
                        if !o.contains_key(r.as_str().unwrap()) {
                            return fail(&format!("missing {r}"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Some(o) = v.as_object() {
                    let props = m.get("properties").and_then(Value::as_object);
                    for (pk, pv) in o {
                        if props.is_some_and(|p| p.contains_key(pk)) {
                            continue;
                        }
                        if x == &json!(false) {
                            return fail(&format!("additional property {pk}"));
                        }
                        validate(x, pv, &format!("{at}[{pk:?}]"))?;
                    }
                }
            }
            "propertyNames" => {
                if let Some(o) = v.as_object() {
                    for pk in o.keys() {
                        validate(x, &json!(pk), &format!("{at} key {pk:?}"))?;
                    }
                }
            }
            "anyOf" => {
                if !x
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|alt| validate(alt, v, at).is_ok())
                {
                    return fail("no anyOf alternative");
                }
            }
            "oneOf" => {
                let n = x
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|alt| validate(alt, v, at).is_ok())
                    .count();
                if n != 1 {
                    return fail(&format!("{n} oneOf alternatives"));
                }
            }
            "not" => {
                if validate(x, v, at).is_ok() {
                    return fail("not");
                }
            }
            other => return fail(&format!("keyword {other} unknown to this validator")),
        }
    }
    Ok(())
}

#[test]
fn every_decoded_value_validates_against_the_generated_schema() {
    let c = codec::<Everything>();
    let s = c.json_schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(s["title"], "Everything");
    assert_eq!(s["type"], "object");
    let mut rng = Rng(77);
    let mut samples = vec![sample()];
    for _ in 0..100 {
        let mut x = sample();
        x.f = f32::from_bits(rng.next());
        x.u64_ = u64::from(rng.next()) << rng.below(40);
        x.i128_ = -(i128::from(rng.next()) << rng.below(100));
        x.u128_ = u128::from(rng.next()) << rng.below(100);
        x.opt_opt = [None, Some(None), Some(Some(3))][rng.below(3) as usize];
        x.opt_unit = [None, Some(())][rng.below(2) as usize];
        x.list.truncate(rng.below(5) as usize);
        samples.push(x);
    }
    for x in &samples {
        let v = c.decode(&postcard::to_allocvec(x).unwrap()).unwrap();
        validate(&s, &v, "").unwrap();
        // Messages validate against the message schema.
        let mut m = Vec::new();
        c.write_message_json(&postcard::to_allocvec(x).unwrap(), &mut m)
            .unwrap();
        validate(
            &c.message_schema(),
            &serde_json::from_slice(&m).unwrap(),
            "",
        )
        .unwrap();
    }
    // Sensor types too, with their examples.
    for c in [
        codec::<shmbus_sensors::msg::Imu>(),
        codec::<shmbus_sensors::msg::Thermal>(),
        codec::<shmbus_sensors::msg::System>(),
        codec::<shmbus_sensors::msg::Power>(),
        codec::<[Option<Option<f32>>; 2]>(),
        codec::<Mode>(),
    ] {
        let ex = c.example();
        validate(&c.json_schema(), &ex, "").unwrap();
        let m = c.message_schema();
        assert_eq!(m["type"], "object", "Foxglove needs an object at the top");
        let mut out = Vec::new();
        c.write_message_json(&c.encode(&ex).unwrap(), &mut out)
            .unwrap();
        validate(&m, &serde_json::from_slice(&out).unwrap(), "").unwrap();
    }
}

/// The rules of the JSON Schema reader of Lichtblick (and of Foxglove
/// Studio, which it forked): `packages/mcap-support/src/parseJsonSchema.ts`.
/// An object needs `"type": "object"` and `properties`; each property one
/// `type` of boolean, string (no contentEncoding but base64), number,
/// integer, object, or array whose `items` has one of boolean, string,
/// number, integer, object. Anything else makes it throw.
fn viewer_reads(s: &Value, at: &str) -> Result<(), String> {
    if s["type"] != "object" {
        return Err(format!(
            "{at}: expected \"type\": \"object\", got {}",
            s["type"]
        ));
    }
    let props = s["properties"]
        .as_object()
        .ok_or_else(|| format!("{at}: no properties"))?;
    for (name, f) in props {
        let here = format!("{at}.{name}");
        match f["type"].as_str() {
            Some("boolean" | "number" | "integer") => {}
            Some("string") if f.get("contentEncoding").is_none() => {}
            Some("object") => viewer_reads(f, &here)?,
            Some("array") => match f["items"]["type"].as_str() {
                Some("boolean" | "number" | "integer") => {}
                Some("string") if f["items"].get("contentEncoding").is_none() => {}
                Some("object") => viewer_reads(&f["items"], &here)?,
                other => return Err(format!("{here}: unsupported array item type {other:?}")),
            },
            other => return Err(format!("{here}: unsupported field type {other:?}")),
        }
    }
    Ok(())
}

#[test]
fn viewers_can_read_the_viewer_schema() {
    use shmbus_sensors::msg;
    let codecs = [
        codec::<msg::Imu>(),
        codec::<msg::Accel>(),
        codec::<msg::System>(),
        codec::<msg::Thermal>(),
        codec::<msg::Power>(),
        codec::<msg::Net>(),
        codec::<shmbus_examples::Imu>(),
        codec::<Everything>(),
        codec::<Mode>(),
        codec::<[f32; 3]>(),
        codec::<()>(),
    ];
    for c in &codecs {
        let v = c.viewer_schema();
        viewer_reads(&v, c.schema().name.as_str()).unwrap();
        assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    }
    // The exact schema is beyond such readers (floats are anyOf): that is
    // why there are two.
    assert!(viewer_reads(&codec::<msg::Imu>().message_schema(), "Imu").is_err());
    // What the viewer schema keeps, it types as the values are.
    let v = codec::<Everything>().viewer_schema();
    let p = &v["properties"];
    assert_eq!(p["f"]["type"], "number");
    assert_eq!(p["u64_"]["type"], "integer");
    assert_eq!(
        p["acc"],
        json!({"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3})
    );
    assert_eq!(p["name"], json!({"type": "string", "maxLength": 16}));
    assert_eq!(p["opt"]["type"], "integer");
    assert_eq!(
        p["modes"]["items"]["properties"]["Pos"]["properties"]["lat"]["type"],
        "number"
    );
    for gone in ["unit", "tuple", "pair", "opt_unit", "marker"] {
        assert!(
            p.get(gone).is_none(),
            "{gone} has no viewer form: {}",
            p[gone]
        );
    }
    // Finite values of plain fields validate against it.
    let mut x = sample();
    x.opt_opt = Some(Some(1));
    x.none = Some(1);
    x.u128_ = 5;
    x.i128_ = -5;
    x.modes[0] = Mode::Fix(1);
    let value = codec::<Everything>()
        .decode(&postcard::to_allocvec(&x).unwrap())
        .unwrap();
    validate(&v, &value, "").unwrap();
}

#[test]
fn the_schema_refuses_what_the_encoder_refuses() {
    let c = Codec::parse(
        "struct T { a: u8, s: heapless::String<4>, v: heapless::Vec<i8, 2>, e: enum E { A, B(u8) }, o: Option<Option<u8>>, big: u128 }",
    )
    .unwrap();
    let s = c.json_schema();
    let ok = json!({"a": 1, "s": "abcd", "v": [1, 2], "e": {"B": 3}, "o": [null], "big": "18446744073709551616"});
    validate(&s, &ok, "").unwrap();
    c.encode(&ok).unwrap();
    for (k, bad) in [
        ("a", json!(256)),
        ("s", json!("abcde")),
        ("v", json!([1, 2, 3])),
        ("v", json!([1, 200])),
        ("e", json!("C")),
        ("e", json!({"B": 3, "A": null})),
        ("o", json!([1, 2])),
        ("big", json!("-1")),
        ("big", json!(true)),
    ] {
        let mut v = ok.clone();
        v[k] = bad.clone();
        assert!(validate(&s, &v, "").is_err(), "schema accepts {k} = {bad}");
        assert!(c.encode(&v).is_err(), "encoder accepts {k} = {bad}");
    }
    let mut v = ok.clone();
    v["extra"] = json!(1);
    assert!(validate(&s, &v, "").is_err());
    assert!(c.encode(&v).is_err());
}

#[test]
fn schemas_the_codec_cannot_map_are_refused_clearly() {
    let dup = shmbus_codec::text::parse("struct T { a: u8, a: u16 }").unwrap();
    assert_eq!(
        Codec::new(dup).unwrap_err(),
        SchemaError::DuplicateName {
            path: "the top level".into(),
            name: "a".into()
        }
    );
    let dup = shmbus_codec::text::parse("struct T { x: enum E { A, A(u8) } }").unwrap();
    assert_eq!(
        Codec::new(dup).unwrap_err().to_string(),
        "the schema has two entries named \"A\" at .x"
    );
    let emb = shmbus_codec::text::parse("struct T { s: Option<Schema> }").unwrap();
    assert!(matches!(
        Codec::new(emb).unwrap_err(),
        SchemaError::Unsupported { .. }
    ));
    assert_eq!(
        Codec::from_schema_bytes(&[5, b'a', b'b']).unwrap_err(),
        SchemaError::Malformed
    );
}

#[test]
fn codec_of_a_type_matches_its_segment_schema() {
    let c = codec::<Everything>();
    let bytes = shmbus_core::schema::schema_bytes::<Everything>().unwrap();
    assert_eq!(c.schema_bytes(), bytes);
    assert_eq!(
        c.fingerprint(),
        shmbus_core::schema::fingerprint_of::<Everything>().unwrap()
    );
    assert_eq!(
        Codec::from_schema_bytes(&bytes).unwrap().schema(),
        c.schema()
    );
    let _ = owned::<Everything>();
}

/// Field and variant names come from a segment's schema, which any local
/// user can write: on the path of a refused schema they are quoted (no
/// control character reaches a terminal) and cut (a 10 kB name stays one
/// short line), as the paths of decode and encode errors are.
#[test]
fn names_on_a_refused_schemas_path_are_quoted_and_cut() {
    use postcard_schema::schema::owned::{
        OwnedDataModelType as D, OwnedNamedType, OwnedNamedValue,
    };
    let field = |name: &str, ty: OwnedNamedType| OwnedNamedType {
        name: "T".into(),
        ty: D::Struct(vec![OwnedNamedValue {
            name: name.into(),
            ty,
        }]),
    };
    let embedded = OwnedNamedType {
        name: "Schema".into(),
        ty: D::Schema,
    };
    let e = Codec::new(field("\u{1b}[31mred", embedded.clone()))
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\u{1b}'), "{e:?}");
    assert!(e.contains(r#"at ["\u001b[31mred"], which"#), "{e}");

    let long = "x".repeat(10_000);
    let e = Codec::new(field(&long, embedded.clone()))
        .unwrap_err()
        .to_string();
    assert!(e.len() < 200, "{} bytes: {}", e.len(), &e[..200]);
    assert!(e.contains("... (10001 bytes), which"), "{e}");

    // Deep: 60 levels of 30-character names cut as one path.
    let mut t = embedded;
    for i in 0..60 {
        t = field(&format!("field_with_a_long_name_{i:07}"), t);
    }
    let e = Codec::new(t).unwrap_err().to_string();
    assert!(e.len() < 200, "{} bytes: {e}", e.len());

    // Identifiers keep the jq form.
    let dup = shmbus_codec::text::parse("struct T { ok_name: struct U { a: u8, a: u8 } }").unwrap();
    assert_eq!(
        Codec::new(dup).unwrap_err().to_string(),
        "the schema has two entries named \"a\" at .ok_name"
    );
}
