//! Declaration text: render, parse, and parse(render(t)) == t.

use postcard_schema::schema::owned::{
    OwnedDataModelType as D, OwnedDataModelVariant as V, OwnedNamedType, OwnedNamedValue,
    OwnedNamedVariant,
};
use shmbus_codec::text::{parse, render};

use crate::types::*;

fn round_trip(t: &OwnedNamedType) {
    let text = render(t);
    let back = parse(&text).unwrap_or_else(|e| panic!("{e} in\n{text}"));
    assert_eq!(&back, t, "text was\n{text}");
    assert_eq!(
        postcard::to_allocvec(&back).unwrap(),
        postcard::to_allocvec(t).unwrap()
    );
}

#[test]
fn renders_readably() {
    let c = codec::<shmbus_sensors::msg::Thermal>();
    let want = "struct Thermal {
    t_ns: u64,
    temps: heapless::Vec<struct Temp {
        name: heapless::String<24>,
        milli_c: i32,
    }, 16>,
}";
    assert_eq!(c.text(), want);
    // postcard-schema's own names, before the capacities are written in.
    let t = owned::<shmbus_sensors::msg::Thermal>();
    assert_eq!(
        render(&t),
        want.replace("<24>", "<N>").replace("}, 16>", "}, N>")
    );
}

#[test]
fn every_sensor_and_example_type_round_trips() {
    use shmbus_sensors::msg;
    for t in [
        owned::<msg::Imu>(),
        owned::<msg::Accel>(),
        owned::<msg::System>(),
        owned::<msg::Thermal>(),
        owned::<msg::Power>(),
        owned::<msg::Net>(),
        owned::<shmbus_examples::Imu>(),
        owned::<Everything>(),
        owned::<Mode>(),
        owned::<(u8,)>(),
        owned::<(u8, i8, u16, i16, u32, i32)>(),
        owned::<[u8; 0]>(),
        owned::<std::collections::HashMap<String, Vec<u8>>>(),
        owned::<std::collections::BTreeSet<char>>(),
        owned::<std::num::NonZeroU32>(),
        owned::<core::time::Duration>(),
        owned::<std::path::PathBuf>(),
        owned::<core::marker::PhantomData<u8>>(),
        owned::<Result<u8, heapless::String<4>>>(),
        owned::<[u8]>(),
        owned::<str>(),
    ] {
        round_trip(&t);
    }
    // Rust's own types print without `as "..."`.
    assert_eq!(render(&owned::<(u8,)>()), "(u8,)");
    assert_eq!(render(&owned::<(u8, i8, bool)>()), "(u8, i8, bool)");
    assert_eq!(render(&owned::<[u8; 0]>()), "[(); 0]");
    assert_eq!(
        render(&owned::<Option<Vec<[f32; 2]>>>()),
        "Option<Vec<[f32; 2]>>"
    );
    assert_eq!(
        render(&owned::<std::num::NonZeroU32>()),
        "u32 as \"NonZeroU32\""
    );
    assert!(!render(&owned::<Everything>()).contains(" as "));
    for c in [
        codec::<msg::Imu>(),
        codec::<msg::Thermal>(),
        codec::<msg::Power>(),
        codec::<Everything>(),
    ] {
        round_trip(c.schema());
    }
}

#[test]
fn odd_names_are_quoted_and_kept() {
    let t = OwnedNamedType {
        name: "weird \"name\"\n\u{1b}[31m".into(),
        ty: D::Struct(vec![
            OwnedNamedValue {
                name: "a b".into(),
                ty: OwnedNamedType {
                    name: "NonZeroU8".into(),
                    ty: D::U8,
                },
            },
            OwnedNamedValue {
                name: "".into(),
                ty: OwnedNamedType {
                    name: "".into(),
                    ty: D::Tuple(vec![]),
                },
            },
            OwnedNamedValue {
                name: "struct".into(),
                ty: OwnedNamedType {
                    name: "[T; N]".into(),
                    ty: D::Tuple(vec![
                        OwnedNamedType {
                            name: "u8".into(),
                            ty: D::U8,
                        },
                        OwnedNamedType {
                            name: "i8".into(),
                            ty: D::I8,
                        },
                    ]),
                },
            },
            OwnedNamedValue {
                name: "e".into(),
                ty: OwnedNamedType {
                    name: "as".into(),
                    ty: D::Enum(vec![
                        OwnedNamedVariant {
                            name: "T1".into(),
                            ty: V::TupleVariant(vec![OwnedNamedType {
                                name: "bytes".into(),
                                ty: D::ByteArray,
                            }]),
                        },
                        OwnedNamedVariant {
                            name: "T0".into(),
                            ty: V::TupleVariant(vec![]),
                        },
                        OwnedNamedVariant {
                            name: "S0".into(),
                            ty: V::StructVariant(vec![]),
                        },
                    ]),
                },
            },
        ]),
    };
    let text = render(&t);
    assert!(
        !text.contains('\u{1b}'),
        "control characters are escaped: {text}"
    );
    assert!(text.contains("u8 as \"NonZeroU8\""), "{text}");
    round_trip(&t);
}

