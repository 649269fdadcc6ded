//! Values merged as Helm merges values files and Flux merges `valuesFrom` and `valuesFiles`:
//! maps merge key by key, anything else (lists included) is replaced by the later value.

use serde_json::{Map, Value};

/// Merges `from` into `into`: maps merge key by key, anything else replaces.
pub fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Object(existing)), Value::Object(incoming)) => merge(existing, incoming),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// A values document as a map: an empty document (or only comments) is an empty map, anything
/// but a map is refused.
pub fn parse(text: &str) -> Result<Map<String, Value>, String> {
    let value: Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    match value {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => Ok(map),
        _ => Err("values are not a map".into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_merge_and_everything_else_is_replaced() {
        let mut into = parse("a: {b: 1, c: [1, 2]}\nd: x\n").unwrap();
        merge(&mut into, parse("a: {c: [3], e: 2}\nd: {f: 1}\n").unwrap());
        assert_eq!(
            Value::Object(into),
            json!({"a": {"b": 1, "c": [3], "e": 2}, "d": {"f": 1}})
        );
        assert!(parse("# only a comment\n").unwrap().is_empty());
        assert!(parse("- 1\n").is_err());
    }
}
