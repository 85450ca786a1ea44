//! Reading `INFO` sections, including the module's own.

use hybridcache_protocol::MODULE_NAME;
use redis::Connection;
use std::collections::BTreeMap;

/// The `field:value` lines of `INFO <section>` (comment and empty lines skipped).
///
/// # Panics
/// When the INFO command fails.
pub fn info_section(con: &mut Connection, section: &str) -> BTreeMap<String, String> {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query(con)
        .unwrap_or_else(|e| panic!("INFO {section} failed: {e}"));
    parse_info(&text)
}

/// Parses INFO text into its `field:value` pairs.
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One integer field of an INFO section.
///
/// # Panics
/// When the field is missing or not an integer.
pub fn info_i64(con: &mut Connection, section: &str, field: &str) -> i64 {
    let fields = info_section(con, section);
    let value = fields
        .get(field)
        .unwrap_or_else(|| panic!("INFO {section} has no field {field}: {fields:?}"));
    value
        .parse()
        .unwrap_or_else(|e| panic!("INFO {section} field {field}={value:?} is not an integer: {e}"))
}

/// The module's `INFO hybridcache` section.
///
/// Redis prefixes the fields a module adds with `<module name>_`; both `keys` and
/// `hybridcache_keys` are read as `keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HcInfo {
    /// Entries the module holds, over every database.
    pub keys: i64,
    /// Distinct tags that carry at least one key.
    pub tags: i64,
    /// (tag, key) links in the indexes.
    pub tag_links: i64,
    /// Events published since the server started.
    pub events_published: i64,
    /// The channel events are published on.
    pub channel: String,
    /// The origin id of this server process (as in events).
    pub origin: String,
    /// Every field of the section, prefix stripped.
    pub fields: BTreeMap<String, String>,
}

impl HcInfo {
    /// Reads `INFO hybridcache`.
    ///
    /// # Panics
    /// When the section lacks one of the fields or an integer field is not an integer.
    pub fn read(con: &mut Connection) -> HcInfo {
        let prefix = format!("{MODULE_NAME}_");
        let fields: BTreeMap<String, String> = info_section(con, MODULE_NAME)
            .into_iter()
            .map(|(k, v)| match k.strip_prefix(&prefix) {
                Some(short) => (short.to_string(), v),
                None => (k, v),
            })
            .collect();
        let text = |name: &str| -> String {
            fields
                .get(name)
                .unwrap_or_else(|| panic!("INFO {MODULE_NAME} has no field {name}: {fields:?}"))
                .clone()
        };
        let int = |name: &str| -> i64 {
            let value = text(name);
            value.parse().unwrap_or_else(|e| {
                panic!("INFO {MODULE_NAME} field {name}={value:?} is not an integer: {e}")
            })
        };
        HcInfo {
            keys: int("keys"),
            tags: int("tags"),
            tag_links: int("tag_links"),
            events_published: int("events_published"),
            channel: text("channel"),
            origin: text("origin"),
            fields: fields.clone(),
        }
    }

    /// Any integer field of the section (prefix stripped), such as `fill_leases`.
    ///
    /// # Panics
    /// When the field is missing or not an integer.
    pub fn int(&self, name: &str) -> i64 {
        let value = self
            .fields
            .get(name)
            .unwrap_or_else(|| panic!("INFO {MODULE_NAME} has no field {name}: {:?}", self.fields));
        value.parse().unwrap_or_else(|e| {
            panic!("INFO {MODULE_NAME} field {name}={value:?} is not an integer: {e}")
        })
    }

    /// `(keys, tags, tag_links)`: the index counters, for one-line assertions.
    pub fn counts(&self) -> (i64, i64, i64) {
        (self.keys, self.tags, self.tag_links)
    }
}
