//! How values are turned into the bytes stored in Redis.

use crate::error::{Error, Result};
use serde::{de::DeserializeOwned, Serialize};

/// The serialization of values in Redis. Every instance sharing a namespace must use the
/// same format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// JSON (`serde_json`): readable with `redis-cli`, the default.
    #[default]
    Json,
    /// MessagePack (`rmp-serde`, struct fields by name): smaller and faster than JSON.
    MessagePack,
}

impl Format {
    /// Encodes a value.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>> {
        let encoded = match self {
            Format::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
            Format::MessagePack => rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
        };
        encoded.map_err(|detail| Error::Serialization {
            action: "encode",
            detail,
        })
    }

    /// Decodes a value.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T> {
        let decoded = match self {
            Format::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Format::MessagePack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
        };
        decoded.map_err(|detail| Error::Serialization {
            action: "decode",
            detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn both_formats_round_trip() {
        let value: BTreeMap<String, Vec<u32>> = [("a".to_string(), vec![1, 2])].into();
        for format in [Format::Json, Format::MessagePack] {
            let bytes = format.encode(&value).unwrap();
            assert_eq!(
                format.decode::<BTreeMap<String, Vec<u32>>>(&bytes).unwrap(),
                value
            );
        }
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let err = Format::Json.decode::<u32>(b"not json").unwrap_err();
        assert!(
            matches!(
                err,
                Error::Serialization {
                    action: "decode",
                    ..
                }
            ),
            "{err}"
        );
    }
}
