//! A schema as readable Rust-like text, for `shmbus info`.
//!
//! ```text
//! Imu {
//!     t_us: u64,
//!     acc: [f32; 3],
//!     frame: String,
//! }
//! ```

use postcard_schema::schema::owned::{
    OwnedDataModelType as Ty, OwnedDataModelVariant as Variant, OwnedNamedType, OwnedNamedValue,
};

/// Render `t` as indented Rust-like text.
pub fn render(t: &OwnedNamedType) -> String {
    let mut s = String::new();
    ty(t, 0, &mut s);
    s
}

fn pad(depth: usize, s: &mut String) {
    for _ in 0..depth {
        s.push_str("    ");
    }
}

fn fields(fs: &[OwnedNamedValue], depth: usize, s: &mut String) {
    s.push_str(" {\n");
    for f in fs {
        pad(depth + 1, s);
        s.push_str(&f.name);
        s.push_str(": ");
        ty(&f.ty, depth + 1, s);
        s.push_str(",\n");
    }
    pad(depth, s);
    s.push('}');
}

fn list(ts: &[OwnedNamedType], depth: usize, s: &mut String) {
    s.push('(');
    for (i, t) in ts.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        ty(t, depth, s);
    }
    s.push(')');
}

fn ty(t: &OwnedNamedType, depth: usize, s: &mut String) {
    let prim = |name: &str, s: &mut String| s.push_str(name);
    match &t.ty {
        Ty::Bool => prim("bool", s),
        Ty::I8 => prim("i8", s),
        Ty::U8 => prim("u8", s),
        Ty::I16 => prim("i16", s),
        Ty::I32 => prim("i32", s),
        Ty::I64 => prim("i64", s),
        Ty::I128 => prim("i128", s),
        Ty::U16 => prim("u16", s),
        Ty::U32 => prim("u32", s),
        Ty::U64 => prim("u64", s),
        Ty::U128 => prim("u128", s),
        Ty::Usize => prim("usize", s),
        Ty::Isize => prim("isize", s),
        Ty::F32 => prim("f32", s),
        Ty::F64 => prim("f64", s),
        Ty::Char => prim("char", s),
        Ty::String => prim("String", s),
        Ty::ByteArray => prim("[u8]", s),
        Ty::Unit => prim("()", s),
        Ty::Schema => prim("Schema", s),
        Ty::UnitStruct => s.push_str(&t.name),
        Ty::Option(i) => {
            s.push_str("Option<");
            ty(i, depth, s);
            s.push('>');
        }
        Ty::Seq(i) => {
            s.push_str("Vec<");
            ty(i, depth, s);
            s.push('>');
        }
        Ty::NewtypeStruct(i) => {
            s.push_str(&t.name);
            s.push('(');
            ty(i, depth, s);
            s.push(')');
        }
        Ty::Tuple(ts) => match ts.first() {
            // Arrays `[T; N]` are tuples of N equal elements in the schema.
            Some(first) if t.name == "[T; N]" && ts.iter().all(|x| x == first) => {
                s.push('[');
                ty(first, depth, s);
                s.push_str(&format!("; {}]", ts.len()));
            }
            _ => list(ts, depth, s),
        },
        Ty::TupleStruct(ts) => {
            s.push_str(&t.name);
            list(ts, depth, s);
        }
        Ty::Map { key, val } => {
            s.push_str("Map<");
            ty(key, depth, s);
            s.push_str(", ");
            ty(val, depth, s);
            s.push('>');
        }
        Ty::Struct(fs) => {
            s.push_str(&t.name);
            fields(fs, depth, s);
        }
        Ty::Enum(vars) => {
            s.push_str("enum ");
            s.push_str(&t.name);
            s.push_str(" {\n");
            for v in vars {
                pad(depth + 1, s);
                s.push_str(&v.name);
                match &v.ty {
                    Variant::UnitVariant => {}
                    Variant::NewtypeVariant(i) => {
                        s.push('(');
                        ty(i, depth + 1, s);
                        s.push(')');
                    }
                    Variant::TupleVariant(ts) => list(ts, depth + 1, s),
                    Variant::StructVariant(fs) => fields(fs, depth + 1, s),
                }
                s.push_str(",\n");
            }
            pad(depth, s);
            s.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postcard_schema::Schema;

    #[derive(serde::Serialize, Schema)]
    #[allow(dead_code, reason = "only the schema is used")]
    enum Fix {
        None,
        Gps { sats: u8 },
    }

    #[derive(serde::Serialize, Schema)]
    #[allow(dead_code, reason = "only the schema is used")]
    struct Imu {
        t_us: u64,
        acc: [f32; 3],
        frame: heapless::String<8>,
        fix: Fix,
        hist: heapless::Vec<i16, 4>,
        opt: Option<u8>,
    }

    #[test]
    fn renders_nested_types_readably() {
        let text = render(&OwnedNamedType::from(Imu::SCHEMA));
        let want = "Imu {\n    t_us: u64,\n    acc: [f32; 3],\n    frame: String,\n    fix: enum Fix {\n        None,\n        Gps {\n            sats: u8,\n        },\n    },\n    hist: Vec<i16>,\n    opt: Option<u8>,\n}";
        assert_eq!(text, want);
    }
}
