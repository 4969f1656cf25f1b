//! The JSON mapping: decode, encode, round trips, checks, hostile frames.

use serde_json::{Value, json};
use shmbus_codec::{Codec, DecodeProblem, EncodeProblem};

use crate::types::*;

fn frame_of<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap()
}

#[test]
fn decodes_every_node_by_the_mapping() {
    let c = codec::<Everything>();
    let v = c.decode(&frame_of(&sample())).unwrap();
    let want = json!({
        "b": true, "u8_": 255, "i8_": -128, "u16_": 65535, "i16_": -300,
        "u32_": 4294967295u64, "i32_": -2147483648i64,
        "u64_": 18446744073709551615u64, "i64_": -9223372036854775808i64,
        "u128_": "340282366920938463463374607431768211455",
        "i128_": "-170141183460469231731687303715884105728",
        "f": 9.81, "d": -1.5e300, "c": "é", "name": "imu0",
        "text": "a \"quoted\"\n line",
        "acc": [0.0, -0.25, 9.81], "list": [1, 300, 65535, 0], "vec": [],
        "opt": 7, "none": null, "opt_opt": [null], "opt_unit": [null],
        "m": 2.5, "marker": null, "pair": [1, -1], "unit": null,
        "tuple": [3, "x", 0.1], "one": [9], "empty": [],
        "modes": ["Idle", {"Fix": 3}, {"Pair": [-300, true]}, {"Pos": {"lat": 52.5, "lon": 13.4}},
                  {"Nested": {"id": 4, "name": "abcdefgh"}}, {"Deeper": {"B": {"x": -1}}}],
        "map": {"a": 1, "b c": -2},
        "int_map": {"0": true, "18446744073709551615": false},
        "tuple_map": {"[1,2]": 3},
    });
    assert_eq!(v, want);
    // Fields in schema order, in the tree and in the text.
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(&keys[..4], ["b", "u8_", "i8_", "u16_"]);
    assert_eq!(c.to_json(&frame_of(&sample())).unwrap(), want.to_string());
}

#[test]
fn agrees_with_serde_json_of_the_rust_value_where_serde_json_can_say_it() {
    // serde_json writes the Rust value itself; where its output is lossless
    // (no NaN, no u128 beyond 64 bits, no nested options) the codec
    // matches it.
    let mut s = sample();
    s.u128_ = u128::from(u64::MAX);
    s.i128_ = i128::from(i64::MIN);
    s.opt_opt = None;
    s.opt_unit = None;
    s.tuple_map.clear();
    let got = codec::<Everything>().decode(&frame_of(&s)).unwrap();
    let mut want = serde_json::to_value(&s).unwrap();
    // serde_json writes an f32 through f64 (9.8100004196167); the codec
    // writes its shortest decimal.
    want["f"] = json!(9.81);
    want["acc"] = json!([0.0, -0.25, 9.81]);
    want["m"] = json!(2.5);
    assert_eq!(got, want);
}

#[test]
fn frames_round_trip_byte_for_byte_and_through_the_typed_decoder() {
    let c = codec::<Everything>();
    let mut rng = Rng(0x5eed_1234);
    let mut cases = vec![sample()];
    for i in 0..200 {
        let mut s = sample();
        s.u64_ = u64::from(rng.next()) << (rng.below(40));
        s.i64_ = -(i64::from(rng.next()) << rng.below(31));
        s.f = f32::from_bits(rng.next());
        s.d = f64::from_bits(u64::from(rng.next()) << 32 | u64::from(rng.next()));
        s.c = char::from_u32(rng.below(0x11_0000)).unwrap_or('x');
        s.list.truncate(rng.below(5) as usize);
        s.vec = (0..rng.below(20)).map(|_| rng.next() as i32).collect();
        s.opt = (i % 2 == 0).then_some(rng.next());
        s.opt_opt = match i % 3 {
            0 => None,
            1 => Some(None),
            _ => Some(Some(rng.next() as u8)),
        };
        cases.push(s);
    }
    for s in cases {
        let f = frame_of(&s);
        let v = c.decode(&f).unwrap();
        let again = c.encode(&v).unwrap();
        let typed: Everything = postcard::from_bytes(&again).unwrap();
        if s.f.is_nan() || s.d.is_nan() {
            // Every NaN comes back as a NaN (the canonical one).
            assert!(typed.f.is_nan() == s.f.is_nan() && typed.d.is_nan() == s.d.is_nan());
            assert_eq!(c.decode(&again).unwrap(), v);
        } else {
            assert_eq!(again, f, "byte-identical re-encoding of {v}");
            assert_eq!(typed, s);
        }
        // The streamed text is the tree's text.
        assert_eq!(c.to_json(&f).unwrap(), serde_json::to_string(&v).unwrap());
    }
}