/// A random schema of at most `depth` levels.
fn random(rng: &mut Rng, depth: u32) -> OwnedNamedType {
    let names = [
        "A",
        "b_2",
        "heapless::String<7>",
        "(A,)",
        "[T; N]",
        "x y",
        "",
        "Vec<T>",
        "N",
    ];
    let name = |rng: &mut Rng| names[rng.below(names.len() as u32) as usize].to_string();
    let leaf = rng.below(if depth == 0 { 1 } else { 3 }) == 0;
    let ty = if leaf {
        match rng.below(21) {
            0 => D::Bool,
            1 => D::I8,
            2 => D::U8,
            3 => D::I16,
            4 => D::I32,
            5 => D::I64,
            6 => D::I128,
            7 => D::U16,
            8 => D::U32,
            9 => D::U64,
            10 => D::U128,
            11 => D::Usize,
            12 => D::Isize,
            13 => D::F32,
            14 => D::F64,
            15 => D::Char,
            16 => D::String,
            17 => D::ByteArray,
            18 => D::Unit,
            19 => D::UnitStruct,
            _ => D::Schema,
        }
    } else {
        let kids = |rng: &mut Rng| {
            (0..rng.below(4))
                .map(|_| random(rng, depth - 1))
                .collect::<Vec<_>>()
        };
        match rng.below(9) {
            0 => D::Option(Box::new(random(rng, depth - 1))),
            1 => D::NewtypeStruct(Box::new(random(rng, depth - 1))),
            2 => D::Seq(Box::new(random(rng, depth - 1))),
            3 => D::Tuple(kids(rng)),
            4 => D::TupleStruct(kids(rng)),
            5 => D::Map {
                key: Box::new(random(rng, depth - 1)),
                val: Box::new(random(rng, depth - 1)),
            },
            6 => D::Struct(
                kids(rng)
                    .into_iter()
                    .map(|ty| OwnedNamedValue {
                        name: name(rng),
                        ty,
                    })
                    .collect(),
            ),
            _ => D::Enum(
                (0..rng.below(4))
                    .map(|_| OwnedNamedVariant {
                        name: name(rng),
                        ty: match rng.below(4) {
                            0 => V::UnitVariant,
                            1 => V::NewtypeVariant(Box::new(random(rng, depth - 1))),
                            2 => V::TupleVariant(kids(rng)),
                            _ => V::StructVariant(
                                kids(rng)
                                    .into_iter()
                                    .map(|ty| OwnedNamedValue {
                                        name: name(rng),
                                        ty,
                                    })
                                    .collect(),
                            ),
                        },
                    })
                    .collect(),
            ),
        }
    };
    // Mostly the form's own name (rendered without `as`), sometimes another.
    let own = parse(&render(&OwnedNamedType {
        name: String::new(),
        ty: ty.clone(),
    }))
    .map(|t| t.name)
    .unwrap_or_default();
    let name = if rng.below(3) == 0 { name(rng) } else { own };
    OwnedNamedType { name, ty }
}

#[test]
fn random_schemas_round_trip() {
    let mut rng = Rng(0x1234_5678);
    for _ in 0..3000 {
        let t = random(&mut rng, 4);
        round_trip(&t);
    }
}

