//! Rust types that cover every schema node, and helpers.

use std::collections::BTreeMap;

use postcard_schema::Schema;
use postcard_schema::schema::owned::OwnedNamedType;
use serde::{Deserialize, Serialize};
use shmbus_codec::Codec;

#[derive(Serialize, Deserialize, Schema, Debug, PartialEq, Clone)]
pub enum Mode {
    Idle,
    Fix(u8),
    Pair(i16, bool),
    Pos { lat: f64, lon: f64 },
    Nested(Inner),
    Deeper(Option<Box<Mode2>>),
}

#[derive(Serialize, Deserialize, Schema, Debug, PartialEq, Clone)]
pub enum Mode2 {
    A,
    B { x: Option<i8> },
}

#[derive(Serialize, Deserialize, Schema, Debug, PartialEq, Clone)]
pub struct Inner {
    pub id: u8,
    pub name: heapless::String<8>,
}

#[derive(Serialize, Deserialize, Schema, Debug, PartialEq, Clone)]
pub struct Meters(pub f32);

#[derive(Serialize, Deserialize, Schema, Debug, PartialEq, Clone)]
pub struct Marker;

#[derive(Serialize, Deserialize, Schema, Debug, PartialEq, Clone)]
pub struct Pair(pub u8, pub i8);

/// Every kind of schema node a Rust message type can have.
#[derive(Serialize, Deserialize, Schema, Debug, PartialEq, Clone)]
pub struct Everything {
    pub b: bool,
    pub u8_: u8,
    pub i8_: i8,
    pub u16_: u16,
    pub i16_: i16,
    pub u32_: u32,
    pub i32_: i32,
    pub u64_: u64,
    pub i64_: i64,
    pub u128_: u128,
    pub i128_: i128,
    pub f: f32,
    pub d: f64,
    pub c: char,
    pub name: heapless::String<16>,
    pub text: String,
    pub acc: [f32; 3],
    pub list: heapless::Vec<u16, 4>,
    pub vec: Vec<i32>,
    pub opt: Option<u32>,
    pub none: Option<u32>,
    pub opt_opt: Option<Option<u8>>,
    pub opt_unit: Option<()>,
    pub m: Meters,
    pub marker: Marker,
    pub pair: Pair,
    pub unit: (),
    pub tuple: (u8, String, f64),
    pub one: (u8,),
    pub empty: [u8; 0],
    pub modes: [Mode; 6],
    pub map: BTreeMap<String, i32>,
    pub int_map: BTreeMap<u64, bool>,
    pub tuple_map: BTreeMap<(u8, u8), u8>,
}

pub fn sample() -> Everything {
    Everything {
        b: true,
        u8_: 255,
        i8_: -128,
        u16_: 65535,
        i16_: -300,
        u32_: u32::MAX,
        i32_: i32::MIN,
        u64_: u64::MAX,
        i64_: i64::MIN,
        u128_: u128::MAX,
        i128_: i128::MIN,
        f: 9.81,
        d: -1.5e300,
        c: 'é',
        name: "imu0".into(),
        text: "a \"quoted\"\n line".into(),
        acc: [0.0, -0.25, 9.81],
        list: heapless::Vec::from_slice(&[1, 300, 65535, 0]).unwrap(),
        vec: vec![],
        opt: Some(7),
        none: None,
        opt_opt: Some(None),
        opt_unit: Some(()),
        m: Meters(2.5),
        marker: Marker,
        pair: Pair(1, -1),
        unit: (),
        tuple: (3, "x".into(), 0.1),
        one: (9,),
        empty: [],
        modes: [
            Mode::Idle,
            Mode::Fix(3),
            Mode::Pair(-300, true),
            Mode::Pos {
                lat: 52.5,
                lon: 13.4,
            },
            Mode::Nested(Inner {
                id: 4,
                name: "abcdefgh".into(),
            }),
            Mode::Deeper(Some(Box::new(Mode2::B { x: Some(-1) }))),
        ],
        map: [("a".to_string(), 1), ("b c".to_string(), -2)].into(),
        int_map: [(0, true), (u64::MAX, false)].into(),
        tuple_map: [((1, 2), 3)].into(),
    }
}

pub fn owned<T: Schema + ?Sized>() -> OwnedNamedType {
    OwnedNamedType::from(T::SCHEMA)
}

pub fn codec<T: Schema + serde::de::DeserializeOwned>() -> Codec {
    Codec::of::<T>().expect("codec of a Rust type")
}

/// Deterministic pseudo-random numbers (xorshift32).
pub struct Rng(pub u32);

impl Rng {
    pub fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u32) -> u32 {
        self.next() % n.max(1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}
