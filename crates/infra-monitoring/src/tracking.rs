//! What both backends put on a captured error besides the error itself: tags, fingerprint,
//! level, and the error's type name.
//!
//! A leaf: it imports nothing of this crate, so the local sink, the Sentry backend, the
//! reporter and the [`ErrorTracking`](crate::ErrorTracking) helpers on top all depend on it
//! and never on each other in a circle (as sentry-types sits below sentry-core's API).

use std::collections::BTreeMap;

use infra_core::{DynError, Level};

/// Tags, fingerprint and level for one captured error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    /// Indexed, searchable tags (low cardinality: never ids or keys).
    pub tags: BTreeMap<String, String>,
    /// How Sentry groups the event; empty means Sentry's default grouping.
    pub fingerprint: Vec<String>,
    /// The event's level.
    pub level: Level,
}

impl Default for Tracking {
    fn default() -> Self {
        Tracking {
            tags: BTreeMap::new(),
            fingerprint: Vec::new(),
            level: Level::Error,
        }
    }
}

impl Tracking {
    /// An error in `area` (`api`, `database`, …): the `error.area` tag, `tags`, and the
    /// fingerprint parts, at level error.
    pub fn for_area(area: &str, tags: &[(&str, &str)], fingerprint: &[&str]) -> Self {
        let mut all = BTreeMap::new();
        all.insert("error.area".to_owned(), area.to_owned());
        for (k, v) in tags {
            all.insert((*k).to_owned(), (*v).to_owned());
        }
        Tracking {
            tags: all,
            fingerprint: fingerprint.iter().map(|s| (*s).to_owned()).collect(),
            level: Level::Error,
        }
    }
}

/// The error's type as Sentry shows it: the first word of its `Debug` output.
pub fn error_type(error: &DynError) -> String {
    let debug = format!("{error:?}");
    let name: String = debug
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    if name.is_empty() {
        "Error".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct QueryTimeout;

    impl std::fmt::Display for QueryTimeout {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("query timed out")
        }
    }

    impl std::error::Error for QueryTimeout {}

    #[test]
    fn error_type_is_the_debug_name() {
        assert_eq!(error_type(&QueryTimeout), "QueryTimeout");
        assert_eq!(error_type(&std::io::Error::other("x")), "Custom");
    }

    #[test]
    fn for_area_tags_the_area() {
        let t = Tracking::for_area("cache", &[("cache.operation", "get")], &["cache", "get"]);
        assert_eq!(t.tags["error.area"], "cache");
        assert_eq!(t.tags["cache.operation"], "get");
        assert_eq!(t.fingerprint, ["cache", "get"]);
        assert_eq!(t.level, Level::Error);
    }
}
