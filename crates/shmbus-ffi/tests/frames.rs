//! Typed frames encode to the same bytes as postcard does for the matching
//! Rust type, and decode what Rust encodes: the wire is shared, so a C
//! publisher and a Rust subscriber (or the reverse) agree.

use std::sync::Arc;

use postcard_schema::Schema;
use postcard_schema::schema::owned::{OwnedDataModelType as D, OwnedNamedType};
use serde::{Deserialize, Serialize};
use shmbus::frame::Frame;
use shmbus::schema::SchemaDef;
use shmbus::status::*;
use shmbus_examples::Imu;

fn frame_for<T: Schema>() -> Frame {
    let def = SchemaDef::new(OwnedNamedType::from(T::SCHEMA)).unwrap();
    Frame::new(Arc::new(def)).unwrap()
}

#[test]
fn imu_frames_match_postcard_both_ways() {
    let v = Imu::simulate(7, 1_000);
    let mut f = frame_for::<Imu>();
    f.set_int("seq", v.seq.into()).unwrap();
    f.set_int("t_us", v.t_us.into()).unwrap();
    f.set_buf("frame_id", v.frame_id.as_bytes(), true).unwrap();
    for i in 0..3 {
        f.set_float(&format!("acc[{i}]"), v.acc[i].into()).unwrap();
        f.set_float(&format!("gyro[{i}]"), v.gyro[i].into())
            .unwrap();
    }
    f.set_float("temp_c", v.temp_c.into()).unwrap();
    assert_eq!(f.encode(), postcard::to_allocvec(&v).unwrap());

    let other = Imu::simulate(123_456, u64::MAX);
    let mut g = frame_for::<Imu>();
    g.decode(&postcard::to_allocvec(&other).unwrap()).unwrap();
    assert_eq!(g.get_int("seq").unwrap(), 123_456);
    assert_eq!(g.get_int("t_us").unwrap(), i128::from(u64::MAX));
    assert_eq!(g.get_buf("frame_id", true).unwrap(), b"imu_link");
    assert_eq!(g.get_float("acc[2]").unwrap(), f64::from(other.acc[2]));
    assert_eq!(g.get_float("temp_c").unwrap(), f64::from(other.temp_c));
    assert_eq!(g.encode(), postcard::to_allocvec(&other).unwrap());
}

#[derive(Serialize, Deserialize, Schema, Debug, PartialEq, Default)]
struct Inner {
    ok: bool,
    small: i8,
    mid: i16,
}

#[derive(Serialize, Deserialize, Schema, Debug, PartialEq, Default)]
struct Pair(u16, f64);

#[derive(Serialize, Deserialize, Schema, Debug, PartialEq, Default)]
struct Wide {
    a: u8,
    b: i64,
    c: u32,
    inner: Inner,
    pair: Pair,
    grid: [[i32; 2]; 2],
    unit: (),
    name: String,
}

#[test]
fn every_covered_scalar_matches_postcard() {
    let v = Wide {
        a: 255,
        b: i64::MIN,
        c: 300,
        inner: Inner {
            ok: true,
            small: -128,
            mid: -300,
        },
        pair: Pair(65535, -0.5),
        grid: [[-1, 2], [i32::MAX, i32::MIN]],
        unit: (),
        name: "héllo".into(),
    };
    let mut f = frame_for::<Wide>();
    f.set_int("a", 255).unwrap();
    f.set_int("b", i64::MIN.into()).unwrap();
    f.set_int("c", 300).unwrap();
    f.set_bool("inner.ok", true).unwrap();
    f.set_int("inner.small", -128).unwrap();
    f.set_int("inner.mid", -300).unwrap();
    f.set_int("pair[0]", 65535).unwrap();
    f.set_float("pair[1]", -0.5).unwrap();
    f.set_int("grid[0][0]", -1).unwrap();
    f.set_int("grid[0][1]", 2).unwrap();
    f.set_int("grid[1][0]", i32::MAX.into()).unwrap();
    f.set_int("grid[1][1]", i32::MIN.into()).unwrap();
    f.set_buf("name", "héllo".as_bytes(), true).unwrap();
    let bytes = postcard::to_allocvec(&v).unwrap();
    assert_eq!(f.encode(), bytes);

    let mut g = frame_for::<Wide>();
    g.decode(&bytes).unwrap();
    assert_eq!(g.get_int("b").unwrap(), i128::from(i64::MIN));
    assert_eq!(g.get_int("inner.small").unwrap(), -128);
    assert_eq!(g.get_int("grid[1][1]").unwrap(), i128::from(i32::MIN));
    assert!(g.get_bool("inner.ok").unwrap());
    assert_eq!(g.encode(), bytes);

    // Range and type checks name the field.
    let e = f.set_int("inner.small", 128).unwrap_err();
    assert_eq!(e.code, SHMBUS_ERR_RANGE);
    assert!(e.message.contains("'inner.small'"), "{}", e.message);
    assert_eq!(f.set_int("a", -1).unwrap_err().code, SHMBUS_ERR_RANGE);
    assert_eq!(
        f.set_float("a", 1.0).unwrap_err().code,
        SHMBUS_ERR_WRONG_TYPE
    );
    assert_eq!(
        f.set_int("grid[2][0]", 1).unwrap_err().code,
        SHMBUS_ERR_NO_FIELD
    );
    // A string without a capacity has no maximum frame size.
    let def = SchemaDef::new(OwnedNamedType::from(Wide::SCHEMA)).unwrap();
    assert_eq!(def.max_size().unwrap_err().code, SHMBUS_ERR_SCHEMA);
}

