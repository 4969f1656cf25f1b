//! Integration tests of the codec: the mapping, round trips, checks,
//! JSON Schema, declaration text, hostile input.

mod bus;
mod limits;
mod mapping;
mod max_size;
mod schema;
mod text;
mod types;
mod vectors;
