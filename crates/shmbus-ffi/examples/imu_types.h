/* The IMU message of the shmbus examples, declared once for C: the same
 * type as `shmbus_examples::Imu` in Rust (crates/shmbus-examples), so both
 * sides have the same schema fingerprint and read each other's frames. */
#ifndef SHMBUS_EXAMPLES_IMU_H
#define SHMBUS_EXAMPLES_IMU_H

#define IMU_SCHEMA                                                                                                \
    "struct Imu { seq: u32, t_us: u64, frame_id: heapless::String<16>, acc: [f32; 3], gyro: [f32; 3], "       \
    "temp_c: f32 }"

#endif
