//! Binary-safe names (keys and tags) in JSON.

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A key or tag name: any bytes.
///
/// In JSON a name that is valid UTF-8 is a plain string (`"user:1"`); any other name is an
/// object holding its bytes in standard base64 (`{"b64":"/w=="}`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(pub Vec<u8>);

impl Name {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Name(s.as_bytes().to_vec())
    }
}

impl From<&[u8]> for Name {
    fn from(b: &[u8]) -> Self {
        Name(b.to_vec())
    }
}

impl From<Vec<u8>> for Name {
    fn from(b: Vec<u8>) -> Self {
        Name(b)
    }
}

#[derive(Serialize)]
struct Base64<'a> {
    b64: &'a str,
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => Base64 {
                b64: &STANDARD.encode(&self.0),
            }
            .serialize(serializer),
        }
    }
}

/// Reads a string or a `{"b64": ...}` object in one pass (an untagged enum would buffer).
struct NameVisitor;

impl<'de> Visitor<'de> for NameVisitor {
    type Value = Name;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a string or {"b64": "<base64>"}"#)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Name, E> {
        Ok(Name(text.as_bytes().to_vec()))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Name, E> {
        Ok(Name(text.into_bytes()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Name, A::Error> {
        let mut bytes = None;
        while let Some(field) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if field == "b64" {
                let b64: std::borrow::Cow<'de, str> = map.next_value()?;
                let decoded = STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| de::Error::custom(format!("invalid base64 name: {e}")))?;
                bytes = Some(decoded);
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        bytes
            .map(Name)
            .ok_or_else(|| de::Error::missing_field("b64"))
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NameVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_name_is_a_plain_json_string() {
        let json = serde_json::to_string(&Name::from("tag:é")).unwrap();
        assert_eq!(json, r#""tag:é""#);
        assert_eq!(
            serde_json::from_str::<Name>(&json).unwrap(),
            Name::from("tag:é")
        );
    }

    #[test]
    fn non_utf8_name_round_trips_through_base64() {
        let name = Name(vec![0xff, 0x00, b'a']);
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, r#"{"b64":"/wBh"}"#);
        assert_eq!(serde_json::from_str::<Name>(&json).unwrap(), name);
    }

    #[test]
    fn bad_base64_is_an_error() {
        assert!(serde_json::from_str::<Name>(r#"{"b64":"***"}"#).is_err());
    }
}