#[test]
fn parse_errors_say_where_and_what() {
    let e = parse("struct T {\n    a: u8,\n    b: flaot,\n}").unwrap_err();
    assert_eq!((e.line, e.col), (3, 8));
    assert_eq!(
        e.to_string(),
        "3:8: unknown type 'flaot'; a struct or enum is declared in place: struct flaot { field: u8 }"
    );
    // A Rust path, or a pointer type, is told how to write it, with a
    // fix that parses: it was told to declare `struct std::string::String
    // { field: u8 }`, which the parser refuses (a struct name has no `::`).
    for (text, says, fixed) in [
        (
            "struct T { s: std::string::String }",
            "1:15: unknown type 'std::string::String': write 'String', without its path",
            "struct T { s: String }",
        ),
        (
            "struct T { m: std::collections::HashMap<u8, u8> }",
            "1:15: unknown type 'std::collections::HashMap': write 'HashMap', without its path",
            "struct T { m: HashMap<u8, u8> }",
        ),
        (
            "struct T { o: core::option::Option<u8> }",
            "1:15: unknown type 'core::option::Option': write 'Option', without its path",
            "struct T { o: Option<u8> }",
        ),
        (
            "struct T { s: heapless::string::String<8> }",
            "1:15: unknown type 'heapless::string::String': write heapless::String<N>",
            "struct T { s: heapless::String<8> }",
        ),
        (
            "struct T { b: Box<u8> }",
            "1:15: unknown type 'Box': a Box<T> is its T on the wire; write the T",
            "struct T { b: u8 }",
        ),
        (
            "struct T { i: my::Imu }",
            "1:15: unknown type 'my::Imu'; a struct or enum is declared in place: struct Imu { field: u8 }",
            "struct T { i: struct Imu { field: u8 } }",
        ),
    ] {
        assert_eq!(parse(text).unwrap_err().to_string(), says);
        parse(fixed).unwrap_or_else(|e| panic!("the fix for {text:?} does not parse: {e}"));
    }
    assert_eq!(
        parse("struct T { a: u8 ").unwrap_err().to_string(),
        "1:18: expected '}', found the end of the text"
    );
    assert_eq!(
        parse("(u8)").unwrap_err().to_string(),
        "1:1: a one-element tuple is written (T,); for a plain type drop the parentheses"
    );
    assert!(
        parse("heapless::String<x>")
            .unwrap_err()
            .message
            .contains("capacity")
    );
    assert!(
        parse("u8 extra")
            .unwrap_err()
            .message
            .contains("after the type")
    );
    assert!(
        parse("u8 as name")
            .unwrap_err()
            .message
            .contains("quoted name")
    );
    assert!(
        parse("struct \"unterminated")
            .unwrap_err()
            .message
            .contains("unterminated")
    );
    // Hostile sizes and depths are refused, not allocated or recursed into.
    assert!(
        parse("[u8; 1000000000]")
            .unwrap_err()
            .message
            .contains("more than 16384")
    );
    assert!(parse("[u8; 99999999999999999999999]").is_err());
    let deep = "Option<".repeat(10_000) + "u8" + &">".repeat(10_000);
    assert!(parse(&deep).unwrap_err().message.contains("deeper than 64"));
    // Comments and free layout.
    let t = parse("// the IMU\nstruct Imu{t:u64,// time\nacc:[f32;3],}").unwrap();
    assert_eq!(
        render(&t),
        "struct Imu {\n    t: u64,\n    acc: [f32; 3],\n}"
    );
}

#[test]
fn parse_errors_show_the_text_cut_short_and_escaped() {
    let long = "x".repeat(20_000);
    let digits = "9".repeat(20_000);
    for text in [
        "struct A { x: \u{1b} }".to_string(),
        "struct A { x: u8, \u{1b}[2J: u8 }".to_string(),
        "struct A { x: u8 \u{7f} }".to_string(),
        "struct A { x: \u{9b}2J }".to_string(),
        format!("struct A {{ x: {long} }}"),
        format!("struct A {{ x: u8 as {long} }}"),
        format!("struct A {{ x: [u8; {digits}] }}"),
        format!("struct A {{ x: [u8; {digits}x] }}"),
        format!("struct A {{ x: heapless::String<{long}> }}"),
    ] {
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.len() < 200,
            "{} bytes: {:?}",
            e.len(),
            e.chars().take(200).collect::<String>()
        );
        assert!(!e.chars().any(char::is_control), "{e:?}");
    }
}

#[test]
fn a_declaration_written_by_hand_is_the_rust_types_schema() {
    // What a bridge or C program would send to create a topic of the
    // sensors' Power type: same bytes, so same fingerprint, so the typed
    // subscriber attaches.
    let hand = "
        struct Power {
            t_ns: u64,
            supplies: heapless::Vec<struct Supply {
                name: heapless::String<24>,
                kind: heapless::String<24>,
                status: heapless::String<24>,
                online: Option<bool>,
                capacity_pct: Option<u8>,
                voltage_uv: Option<i32>,
                current_ua: Option<i32>,
                power_uw: Option<i32>,
            }, 4>,
        }";
    let c = shmbus_codec::Codec::parse(hand).unwrap();
    assert_eq!(
        c.schema_bytes(),
        shmbus_core::schema::schema_bytes::<shmbus_sensors::msg::Power>().unwrap()
    );
    assert_eq!(
        c.fingerprint(),
        shmbus_core::schema::fingerprint_of::<shmbus_sensors::msg::Power>().unwrap()
    );
    // A different capacity is a different type.
    let other = shmbus_codec::Codec::parse(&hand.replace(", 4>", ", 5>")).unwrap();
    assert_ne!(other.fingerprint(), c.fingerprint());
}