/// `heapless::Vec<T, N>` with its capacity in the node name (as the schema
/// bytes of a Rust type carry it).
fn list_schema() -> OwnedNamedType {
    let u16t = OwnedNamedType::from(u16::SCHEMA);
    let elem = OwnedNamedType {
        name: "Point".into(),
        ty: D::Struct(vec![
            postcard_schema::schema::owned::OwnedNamedValue {
                name: "x".into(),
                ty: u16t.clone(),
            },
            postcard_schema::schema::owned::OwnedNamedValue {
                name: "tag".into(),
                ty: OwnedNamedType {
                    name: "heapless::String<4>".into(),
                    ty: D::String,
                },
            },
        ]),
    };
    OwnedNamedType {
        name: "Track".into(),
        ty: D::Struct(vec![
            postcard_schema::schema::owned::OwnedNamedValue {
                name: "points".into(),
                ty: OwnedNamedType {
                    name: "heapless::Vec<Point, 3>".into(),
                    ty: D::Seq(Box::new(elem)),
                },
            },
            postcard_schema::schema::owned::OwnedNamedValue {
                name: "raw".into(),
                ty: OwnedNamedType {
                    name: "heapless::Vec<u8, 5>".into(),
                    ty: D::Seq(Box::new(OwnedNamedType::from(u8::SCHEMA))),
                },
            },
        ]),
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Point {
    x: u16,
    tag: heapless::String<4>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Track {
    points: heapless::Vec<Point, 3>,
    raw: heapless::Vec<u8, 5>,
}

#[test]
fn lists_with_a_capacity_grow_check_and_match_postcard() {
    let def = SchemaDef::new(list_schema()).unwrap();
    // 1 + 3 * (3 + 1 + 4) + 1 + 5
    assert_eq!(def.max_size().unwrap(), 31);
    let mut f = Frame::new(Arc::new(def)).unwrap();
    f.set_int("points[1].x", 700).unwrap(); // extends the list to 2
    assert_eq!(f.len("points").unwrap(), 2);
    assert_eq!(f.get_int("points[0].x").unwrap(), 0);
    assert_eq!(f.get_int("points[2].x").unwrap_err().code, SHMBUS_ERR_RANGE);
    f.set_buf("points[0].tag", b"ab", true).unwrap();
    assert_eq!(
        f.set_buf("points[0].tag", b"abcde", true).unwrap_err().code,
        SHMBUS_ERR_RANGE
    );
    f.set_buf("raw", &[1, 2, 3], false).unwrap();
    assert_eq!(
        f.set_buf("raw", &[0; 6], false).unwrap_err().code,
        SHMBUS_ERR_RANGE
    );
    assert_eq!(f.set_len("points", 4).unwrap_err().code, SHMBUS_ERR_RANGE);
    // An index past the capacity names no field, and says that is why.
    for (path, why) in [
        (
            "points[3].x",
            "index 3 is past the end of list 'points', which holds 3 (points[0] to points[2])",
        ),
        ("points[99999999999999999999].tag", "fields look like"),
        ("points[1].y", "fields look like"),
        ("raw[0]", "fields look like"),
    ] {
        let e = f.set_int(path, 1).unwrap_err();
        assert_eq!(e.code, SHMBUS_ERR_NO_FIELD, "{path}");
        assert!(e.message.contains(why), "{path}: {}", e.message);
        assert_eq!(f.get_int(path).unwrap_err().message, e.message);
    }

    let mut points = heapless::Vec::new();
    points
        .push(Point {
            x: 0,
            tag: "ab".into(),
        })
        .unwrap();
    points
        .push(Point {
            x: 700,
            tag: "".into(),
        })
        .unwrap();
    let want = Track {
        points,
        raw: heapless::Vec::from_slice(&[1, 2, 3]).unwrap(),
    };
    let bytes = postcard::to_allocvec(&want).unwrap();
    assert_eq!(f.encode(), bytes);

    // Shrinking drops elements; growing again starts them at zero.
    f.set_len("points", 1).unwrap();
    f.set_len("points", 2).unwrap();
    assert_eq!(f.get_int("points[1].x").unwrap(), 0);

    f.decode(&bytes).unwrap();
    assert_eq!(f.get_int("points[1].x").unwrap(), 700);
    assert_eq!(f.get_buf("raw", false).unwrap(), &[1, 2, 3]);
    // A frame whose list is longer than its capacity is refused.
    let mut bad = bytes.clone();
    bad[0] = 4;
    assert!(f.decode(&bad).is_err());
    // Truncated frames are refused, whatever the cut.
    for cut in 0..bytes.len() {
        assert!(f.decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    // Decoding goes into a second store, swapped in on success: after a
    // two-point frame, then a one-point frame (decoded into the other
    // store), then another one-point frame (back into the first, whose
    // point 1 was x = 700), growing the list still starts point 1 at zero.
    let mut one = Track {
        points: heapless::Vec::new(),
        raw: heapless::Vec::new(),
    };
    one.points
        .push(Point {
            x: 5,
            tag: "z".into(),
        })
        .unwrap();
    let one = postcard::to_allocvec(&one).unwrap();
    f.decode(&bytes).unwrap();
    f.decode(&one).unwrap();
    f.decode(&one).unwrap();
    assert_eq!(
        (f.len("points").unwrap(), f.get_int("points[0].x").unwrap()),
        (1, 5)
    );
    f.set_len("points", 2).unwrap();
    assert_eq!(f.get_int("points[1].x").unwrap(), 0);
    assert_eq!(f.get_buf("points[1].tag", true).unwrap(), b"");
}

#[test]
fn shapes_without_typed_access_say_which_field() {
    #[derive(Schema)]
    #[allow(dead_code)]
    struct WithOption {
        a: u8,
        b: Option<u8>,
    }
    let def = SchemaDef::new(OwnedNamedType::from(WithOption::SCHEMA)).unwrap();
    let e = Frame::new(Arc::new(def)).unwrap_err();
    assert_eq!(e.code, SHMBUS_ERR_UNSUPPORTED);
    assert!(
        e.message.contains("field 'b' is an Option"),
        "{}",
        e.message
    );
}

#[test]
fn a_declared_schema_is_the_rust_types_schema() {
    // What shmbus_schema_parse gives for the examples' Imu, declared as text,
    // and what a Rust Publisher<Imu> stores in its segment: same bytes, same
    // fingerprint, same frame capacity.
    let decl = "struct Imu { seq: u32, t_us: u64, frame_id: heapless::String<16>, acc: [f32; 3], gyro: [f32; 3], temp_c: f32 }";
    let parsed =
        SchemaDef::new(shmbus_codec::Codec::parse(decl).unwrap().schema().clone()).unwrap();
    let rust = SchemaDef::from_bytes(&shmbus_core::schema::schema_bytes::<Imu>().unwrap()).unwrap();
    assert_eq!(parsed.bytes, rust.bytes);
    assert_eq!(
        parsed.fingerprint,
        shmbus_core::schema::fingerprint_of::<Imu>().unwrap()
    );
    use postcard::experimental::max_size::MaxSize;
    assert_eq!(parsed.max_size().unwrap(), Imu::POSTCARD_MAX_SIZE);
    // The capacity is enforced by the typed frame.
    let mut f = Frame::new(Arc::new(parsed)).unwrap();
    assert_eq!(
        f.set_buf("frame_id", &[b'x'; 17], true).unwrap_err().code,
        SHMBUS_ERR_RANGE
    );
    f.set_buf("frame_id", &[b'x'; 16], true).unwrap();
}

/// A declared capacity no topic can hold (or no memory can) is refused
/// with a code when the frame is made: allocating it would abort the
/// process, and a capacity near usize::MAX overflowed the size sum.
#[test]
fn huge_declared_capacities_are_refused_with_a_code_not_an_abort() {
    use shmbus::frame::{shmbus_frame, shmbus_frame_new};
    use shmbus::json::shmbus_schema_parse;
    use shmbus::schema::{shmbus_schema, shmbus_schema_close};
    let last = || {
        // SAFETY: the library's message is a NUL-terminated string.
        unsafe { std::ffi::CStr::from_ptr(shmbus::shmbus_last_error()) }
            .to_string_lossy()
            .into_owned()
    };
    for decl in [
        c"struct A { v: heapless::Vec<u8, 4000000000000> }",
        c"struct A { v: heapless::String<18446744073709551615> }",
        c"struct A { a: heapless::String<9000000>, b: heapless::Vec<u8, 9000000> }",
    ] {
        let mut s = shmbus_schema { id: 0 };
        // SAFETY: a NUL-terminated string and a writable handle.
        let rc = unsafe { shmbus_schema_parse(decl.as_ptr(), &mut s) };
        assert_eq!(rc, SHMBUS_OK, "{decl:?}: {}", last());
        let mut f = shmbus_frame { id: 0 };
        // SAFETY: a writable handle.
        let rc = unsafe { shmbus_frame_new(s, &mut f) };
        assert_eq!(rc, SHMBUS_ERR_TOO_LARGE, "{decl:?}: {}", last());
        assert!(last().contains("declare smaller capacities"), "{}", last());
        assert_eq!(shmbus_schema_close(s), SHMBUS_OK);
    }
    // Just within a topic's frames: made.
    let mut s = shmbus_schema { id: 0 };
    let decl = c"struct A { v: heapless::Vec<u8, 16000000> }";
    // SAFETY: as above.
    let rc = unsafe { shmbus_schema_parse(decl.as_ptr(), &mut s) };
    assert_eq!(rc, SHMBUS_OK);
    let mut f = shmbus_frame { id: 0 };
    // SAFETY: as above.
    let rc = unsafe { shmbus_frame_new(s, &mut f) };
    assert_eq!(rc, SHMBUS_OK, "{}", last());
    assert_eq!(shmbus::frame::shmbus_frame_close(f), SHMBUS_OK);
    assert_eq!(shmbus_schema_close(s), SHMBUS_OK);
}

#[test]
fn a_refused_set_leaves_the_frame_as_it_was() {
    let def = SchemaDef::new(list_schema()).unwrap();
    let mut f = Frame::new(Arc::new(def)).unwrap();
    f.set_int("points[0].x", 5).unwrap();
    let before = f.encode().to_vec();
    // Each set below names points[2], past the list's length of 1, and is
    // refused: the list must not have grown by the two zero elements the
    // path would have made live.
    let refused = [
        ("u16 out of range", f.set_int("points[2].x", 70_000)),
        ("negative u16", f.set_int("points[2].x", -1)),
        ("float into u16", f.set_float("points[2].x", 1.0)),
        ("bool into u16", f.set_bool("points[2].x", true)),
        (
            "string too long",
            f.set_buf("points[2].tag", b"abcde", true),
        ),
        (
            "string not UTF-8",
            f.set_buf("points[2].tag", &[0xff], true),
        ),
        (
            "bytes into a string",
            f.set_buf("points[2].tag", b"ab", false),
        ),
    ];
    for (what, r) in refused {
        assert!(r.is_err(), "{what} was accepted");
    }
    assert_eq!(f.len("points").unwrap(), 1);
    assert_eq!(f.encode(), &before[..]);
    // A set that fits still makes its element live.
    f.set_int("points[2].x", 7).unwrap();
    assert_eq!(f.len("points").unwrap(), 3);
    assert_eq!(f.get_int("points[1].x").unwrap(), 0);
    assert_eq!(f.get_int("points[2].x").unwrap(), 7);
}

#[test]
fn messages_about_a_bad_path_or_value_are_short_and_printable() {
    let mut f = frame_for::<Imu>();
    let path = format!("\u{1b}]0;x\u{7}\u{1b}[2J{}", "x".repeat(10_000));
    let e = f.set_int(&path, 1).unwrap_err();
    assert_eq!(e.code, SHMBUS_ERR_NO_FIELD);
    let e2 = f.set_float("acc[0]", 1e300).unwrap_err();
    assert_eq!(e2.code, SHMBUS_ERR_RANGE);
    for m in [&e.message, &e2.message] {
        assert!(m.len() < 200, "{} bytes: {m:?}", m.len());
        assert!(!m.chars().any(char::is_control), "{m:?}");
    }
}
