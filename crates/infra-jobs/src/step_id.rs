//! Step ids as Inngest's SDKs compute them (SDK spec §5.1.2): the id a developer gives, with
//! `:n` appended when it repeats within one execution (`fetch`, `fetch:1`, `fetch:2`…), hashed
//! with SHA-1 and hex-encoded. The hash is what both drivers store and compare.

use std::collections::HashMap;

use sha1::{Digest, Sha1};

/// One step as found during an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepKey {
    /// The id the developer gave.
    pub(crate) id: String,
    /// How many times the id was found before in this execution (0 the first time).
    pub(crate) index: u32,
    /// The hex SHA-1 of `id` (first time) or `id:index`.
    pub(crate) hashed: String,
}

/// Counts the ids an execution finds, in order.
#[derive(Debug, Default)]
pub(crate) struct StepIds {
    seen: HashMap<String, u32>,
}

impl StepIds {
    /// The key of the next step with `id`.
    pub(crate) fn next(&mut self, id: &str) -> StepKey {
        let count = self.seen.entry(id.to_owned()).or_insert(0);
        let index = *count;
        *count += 1;
        let hashed = if index == 0 {
            hash_step_id(id)
        } else {
            hash_step_id(&format!("{id}:{index}"))
        };
        StepKey {
            id: id.to_owned(),
            index,
            hashed,
        }
    }
}

/// The hex SHA-1 of a (suffixed) step id.
pub(crate) fn hash_step_id(id: &str) -> String {
    hex::encode(Sha1::digest(id.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_hash_as_the_sdk_spec_says_and_repeats_are_counted() {
        // SDK spec §5.1.2's example.
        assert_eq!(
            hash_step_id("my-step-id"),
            "e7d8a2f140845095749d60246ff1110c9d01d76a"
        );
        let mut ids = StepIds::default();
        let keys: Vec<StepKey> = (0..3).map(|_| ids.next("my-step-id")).collect();
        assert_eq!(keys[0].hashed, hash_step_id("my-step-id"));
        assert_eq!(keys[1].hashed, hash_step_id("my-step-id:1"));
        assert_eq!(keys[2].hashed, hash_step_id("my-step-id:2"));
        assert_eq!(ids.next("other").index, 0);
    }
}
