//! End-to-end tests of the bus: real segments, real processes.

use std::time::Duration;

use shmbus_core::OpenError;
use shmbus_pub::Publisher;
use shmbus_sub::{Next, Subscriber};
use shmbus_testkit::{Check, role, unique_topic, watchdog};

/// Entry point for child processes (see `shmbus_testkit::child`). Does
/// nothing in a normal test run.
#[test]
fn child_role_entry() {
    let Some((role, _args)) = role() else { return };
    panic!("unknown role {role}");
}

#[test]
fn publish_then_read_latest_and_in_order() {
    watchdog("publish_then_read_latest_and_in_order", Duration::from_secs(60));
    let (topic, _guard) = unique_topic("roundtrip");
    let topic = topic.slots(4);
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    assert!(sub.latest().unwrap().is_none());
    assert!(!sub.has_new());
    assert_eq!(sub.next().unwrap(), Next::Empty);
    for g in 1..=3 {
        assert_eq!(publisher.publish(&Check::new(g)).unwrap(), g);
    }
    assert!(sub.has_new());
    let s = sub.latest().unwrap().unwrap();
    assert_eq!(s.generation, 3);
    assert_eq!(s.value, Check::new(3));
    assert!(!sub.has_new());
    for g in 1..=3 {
        match sub.next().unwrap() {
            Next::Frame(s) => assert_eq!((s.generation, s.value.seq), (g, g)),
            other => panic!("expected frame {g}, got {other:?}"),
        }
    }
    assert_eq!(sub.next().unwrap(), Next::Empty);
    // Fall behind by more than the ring: 10 frames into 4 slots.
    for g in 4..=13 {
        publisher.publish(&Check::new(g)).unwrap();
    }
    assert_eq!(sub.next().unwrap(), Next::Missed(6));
    for g in 10..=13 {
        match sub.next().unwrap() {
            Next::Frame(s) => assert_eq!(s.value, Check::new(g)),
            other => panic!("expected frame {g}, got {other:?}"),
        }
    }
    assert!(sub.age().unwrap() < Duration::from_secs(60));
    assert!(sub.publisher().is_alive());
    drop(publisher);
    assert!(!sub.publisher().is_alive());
}

#[test]
fn second_publisher_is_refused_with_the_live_pid() {
    let (topic, _guard) = unique_topic("second-publisher");
    let _first = Publisher::<Check>::open(&topic).unwrap();
    match Publisher::<Check>::open(&topic) {
        Err(OpenError::PublisherActive { pid, .. }) => assert_eq!(pid as u32, std::process::id()),
        other => panic!("expected PublisherActive, got {other:?}"),
    }
}

#[test]
fn missing_topic_is_not_found_and_wait_times_out() {
    let (topic, _guard) = unique_topic("missing");
    assert!(matches!(Subscriber::<Check>::attach(&topic), Err(OpenError::NotFound { .. })));
    let t = std::time::Instant::now();
    let r = Subscriber::<Check>::wait_for_topic(&topic, Duration::from_millis(200));
    assert!(matches!(r, Err(OpenError::NotFound { .. })));
    assert!(t.elapsed() >= Duration::from_millis(200));
}
