//! Strict JSON for event input. `serde_json` alone keeps the last of two
//! members with the same name and turns an integer too big for 64 bits into
//! a float; for an audit log both silently change what the client said. Here
//! both are errors that name the member or the number.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Beyond this magnitude a float no longer holds every integer exactly.
const EXACT_FLOAT_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53

/// Parses `text` as one JSON value, refusing duplicate member names (at any
/// depth) and numbers that a 64-bit integer or a double cannot hold exactly.
pub fn parse_strict(text: &str) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = StrictValue.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        // An integer past 64 bits arrives here as a float, rounded; so does
        // a float so large that its digits are not all kept.
        if !f.is_finite() || (f.abs() >= EXACT_FLOAT_LIMIT && f.fract() == 0.0) {
            return Err(E::custom(format!(
                "the number {f:e} cannot be stored exactly; send it as a string"
            )));
        }
        Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if m.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "the member {key:?} is given more than once"
                )));
            }
            let v = map.next_value_seed(StrictValue)?;
            m.insert(key, v);
        }
        Ok(Value::Object(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_what_serde_json_accepts_when_unambiguous() {
        let text = r#"{"event":"a","details":{"n":-12,"u":18446744073709551615,"f":0.5,"big":9007199254740991,"l":[1,{"x":null}],"t":true}}"#;
        assert_eq!(
            parse_strict(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        assert_eq!(parse_strict(" [1, 2] ").unwrap(), json!([1, 2]));
    }

    #[test]
    fn refuses_duplicate_members_at_any_depth() {
        for text in [
            r#"{"event":"a","event":"b"}"#,
            r#"{"event":"a","details":{"k":1,"k":2}}"#,
            r#"[{"a":1},{"b":[{"c":1,"c":1}]}]"#,
        ] {
            let e = parse_strict(text).unwrap_err().to_string();
            assert!(e.contains("is given more than once"), "{text}: {e}");
        }
    }

    #[test]
    fn refuses_numbers_it_cannot_keep_exactly() {
        for text in [
            r#"{"n":123456789012345678901234567890}"#,
            r#"{"n":-18446744073709551617}"#,
            r#"{"n":1e300}"#,
            r#"{"n":9007199254740992.0}"#,
        ] {
            let e = parse_strict(text).unwrap_err().to_string();
            assert!(e.contains("cannot be stored exactly"), "{text}: {e}");
        }
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        assert!(parse_strict(r#"{"event":"a"} x"#).is_err());
    }
}

/// Nesting past which a text is refused before parsing (the JSON parser
/// itself stops at 128 and could not say which member was too deep).
const DEEP: usize = 100;

/// An event or a batch of them (an array) nesting deeper than [`DEEP`]
/// levels: the error names the member (`details`, or `[3].details` in a
/// batch) and how deep it is at least, found with a scan that never
/// recurses. Events are checked again after parsing (at most
/// [`MAX_OBJECT_DEPTH`](crate::domain::event::MAX_OBJECT_DEPTH) levels).
pub fn too_deep(text: &str) -> Option<crate::domain::InputError> {
    let (name, levels) = too_deep_at(text)?;
    Some(crate::domain::InputError::single(
        name,
        format!(
            "is nested at least {levels} levels deep; at most {} are allowed",
            crate::domain::event::MAX_OBJECT_DEPTH
        ),
    ))
}

/// Where [`too_deep`] stops: the member, and its nesting there.
fn too_deep_at(text: &str) -> Option<(String, usize)> {
    let b = text.as_bytes();
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    let mut top_array: Option<bool> = None;
    let mut index = 0usize;
    let (mut start, mut last_string, mut key) = (0usize, (0usize, 0usize), None::<(usize, usize)>);
    for (i, &c) in b.iter().enumerate() {
        let event_depth = if top_array == Some(true) { 2 } else { 1 };
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
                if depth == event_depth {
                    last_string = (start, i);
                }
            }
            continue;
        }
        match c {
            b'"' => {
                in_str = true;
                start = i + 1;
            }
            b'{' | b'[' => {
                if depth == 0 {
                    top_array = Some(c == b'[');
                }
                depth += 1;
                if depth > DEEP {
                    let name = key
                        .map(|(a, z)| String::from_utf8_lossy(&b[a..z]).into_owned())
                        .unwrap_or_default();
                    let name = if top_array == Some(true) {
                        format!("[{index}].{name}")
                    } else {
                        name
                    };
                    return Some((name, depth - event_depth));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b':' if depth == event_depth => key = Some(last_string),
            b',' if top_array == Some(true) && depth == 1 => {
                index += 1;
                key = None;
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod depth_tests {
    use super::too_deep_at;

    #[test]
    fn names_the_member_that_nests_too_deep_and_how_deep() {
        let deep = |n: usize| format!("{}{}", "{\"d\":".repeat(n), "1".to_owned() + &"}".repeat(n));
        assert_eq!(
            too_deep_at(&format!("{{\"event\":\"a\",\"details\":{}}}", deep(150))),
            Some(("details".into(), 100))
        );
        assert_eq!(
            too_deep_at(&format!(
                "[{{\"event\":\"a\"}},{{\"event\":\"b\",\"metadata\":{}}}]",
                deep(150)
            )),
            Some(("[1].metadata".into(), 99))
        );
        assert_eq!(
            too_deep_at(&format!("{{\"event\":\"a\",\"details\":{}}}", deep(40))),
            None
        );
        assert_eq!(too_deep_at("{\"event\":\"{{{{[[[[\"}"), None);
        // Exactly 100 deep in one event is refused, saying 100; 99 is left
        // to the parser and the event's own check.
        assert_eq!(
            too_deep_at(&format!("{{\"event\":\"a\",\"details\":{}}}", deep(100))),
            Some(("details".into(), 100))
        );
        assert_eq!(
            too_deep_at(&format!("{{\"event\":\"a\",\"details\":{}}}", deep(99))),
            None
        );
    }
}
