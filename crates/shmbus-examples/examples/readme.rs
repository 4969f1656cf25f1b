use serde::{Deserialize, Serialize};
use shmbus_pub::Publisher;
use shmbus_sub::{Next, Subscriber, Topic};
use std::time::Duration;
fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[derive(
        Serialize,
        Deserialize,
        Debug,
        postcard::experimental::max_size::MaxSize,
        postcard_schema::Schema,
    )]
    struct Imu {
        t_ns: u64,
        acc: [f32; 3],
        frame: heapless::String<8>,
    }

    // The sensor daemon:
    let mut publisher = Publisher::<Imu>::open(&Topic::new("imu"))?;
    publisher.publish(&Imu {
        t_ns: 1,
        acc: [0.0, 0.0, 9.81],
        frame: "imu0".into(),
    })?;

    // Any other process (a program that only reads links only shmbus-sub, which
    // attaches read-only and contains no code that can write to a segment):
    let mut sub = Subscriber::<Imu>::wait_for_topic(&Topic::new("imu"), Duration::from_secs(5))?;
    if let Some(s) = sub.latest()? {
        println!("{:?}, {:?} old", s.value, s.age());
    }
    match sub.wait_next(Duration::from_secs(1))? {
        Next::Frame(s) => println!("#{} {:?}", s.generation, s.value),
        Next::Missed(n) => eprintln!("fell behind: {n} frames lost"),
        Next::Empty => {}
    }
    Ok(())
}
