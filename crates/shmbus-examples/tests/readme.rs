//! The Rust sample of README.md ("In Rust") as a reader types it:
//! `readme_sample` below is the sample line for line (the first test
//! compares them), with one change, the key: `Topic::new("imu")` here is
//! `Topic::new("imu").key(key)`, a key of this test's own. The second test
//! runs it: publisher and subscriber in this process, as the sample has them.

use std::time::Duration;

use shmbus_testkit::{Guard, unique_key, watchdog};

/// The one change made to the README's sample.
const TOPIC: &str = "Topic::new(\"imu\")";
const TOPIC_HERE: &str = "Topic::new(\"imu\").key(key)";

#[rustfmt::skip]
fn readme_sample(key: i32) -> Result<(), Box<dyn std::error::Error>> {
    use serde::{Deserialize, Serialize};
    use shmbus_pub::Publisher;
    use shmbus_sub::{Next, Subscriber, Topic, WaitError};
    use std::time::Duration;

    #[derive(Serialize, Deserialize, Debug,
             postcard::experimental::max_size::MaxSize, postcard_schema::Schema)]
    struct Imu { t_ns: u64, acc: [f32; 3], frame: heapless::String<8> }

    // The sensor daemon:
    let mut publisher = Publisher::<Imu>::open(&Topic::new("imu").key(key))?;
    publisher.publish(&Imu { t_ns: 1, acc: [0.0, 0.0, 9.81], frame: "imu0".into() })?;

    // Any other process (a program that only reads links only shmbus-sub, which
    // attaches read-only and contains no code that can write to a segment):
    let mut sub = Subscriber::<Imu>::wait_for_topic(&Topic::new("imu").key(key), Duration::from_secs(5))?;
    if let Some(s) = sub.latest()? { println!("{:?}, {:?} old", s.value, s.age()); }
    match sub.wait_next(Duration::from_secs(1)) {
        Ok(Next::Frame(s)) => println!("#{} {:?}", s.generation, s.value),
        Ok(Next::Missed(n)) => eprintln!("fell behind: {n} frames lost"),
        Ok(Next::Empty) | Err(WaitError::Timeout) => {} // nothing new within the second
        Err(e) => return Err(e.into()), // the publisher died, the topic was removed, ...
    }
    Ok(())
}

/// The README's ```rust block, with the key of `readme_sample`.
fn readme_block() -> String {
    let readme = include_str!("../../../README.md");
    let mut blocks = readme.split("\n```rust\n").skip(1);
    let block = blocks.next().expect("README.md has a ```rust block");
    assert!(
        blocks.next().is_none(),
        "README.md has one ```rust block; test the new one too"
    );
    let block = &block[..block.find("\n```\n").expect("the ```rust block ends")];
    assert_eq!(
        block.matches(TOPIC).count(),
        2,
        "the sample opens the topic twice:\n{block}"
    );
    block.replace(TOPIC, TOPIC_HERE)
}

/// The body of `readme_sample` in this file, without its indent and `Ok(())`.
fn sample_here() -> String {
    let me = include_str!("readme.rs");
    let start = me.find("fn readme_sample(").expect("readme_sample is here");
    let body = &me[start..];
    let body = &body[body.find("{\n").unwrap() + 2..body.find("\n    Ok(())\n}\n").unwrap()];
    body.lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_rust_sample_is_the_one_tested_here() {
    assert_eq!(
        sample_here(),
        readme_block(),
        "README.md's Rust sample and readme_sample in crates/shmbus-examples/tests/readme.rs differ: change both"
    );
}

#[test]
fn the_readme_rust_sample_runs_when_nothing_new_comes() {
    watchdog("README's Rust sample", Duration::from_secs(120));
    let key = unique_key("readme-rust-sample");
    let _guard = Guard(key);
    // One frame, read by latest(): the wait_next after it times out, and the
    // sample must take that as "nothing new", not fail.
    if let Err(e) = readme_sample(key) {
        panic!("README.md's Rust sample failed: {e}");
    }
}