#[test]
fn floats_survive_json_text_exactly() {
    // 0x15ae43fd: its shortest decimal read as an f64 and cast to f32 is
    // one ulp off; the codec reads it as an f32 directly.
    let c = codec::<(f32, f64)>();
    let mut rng = Rng(0xf10a7);
    let mut cases: Vec<(f32, f64)> = vec![
        (f32::from_bits(0x15ae_43fd), 0.1),
        (f32::from_bits(0x95ae_43fd), -0.1),
        (f32::MAX, f64::MAX),
        (f32::MIN_POSITIVE, f64::MIN_POSITIVE),
        (f32::from_bits(1), f64::from_bits(1)),
    ];
    for _ in 0..20_000 {
        let f = f32::from_bits(rng.next());
        let d = f64::from_bits(u64::from(rng.next()) << 32 | u64::from(rng.next()));
        if f.is_finite() && d.is_finite() {
            cases.push((f, d));
        }
    }
    for x in cases {
        let frame = frame_of(&x);
        let text = c.to_json(&frame).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(c.encode(&v).unwrap(), frame, "{text}");
    }
    // What a person types is read as that decimal.
    assert_eq!(
        c.encode(&json!([0.1, 0.1])).unwrap(),
        frame_of(&(0.1f32, 0.1f64))
    );
}

#[test]
fn nan_infinities_and_negative_zero() {
    #[derive(serde::Serialize, serde::Deserialize, postcard_schema::Schema)]
    struct F {
        a: f32,
        b: f64,
        c: f32,
        z: f64,
    }
    let c = codec::<F>();
    let f = frame_of(&F {
        a: f32::NAN,
        b: f64::INFINITY,
        c: f32::NEG_INFINITY,
        z: -0.0,
    });
    let v = c.decode(&f).unwrap();
    assert_eq!(v, json!({"a": "NaN", "b": "inf", "c": "-inf", "z": -0.0}));
    assert_eq!(
        c.to_json(&f).unwrap(),
        r#"{"a":"NaN","b":"inf","c":"-inf","z":-0.0}"#
    );
    assert_eq!(c.encode(&v).unwrap(), f);
}

#[test]
fn integers_are_exact_numbers_and_strings_only_beyond_64_bits() {
    let c = codec::<(u64, i64, u128, i128)>();
    let f = frame_of(&(
        u64::MAX,
        i64::MIN,
        u128::from(u64::MAX),
        i128::from(i64::MIN),
    ));
    assert_eq!(
        c.to_json(&f).unwrap(),
        "[18446744073709551615,-9223372036854775808,18446744073709551615,-9223372036854775808]"
    );
    let f = frame_of(&(
        0u64,
        0i64,
        u128::from(u64::MAX) + 1,
        i128::from(i64::MIN) - 1,
    ));
    assert_eq!(
        c.to_json(&f).unwrap(),
        r#"[0,0,"18446744073709551616","-9223372036854775809"]"#
    );
    assert_eq!(c.encode(&c.decode(&f).unwrap()).unwrap(), f);
    // 2^53 + 1 stays exact: the digits are written as they are.
    let f = frame_of(&((1u64 << 53) + 1, -(1i64 << 53) - 1, 0u128, 0i128));
    let text = c.to_json(&f).unwrap();
    assert_eq!(text, "[9007199254740993,-9007199254740993,0,0]");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(c.encode(&v).unwrap(), f);
    // Either form is accepted as input.
    assert_eq!(
        c.encode(&json!(["5", 5, 5, "-5"])).unwrap(),
        c.encode(&json!([5, "5", "5", -5])).unwrap()
    );
}

