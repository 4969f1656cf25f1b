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

/// The schema of one value for viewers (Foxglove, Lichtblick): the subset
/// their JSON Schema readers turn into message definitions. Every property
/// has exactly one `type` of `boolean`, `string`, `number`, `integer`,
/// `object` (with `properties`) or `array` (whose `items` has one of the
/// others). What cannot be said that way is left out (`None`): `()`,
/// tuples of different types, arrays of arrays.
pub(crate) fn viewer(node: &Node) -> Option<Value> {
    Some(match node {
        Node::Bool => json!({ "type": "boolean" }),
        // Exact limits where the value is always a number.
        Node::U8 | Node::I8 | Node::Int { bits: ..=64, .. } => schema(node),
        Node::Int { .. } => json!({ "type": "integer" }),
        Node::F32 | Node::F64 => json!({ "type": "number" }),
        Node::Char | Node::Str(_) => schema(node),
        Node::Bytes(b) => with_cap(
            json!({ "type": "array", "items": { "type": "integer" } }),
            "maxItems",
            b,
        ),
        Node::Option(inner) if inner.nullable() => array_for_viewer(inner)?,
        Node::Option(inner) | Node::Newtype(inner) => viewer(inner)?,
        Node::Unit => return None,
        Node::Seq(elem, b) => with_cap(array_for_viewer(elem)?, "maxItems", b),
        Node::Tuple(items) => match items.first() {
            Some(first) if items.iter().all(|t| t == first) => {
                let mut s = array_for_viewer(first)?;
                s["minItems"] = json!(items.len());
                s["maxItems"] = json!(items.len());
                s
            }
            _ => return None,
        },
        Node::Map(_, val, b) => {
            let mut s = json!({ "type": "object", "properties": {} });
            if let Some(v) = viewer(val) {
                s["additionalProperties"] = v;
            }
            with_cap(s, "maxProperties", b)
        }
        Node::Struct(fields) => {
            viewer_object(fields.iter().map(|f| (f.name.as_str(), viewer(&f.node))))
        }
        Node::Enum(vars) => {
            if vars.iter().all(|v| v.kind == VariantKind::Unit) {
                let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
                json!({ "type": "string", "enum": names })
            } else {
                // `{"Variant": content}`; unit variants (plain strings) have
                // no place in an object's definition.
                viewer_object(vars.iter().map(|v| {
                    let content = match &v.kind {
                        VariantKind::Unit => None,
                        VariantKind::Newtype(n) => viewer(n),
                        VariantKind::Tuple(items) => viewer(&Node::Tuple(items.clone())),
                        VariantKind::Struct(fields) => viewer(&Node::Struct(fields.clone())),
                    };
                    (v.name.as_str(), content)
                }))
            }
        }
    })
}

fn array_for_viewer(elem: &Node) -> Option<Value> {
    let items = viewer(elem)?;
    if items["type"] == "array" {
        return None;
    }
    Some(json!({ "type": "array", "items": items }))
}

fn viewer_object<'a>(fields: impl Iterator<Item = (&'a str, Option<Value>)>) -> Value {
    let mut props = Map::new();
    for (name, s) in fields {
        if let Some(s) = s {
            props.insert(name.to_string(), s);
        }
    }
    json!({ "type": "object", "properties": props })
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
