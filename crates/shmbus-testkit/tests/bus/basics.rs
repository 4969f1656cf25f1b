//! Single-process basics: publish, read latest and in order, second publisher, missing topic.

use super::*;

#[test]
fn publish_then_read_latest_and_in_order() {
    watchdog(
        "publish_then_read_latest_and_in_order",
        Duration::from_secs(60),
    );
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
    // A new publisher carries on from the newest generation.
    let mut again = Publisher::<Check>::open(&topic).unwrap();
    assert!(!again.raw().created());
    assert_eq!(again.publish(&Check::new(14)).unwrap(), 14);
    assert!(matches!(sub.next().unwrap(), Next::Frame(s) if s.generation == 14));
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
fn second_publisher_in_another_process_names_the_live_child() {
    watchdog(
        "second_publisher_in_another_process",
        Duration::from_secs(120),
    );
    let (topic, _guard) = unique_topic("second-publisher-xproc");
    let mut child = KillOnDrop(spawn("hold-pub", &topic_args(&topic)));
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let l = line(&mut out);
    assert_eq!(field(&l, "pid"), u64::from(child.0.id()), "{l}");
    match Publisher::<Check>::open(&topic) {
        Err(e @ OpenError::PublisherActive { .. }) => {
            let OpenError::PublisherActive { pid, .. } = e else {
                unreachable!()
            };
            assert_eq!(pid as u32, child.0.id());
            let msg = e.to_string();
            assert!(msg.contains(&format!("pid {}", child.0.id())), "{msg}");
        }
        other => panic!("expected PublisherActive, got {other:?}"),
    }
    // The kernel releases the lock when the holder dies: we can take over.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let p = Publisher::<Check>::open(&topic).unwrap();
    assert!(!p.raw().created());
}

#[test]
fn missing_topic_is_not_found_and_wait_times_out() {
    let (topic, _guard) = unique_topic("missing");
    assert!(matches!(
        Subscriber::<Check>::attach(&topic),
        Err(OpenError::NotFound { .. })
    ));
    let t = Instant::now();
    let r = Subscriber::<Check>::wait_for_topic(&topic, Duration::from_millis(200));
    assert!(matches!(r, Err(OpenError::NotFound { .. })));
    assert!(t.elapsed() >= Duration::from_millis(200));
}