fn problem(c: &Codec, v: Value) -> (String, EncodeProblem, String) {
    let e = c.encode(&v).unwrap_err();
    let text = e.to_string();
    (e.path, e.problem, text)
}

#[test]
fn encode_refuses_out_of_range_numbers_naming_the_path() {
    let c = Codec::parse(
        "struct T { a: u8, b: i16, c: u64, d: f32, e: f64, f: i128, g: [u32; 2], h: char }",
    )
    .unwrap();
    let ok = json!({"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "f": 1, "g": [1, 2], "h": "x"});
    c.encode(&ok).unwrap();
    let with = |k: &str, x: Value| {
        let mut v = ok.clone();
        v[k] = x;
        problem(&c, v)
    };
    let (p, _, t) = with("a", json!(256));
    assert_eq!(
        (p.as_str(), t.as_str()),
        (".a", ".a: 256 does not fit in u8")
    );
    assert_eq!(with("a", json!(-1)).2, ".a: -1 does not fit in u8");
    assert_eq!(with("b", json!(-32769)).2, ".b: -32769 does not fit in i16");
    assert_eq!(
        with("c", json!("18446744073709551616")).2,
        ".c: \"18446744073709551616\" does not fit in u64"
    );
    // 2^64 as a JSON number is a rounded f64: not exact, refused.
    assert_eq!(
        with("c", json!(18446744073709551616.0)).2,
        ".c: 1.8446744073709552e+19 does not fit in u64"
    );
    assert!(
        with("c", json!(1.5))
            .2
            .contains("found a number with a fraction")
    );
    assert!(with("c", json!("12a")).2.contains("not a decimal integer"));
    let (_, pr, t) = with("d", json!(1e39));
    assert!(matches!(pr, EncodeProblem::FloatOutOfRange { .. }));
    assert_eq!(
        t,
        ".d: 1e+39 does not fit in f32 (largest 3.4028235e38); write \"inf\" for infinity"
    );
    // The largest f32 and "inf" are fine; 1e39 is fine in an f64.
    for fine in [
        json!(3.4028235e38),
        json!("inf"),
        json!("-inf"),
        json!("NaN"),
    ] {
        let mut v = ok.clone();
        v["d"] = fine;
        c.encode(&v).unwrap();
    }
    let mut v = ok.clone();
    v["e"] = json!(1e39);
    c.encode(&v).unwrap();
    assert_eq!(
        with("d", json!("nan")).2,
        ".d: expected a number, \"NaN\", \"inf\" or \"-inf\", found a string"
    );
    assert_eq!(
        with("f", json!("-170141183460469231731687303715884105729")).2,
        ".f: \"-170141183460469231731687303715884105729\" does not fit in i128"
    );
    c.encode(&{
        let mut v = ok.clone();
        v["f"] = json!("-170141183460469231731687303715884105728");
        v
    })
    .unwrap();
    assert_eq!(with("g", json!([1])).2, ".g: expected 2 elements, found 1");
    assert_eq!(with("g", json!([1, -2])).2, ".g[1]: -2 does not fit in u32");
    assert!(
        with("h", json!("xy"))
            .2
            .starts_with(".h: expected a one-character string")
    );
}

#[test]
fn encode_refuses_over_capacity_naming_the_path() {
    let c = Codec::parse(
        "struct Thermal { zones: heapless::Vec<struct Zone { name: heapless::String<16>, t: [f32; 2] }, 4>, \
         temps: heapless::Vec<f32, 16>, tags: BTreeMap<heapless::String<4>, u8> as \"heapless::LinearMap<K, V, 2>\" }",
    )
    .unwrap();
    let zone = |n: &str| json!({"name": n, "t": [1.0, 2.0]});
    let ok = json!({"zones": [zone("a"), zone("b"), zone("c"), zone("0123456789abcdef")],
                    "temps": vec![0.5; 16], "tags": {"x": 1, "y": 2}});
    c.encode(&ok).unwrap();

    let mut v = ok.clone();
    v["zones"][3]["name"] = json!("x".repeat(100));
    let (p, pr, t) = problem(&c, v);
    assert_eq!(p, ".zones[3].name");
    assert_eq!(
        pr,
        EncodeProblem::OverCapacity {
            len: 100,
            capacity: 16,
            unit: "bytes",
            type_name: "heapless::String<16>".into()
        }
    );
    assert_eq!(
        t,
        ".zones[3].name: 100 bytes exceed heapless::String<16> (at most 16 bytes)"
    );
    // Capacity counts UTF-8 bytes: 9 two-byte characters are 18 bytes.
    let mut v = ok.clone();
    v["zones"][0]["name"] = json!("ééééééééé");
    assert_eq!(
        problem(&c, v).2,
        ".zones[0].name: 18 bytes exceed heapless::String<16> (at most 16 bytes)"
    );
    let mut v = ok.clone();
    v["temps"] = json!(vec![0.5; 17]);
    assert_eq!(
        problem(&c, v).2,
        ".temps: 17 elements exceed heapless::Vec<T, 16> (at most 16 elements)"
    );
    let mut v = ok.clone();
    v["zones"].as_array_mut().unwrap().push(zone("e"));
    assert_eq!(
        problem(&c, v).2,
        ".zones: 5 elements exceed heapless::Vec<T, 4> (at most 4 elements)"
    );
    let mut v = ok.clone();
    v["tags"]["z"] = json!(3);
    assert!(
        problem(&c, v)
            .2
            .starts_with(".tags: 3 entries exceed heapless::LinearMap<K, V, 2>")
    );
    let mut v = ok.clone();
    v["tags"] = json!({"toolong": 1});
    assert_eq!(
        problem(&c, v).2,
        ".tags[\"toolong\"]: 7 bytes exceed heapless::String<4> (at most 4 bytes)"
    );

    // The frame capacity is the last check: a valid value over it is refused
    // as a whole, an invalid one by its field.
    let f = c.encode(&ok).unwrap();
    assert_eq!(c.encode_within(&ok, f.len()).unwrap(), f);
    let e = c.encode_within(&ok, f.len() - 1).unwrap_err();
    assert_eq!(
        e.problem,
        EncodeProblem::FrameTooLarge {
            len: f.len(),
            capacity: f.len() - 1
        }
    );
    let mut v = ok.clone();
    v["temps"] = json!(vec![0.5; 17]);
    assert_eq!(c.encode_within(&v, 1).unwrap_err().path, ".temps");

    // Decoding refuses an over-capacity frame as a typed subscriber would.
    let wide = Codec::parse(&c.text().replace("String<16>", "String<200>")).unwrap();
    let mut v = ok.clone();
    v["zones"][1]["name"] = json!("x".repeat(100));
    let e = c.decode(&wide.encode(&v).unwrap()).unwrap_err();
    assert_eq!(e.path, ".zones[1].name");
    assert!(matches!(
        e.problem,
        DecodeProblem::OverCapacity {
            len: 100,
            capacity: 16,
            ..
        }
    ));
}

#[test]
fn structure_errors_name_the_field_and_the_fix() {
    let c = codec::<Everything>();
    let good = c.decode(&frame_of(&sample())).unwrap();
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("name");
    assert_eq!(problem(&c, v).2, "missing field \"name\"");
    let mut v = good.clone();
    v["typo"] = json!(1);
    assert!(
        problem(&c, v)
            .2
            .starts_with("unknown field \"typo\"; the fields are b, u8_, i8_")
    );
    let mut v = good.clone();
    v["modes"][1] = json!("Nope");
    assert_eq!(
        problem(&c, v).2,
        ".modes[1]: no variant \"Nope\"; the variants are Idle, Fix, Pair, Pos, Nested, Deeper"
    );
    let mut v = good.clone();
    v["modes"][1] = json!("Fix");
    assert!(
        problem(&c, v)
            .2
            .starts_with(".modes[1].Fix: expected {\"Fix\": value}")
    );
    let mut v = good.clone();
    v["modes"][3]["Pos"]["lat"] = json!("north");
    assert!(
        problem(&c, v)
            .2
            .starts_with(".modes[3].Pos.lat: expected a number")
    );
    let mut v = good.clone();
    v["opt_opt"] = json!(5);
    assert!(problem(&c, v).2.starts_with(".opt_opt: expected an array"));
    let mut v = good.clone();
    v["map"] = json!({"k": "v"});
    assert!(
        problem(&c, v)
            .2
            .starts_with(".map[\"k\"]: expected an integer")
    );
    // A name or key from the input is cut in the message, however long:
    // the error stays one short line, and its start says which it was.
    let long = format!("typo{}", "é".repeat(50_000));
    let mut v = good.clone();
    v[long.as_str()] = json!(1);
    let msg = problem(&c, v).2;
    assert!(
        msg.starts_with(&format!(
            "unknown field \"typo{}...\" (100004 bytes); the fields are b,",
            "é".repeat(36)
        )),
        "{}",
        &msg[..msg.len().min(300)]
    );
    let mut v = good.clone();
    v["modes"][1] = json!(long);
    let msg = problem(&c, v).2;
    assert!(
        msg.len() < 300 && msg.contains("(100004 bytes)"),
        "{}",
        &msg[..msg.len().min(300)]
    );
    let mut v = good.clone();
    v["map"] = json!({long.as_str(): "v"});
    let msg = problem(&c, v).2;
    assert!(
        msg.starts_with(".map[\"typo") && msg.contains("(100004 bytes)]: expected an integer"),
        "{}",
        &msg[..msg.len().min(300)]
    );
    // A missing Option field is None.
    let mut v = good;
    v.as_object_mut().unwrap().remove("opt");
    let typed: Everything = postcard::from_bytes(&c.encode(&v).unwrap()).unwrap();
    assert_eq!(typed.opt, None);
}

#[test]
fn example_encodes_and_has_the_right_shape() {
    let c = codec::<Everything>();
    let ex = c.example();
    let f = c.encode(&ex).unwrap();
    let typed: Everything = postcard::from_bytes(&f).unwrap();
    assert_eq!(typed.modes[0], Mode::Idle);
    assert_eq!(typed.name.as_str(), "");
    assert_eq!(c.decode(&f).unwrap(), ex);
}

#[test]
fn messages_are_objects() {
    let c = codec::<Everything>();
    assert!(!c.wraps());
    let f = frame_of(&sample());
    let mut m = Vec::new();
    c.write_message_json(&f, &mut m).unwrap();
    assert_eq!(m, c.to_json(&f).unwrap().into_bytes());

    let c = codec::<[f32; 3]>();
    assert!(c.wraps());
    let f = frame_of(&[f32::NAN, 1.0, 2.5]);
    let mut m = b"prefix ".to_vec();
    c.write_message_json(&f, &mut m).unwrap();
    assert_eq!(m, br#"prefix {"value":["NaN",1.0,2.5]}"#);
    let msg: Value = serde_json::from_slice(&m[7..]).unwrap();
    assert_eq!(c.encode_message(&msg).unwrap(), f);
    assert_eq!(
        c.encode_message(&json!({"value": [1, 2]}))
            .unwrap_err()
            .to_string(),
        ".value: expected 3 elements, found 2"
    );
    assert!(c.encode_message(&json!([1, 2, 3])).is_err());
    // On error nothing is appended.
    let mut m = b"x".to_vec();
    assert!(c.write_message_json(&f[..5], &mut m).is_err());
    assert_eq!(m, b"x");
}

#[test]
fn garbage_frames_are_errors_never_panics() {
    let c = codec::<Everything>();
    let good = frame_of(&sample());
    for n in 0..good.len() {
        assert!(c.decode(&good[..n]).is_err(), "prefix {n}");
        let mut out = Vec::new();
        assert!(c.write_json(&good[..n], &mut out).is_err());
        assert!(out.is_empty());
    }
    let mut long = good.clone();
    long.push(0);
    assert_eq!(
        c.decode(&long).unwrap_err().problem,
        DecodeProblem::TrailingBytes(1)
    );
    assert_eq!(
        c.decode(&long).unwrap_err().to_string(),
        "1 byte left over after the value"
    );
    // Every single-byte corruption decodes or fails, the same way in both
    // outputs.
    for i in 0..good.len() {
        for x in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] = x;
            let tree = c.decode(&bad);
            let text = c.to_json(&bad);
            match (tree, text) {
                (Ok(v), Ok(t)) => assert_eq!(serde_json::to_string(&v).unwrap(), t),
                (Err(a), Err(b)) => assert_eq!(a, b),
                (a, b) => panic!("tree {a:?} and text {b:?} disagree"),
            }
        }
    }
    let mut rng = Rng(0xdead_beef);
    for len in 0..600 {
        let junk = rng.bytes(len % 97);
        let _ = c.decode(&junk);
    }
    assert_eq!(
        codec::<bool>().decode(&[2]).unwrap_err().problem,
        DecodeProblem::BadBool(2)
    );
    assert_eq!(
        codec::<u16>()
            .decode(&[0xff, 0xff, 0x04])
            .unwrap_err()
            .problem,
        DecodeProblem::BadVarint
    );
    assert_eq!(
        codec::<char>()
            .decode(&[2, b'a', b'b'])
            .unwrap_err()
            .problem,
        DecodeProblem::BadChar
    );
}

#[test]
fn hostile_lengths_are_bounded() {
    // u32::MAX zero-size elements: no bytes, so only the value budget stops it.
    let n: u64 = u64::from(u32::MAX);
    let mut frame = Vec::new();
    let mut x = n;
    loop {
        let b = (x & 0x7f) as u8;
        x >>= 7;
        if x == 0 {
            frame.push(b);
            break;
        }
        frame.push(b | 0x80);
    }
    let e = codec::<Vec<()>>().decode(&frame).unwrap_err();
    assert_eq!(e.problem, DecodeProblem::TooLarge);
    // Elements that take bytes: refused at once, before any allocation.
    let e = codec::<Vec<u32>>().decode(&frame).unwrap_err();
    assert_eq!(e.problem, DecodeProblem::UnexpectedEnd);
    assert_eq!(e.path, "");
    let e = codec::<std::collections::BTreeMap<(), ()>>()
        .decode(&frame)
        .unwrap_err();
    assert!(matches!(
        e.problem,
        DecodeProblem::DuplicateKey(_) | DecodeProblem::TooLarge
    ));
    // A capacity refuses the length before reading further.
    let c = Codec::parse("heapless::Vec<(), 8>").unwrap();
    assert!(matches!(
        c.decode(&frame).unwrap_err().problem,
        DecodeProblem::OverCapacity { capacity: 8, .. }
    ));
}

#[test]
fn duplicate_map_keys_are_refused() {
    // Two entries with key 1: a JSON object cannot hold both.
    let c = codec::<std::collections::BTreeMap<u8, u8>>();
    let e = c.decode(&[2, 1, 10, 1, 11]).unwrap_err();
    assert_eq!(e.problem, DecodeProblem::DuplicateKey("1".into()));
    assert_eq!(
        c.decode(&[2, 1, 10, 2, 11]).unwrap(),
        json!({"1": 10, "2": 11})
    );
}

#[test]
fn counts_of_one_are_singular_in_every_problem() {
    assert_eq!(
        DecodeProblem::TrailingBytes(2).to_string(),
        "2 bytes left over after the value"
    );
    let over = |len: usize, capacity: usize, unit: &'static str| {
        EncodeProblem::OverCapacity {
            len,
            capacity,
            unit,
            type_name: "T".into(),
        }
        .to_string()
    };
    assert_eq!(over(2, 1, "bytes"), "2 bytes exceed T (at most 1 byte)");
    assert_eq!(
        over(1, 0, "entries"),
        "1 entry exceeds T (at most 0 entries)"
    );
    assert_eq!(
        over(3, 2, "elements"),
        "3 elements exceed T (at most 2 elements)"
    );
    let decode_over = DecodeProblem::OverCapacity {
        len: 1,
        capacity: 0,
        unit: "elements",
        type_name: "T".into(),
    };
    assert_eq!(
        decode_over.to_string(),
        "1 element exceeds T (at most 0 elements)"
    );
    assert_eq!(
        EncodeProblem::WrongLength {
            expected: 1,
            found: 2
        }
        .to_string(),
        "expected 1 element, found 2"
    );
}
