//! JSON Schema (draft 2020-12) of the JSON the codec writes: every decoded
//! value validates against it.

use serde_json::{Map, Value, json};

use crate::node::{Bounded, Field, Node, VariantKind};

/// The URI of the draft the schemas follow.
pub const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

fn int(min: impl Into<Value>, max: impl Into<Value>) -> Value {
    json!({ "type": "integer", "minimum": min.into(), "maximum": max.into() })
}

fn with_cap(mut s: Value, key: &str, b: &Bounded) -> Value {
    if let (Some(cap), Value::Object(m)) = (b.cap, &mut s) {
        m.insert(key.to_string(), json!(cap));
    }
    s
}

fn object_of(fields: &[Field]) -> Value {
    let mut props = Map::new();
    for f in fields {
        props.insert(f.name.clone(), schema(&f.node));
    }
    let required: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    json!({
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

fn array_of(items: &[Node]) -> Value {
    let n = items.len();
    let Some(first) = items.first() else {
        return json!({ "type": "array", "maxItems": 0 });
    };
    if items.iter().all(|t| t == first) {
        return json!({ "type": "array", "items": schema(first), "minItems": n, "maxItems": n });
    }
    let prefix: Vec<Value> = items.iter().map(schema).collect();
    json!({ "type": "array", "prefixItems": prefix, "minItems": n, "maxItems": n })
}

fn key_names(key: &Node) -> Option<Value> {
    match key {
        Node::Newtype(n) => key_names(n),
        Node::Char => Some(json!({ "minLength": 1, "maxLength": 1 })),
        Node::Str(b) => b.cap.map(|c| json!({ "maxLength": c })),
        Node::U8 | Node::Int { signed: false, .. } => Some(json!({ "pattern": "^[0-9]+$" })),
        Node::I8 | Node::Int { signed: true, .. } => Some(json!({ "pattern": "^-?[0-9]+$" })),
        _ => None,
    }
}

/// The schema of one value of `node`.
pub(crate) fn schema(node: &Node) -> Value {
    match node {
        Node::Bool => json!({ "type": "boolean" }),
        Node::U8 => int(0, u8::MAX),
        Node::I8 => int(i8::MIN, i8::MAX),
        Node::Int { signed, bits, .. } if *bits <= 64 => {
            let b = *bits;
            if *signed {
                int(i64::MIN >> (64 - b), i64::MAX >> (64 - b))
            } else {
                int(0, u64::MAX >> (64 - b))
            }
        }
        Node::Int { signed, .. } => {
            // Beyond the 64-bit range the value is a decimal string.
            let (min, pattern) = if *signed {
                (Value::from(i64::MIN), "^-?[0-9]+$")
            } else {
                (Value::from(0), "^[0-9]+$")
            };
            json!({ "anyOf": [
                int(min, u64::MAX),
                { "type": "string", "pattern": pattern },
            ]})
        }
        Node::F32 | Node::F64 => json!({ "anyOf": [
            { "type": "number" },
            { "enum": ["NaN", "inf", "-inf"] },
        ]}),
        Node::Char => json!({ "type": "string", "minLength": 1, "maxLength": 1 }),
        Node::Str(b) => with_cap(json!({ "type": "string" }), "maxLength", b),
        Node::Bytes(b) => with_cap(
            json!({ "type": "array", "items": int(0, u8::MAX) }),
            "maxItems",
            b,
        ),
        Node::Option(inner) if inner.nullable() => json!({ "anyOf": [
            { "type": "null" },
            { "type": "array", "prefixItems": [schema(inner)], "minItems": 1, "maxItems": 1 },
        ]}),
        Node::Option(inner) => json!({ "anyOf": [schema(inner), { "type": "null" }] }),
        Node::Unit => json!({ "type": "null" }),
        Node::Newtype(inner) => schema(inner),
        Node::Seq(elem, b) => with_cap(
            json!({ "type": "array", "items": schema(elem) }),
            "maxItems",
            b,
        ),
        Node::Tuple(items) => array_of(items),
        Node::Map(key, val, b) => {
            let mut s = json!({ "type": "object", "additionalProperties": schema(val) });
            if let Some(names) = key_names(key) {
                s["propertyNames"] = names;
            }
            with_cap(s, "maxProperties", b)
        }
        Node::Struct(fields) => object_of(fields),
        Node::Enum(vars) => {
            let units: Vec<&str> = vars
                .iter()
                .filter(|v| v.kind == VariantKind::Unit)
                .map(|v| v.name.as_str())
                .collect();
            let mut one_of = Vec::new();
            if !units.is_empty() {
                one_of.push(json!({ "type": "string", "enum": units }));
            }
            for v in vars {
                let inner = match &v.kind {
                    VariantKind::Unit => continue,
                    VariantKind::Newtype(n) => schema(n),
                    VariantKind::Tuple(items) => array_of(items),
                    VariantKind::Struct(fields) => object_of(fields),
                };
                one_of.push(json!({
                    "type": "object",
                    "properties": { v.name.clone(): inner },
                    "required": [v.name],
                    "additionalProperties": false,
                }));
            }
            match one_of.len() {
                0 => json!({ "not": {} }),
                1 => one_of.remove(0),
                _ => json!({ "oneOf": one_of }),
            }
        }
    }
}

/// `s` with `$schema` and `title` in front.
pub(crate) fn top(s: Value, title: &str) -> Value {
    let mut m = Map::new();
    m.insert("$schema".into(), json!(DRAFT));
    m.insert("title".into(), json!(title));
    if let Value::Object(rest) = s {
        for (k, v) in rest {
            m.insert(k, v);
        }
    }
    Value::Object(m)
}
