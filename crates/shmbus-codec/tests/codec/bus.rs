//! Capacities on a real bus: the schema a publisher stores carries them,
//! a subscriber of another capacity is refused, and what the codec encodes
//! from a segment's schema always decodes for the typed subscriber.

use postcard::experimental::max_size::MaxSize;
use postcard_schema::Schema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shmbus_codec::{Codec, EncodeProblem};
use shmbus_core::OpenError;
use shmbus_pub::{Publisher, RawPublisher};
use shmbus_sub::{RawSubscriber, Subscriber};
use shmbus_testkit::unique_topic;

#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, PartialEq)]
struct Zone {
    name: heapless::String<16>,
    milli_c: i32,
}

#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, PartialEq)]
struct Thermal {
    t_ns: u64,
    zones: heapless::Vec<Zone, 4>,
    temps: heapless::Vec<f32, 16>,
}

/// The same shape with a narrower name: postcard-schema alone gives both
/// the same schema.
#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, PartialEq)]
#[serde(rename = "Zone")]
struct NarrowZone {
    name: heapless::String<8>,
    milli_c: i32,
}

#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, PartialEq)]
#[serde(rename = "Thermal")]
struct NarrowThermal {
    t_ns: u64,
    zones: heapless::Vec<NarrowZone, 4>,
    temps: heapless::Vec<f32, 16>,
}

#[test]
fn a_subscriber_of_another_capacity_is_refused() {
    assert_eq!(
        shmbus_codec::OwnedNamedType::from(Thermal::SCHEMA),
        shmbus_codec::OwnedNamedType::from(NarrowThermal::SCHEMA),
    );
    let (topic, _g) = unique_topic("codec-capacity-refused");
    let mut p = Publisher::<Thermal>::open(&topic).unwrap();
    p.publish(&Thermal {
        t_ns: 1,
        zones: heapless::Vec::new(),
        temps: heapless::Vec::new(),
    })
    .unwrap();
    assert!(matches!(
        Subscriber::<NarrowThermal>::attach(&topic),
        Err(OpenError::SchemaMismatch { .. })
    ));
    let mut s = Subscriber::<Thermal>::attach(&topic).unwrap();
    assert_eq!(s.latest().unwrap().unwrap().value.t_ns, 1);
}

#[test]
fn typeless_publishing_refuses_what_the_typed_subscriber_cannot_read() {
    let (topic, _g) = unique_topic("codec-capacity-pub");
    drop(Publisher::<Thermal>::open(&topic).unwrap());
    // A tool knows the topic only by its segment, as `shmbus pub` does.
    let seg = RawSubscriber::attach(&topic).unwrap();
    let info = seg.info().clone();
    drop(seg);
    let codec = Codec::from_schema_bytes(&info.schema).unwrap();
    assert!(
        codec.text().contains("name: heapless::String<16>"),
        "{codec}"
    );
    assert!(codec.text().contains("heapless::Vec<f32, 16>"), "{codec}");
    let cap = info.geometry.frame_capacity;

    let zone = |n: &str| json!({"name": n, "milli_c": 41000});
    let good = json!({"t_ns": 5, "zones": [zone("cpu"), zone("0123456789abcdef")], "temps": vec![1.5; 16]});
    let mut bad_name = good.clone();
    bad_name["zones"][1]["name"] = json!("x".repeat(100));
    let e = codec.encode_within(&bad_name, cap).unwrap_err();
    assert_eq!(
        e.to_string(),
        ".zones[1].name: 100 bytes exceed heapless::String<16> (at most 16 bytes)"
    );
    let mut bad_list = good.clone();
    bad_list["temps"] = json!(vec![1.5; 17]);
    assert!(matches!(
        codec.encode_within(&bad_list, cap).unwrap_err().problem,
        EncodeProblem::OverCapacity {
            len: 17,
            capacity: 16,
            ..
        }
    ));
    let mut too_big = good.clone();
    too_big["temps"][0] = json!(1e39);
    assert_eq!(
        codec.encode_within(&too_big, cap).unwrap_err().path,
        ".temps[0]"
    );

    // What passes is read by the typed subscriber, field for field.
    let frame = codec.encode_within(&good, cap).unwrap();
    let mut p = RawPublisher::open(&topic, &info.schema, cap).unwrap();
    p.publish_bytes(&frame).unwrap();
    let mut s = Subscriber::<Thermal>::attach(&topic).unwrap();
    let got = s.latest().unwrap().unwrap().value;
    assert_eq!(got.zones[1].name, "0123456789abcdef");
    assert_eq!(got.temps.len(), 16);
    assert_eq!(codec.decode(&frame).unwrap(), good);
}
