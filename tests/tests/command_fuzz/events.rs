//! The event-stream check of the fuzz: a [`StreamChecker`] subscribed for the whole run
//! checks every message as it comes (decodes, numbered without gap, duplicate or
//! reordering; the one jump allowed is onto a `loaded` flush after `DEBUG RELOAD`), and at
//! every checkpoint the changes received since the last one must be exactly those the
//! server's event log holds, and the model's changes of its `model:*` keys and `mtag:*`
//! tags must each have been announced exactly once, in the order the model made them.

use crate::fuzzer::Fuzz;
use crate::model::RESERVED;
use hybridcache_tests::event_stream::{StreamChecker, Subject};
use hybridcache_tests::RedisServer;

/// The event log's bounds during the run: the changes of one checkpoint interval (~2 s, with
/// bulk invalidations of 3,000 keys and keys of up to 64 KB) must stay in it.
pub(crate) const LOG_CHANGES: &str = "2000000";
pub(crate) const LOG_BYTES: &str = "268435456";

/// Whether only the model changes `subject`: its keys and tags, in any database.
fn model_owns(_db: Option<u32>, subject: &Subject) -> bool {
    let name = match subject {
        Subject::Key(name) | Subject::Tag(name) => name,
    };
    RESERVED.iter().any(|prefix| name.starts_with(prefix))
}

/// The checker, subscribed before the first command.
pub(crate) fn subscribe(server: &RedisServer) -> StreamChecker {
    StreamChecker::subscribe(&[server])
}

impl Fuzz {
    /// The stream broke no rule; the subscription received exactly what the log holds; the
    /// model's changes since the last checkpoint were announced exactly once, in order.
    /// What was compared is then forgotten.
    pub(crate) fn check_events(&mut self, when: &str) {
        let origin = String::from_utf8_lossy(&self.gen.origin).into_owned();
        let result = self
            .events
            .check_clean()
            .and_then(|()| self.events.check_log(&self.server))
            .and_then(|log| {
                if log.origin != origin {
                    return Err(format!(
                        "HC.HELLO names origin {}, the run started under {origin}",
                        log.origin
                    ));
                }
                let first = self.events.with_streams(|s| s.first_seq(&origin));
                if first.is_some_and(|seq| seq != 1) {
                    return Err(format!(
                        "the first change received is numbered {first:?}: the subscription started before any"
                    ));
                }
                self.events
                    .check_model(&origin, log.last, &self.expected, &model_owns)?;
                Ok(log)
            });
        match result {
            Ok(log) => {
                self.events.release_through(&origin, log.last);
                self.stats.model_changes_checked += self.expected.len() as u64;
                self.expected.clear();
                self.stats.changes_compared += log.compared as u64;
            }
            Err(e) => self.fail(&format!("{when}: {e}")),
        }
    }
}
