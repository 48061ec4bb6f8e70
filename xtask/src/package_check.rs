//! CI's `package` step: every publishable crate carries the metadata crates.io shows and
//! packages on its own (`cargo package --no-verify`: the file list and the manifest cargo
//! rewrites, without a build per crate — the build is already CI's other steps).

use anyhow::{Result, bail};
use serde_json::Value;
use xshell::{Shell, cmd};

/// The manifest fields every published crate sets (as `cargo metadata` names them).
const REQUIRED: [&str; 7] = [
    "description",
    "license",
    "repository",
    "keywords",
    "categories",
    "rust_version",
    "readme",
];

pub fn run(sh: &Shell) -> Result<()> {
    let metadata = cmd!(sh, "cargo metadata --no-deps --format-version 1 --quiet").read()?;
    let metadata: Value = serde_json::from_str(&metadata)?;
    let problems = problems(&metadata);
    if !problems.is_empty() {
        bail!("crates not ready to publish:\n  {}", problems.join("\n  "));
    }
    let excluded: Vec<String> = unpublished(&metadata)
        .flat_map(|name| ["--exclude".to_owned(), name.to_owned()])
        .collect();
    cmd!(
        sh,
        "cargo package --workspace --no-verify --allow-dirty --quiet {excluded...}"
    )
    .run()?;
    Ok(())
}

/// Packages with `publish = false`.
fn unpublished(metadata: &Value) -> impl Iterator<Item = &str> {
    packages(metadata)
        .filter(|p| !is_published(p))
        .filter_map(|p| p["name"].as_str())
}

fn packages(metadata: &Value) -> impl Iterator<Item = &Value> {
    metadata["packages"].as_array().into_iter().flatten()
}

/// `publish` is null when unrestricted, `[]` for `publish = false`.
fn is_published(package: &Value) -> bool {
    package["publish"]
        .as_array()
        .is_none_or(|registries| !registries.is_empty())
}

/// What keeps a publishable crate from crates.io: a missing metadata field, or a dependency
/// on a workspace crate by path alone (crates.io needs its `version` too).
fn problems(metadata: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for package in packages(metadata).filter(|p| is_published(p)) {
        let name = package["name"].as_str().unwrap_or("?");
        for field in REQUIRED {
            let missing = match &package[field] {
                Value::Null => true,
                Value::String(s) => s.trim().is_empty(),
                Value::Array(items) => items.is_empty(),
                _ => false,
            };
            if missing {
                problems.push(format!("{name}: `{field}` is not set"));
            }
        }
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            // Dev-dependencies are stripped from the published manifest; the others stay.
            let dev = dependency["kind"].as_str() == Some("dev");
            if !dev && dependency["path"].is_string() && dependency["req"].as_str() == Some("*") {
                problems.push(format!(
                    "{name}: depends on `{}` by path without `version`",
                    dependency["name"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn complete(name: &str) -> Value {
        json!({
            "name": name,
            "publish": null,
            "description": "A crate.",
            "license": "MIT OR Apache-2.0",
            "repository": "https://example.invalid/infra",
            "keywords": ["cache"],
            "categories": ["caching"],
            "rust_version": "1.95",
            "readme": "README.md",
            "dependencies": [
                {"name": "infra-core", "kind": null, "req": "^0.1.0", "path": "/w/crates/infra-core"},
                {"name": "helper", "kind": "dev", "req": "*", "path": "/w/helper"}
            ]
        })
    }

    #[test]
    fn a_complete_crate_has_no_problems() {
        assert!(problems(&json!({ "packages": [complete("infra-cache")] })).is_empty());
    }

    #[test]
    fn each_missing_field_and_unversioned_path_dependency_is_named() {
        let mut package = complete("infra-cache");
        package["keywords"] = json!([]);
        package["rust_version"] = Value::Null;
        package["dependencies"][0]["req"] = json!("*");
        assert_eq!(
            problems(&json!({ "packages": [package] })),
            [
                "infra-cache: `keywords` is not set",
                "infra-cache: `rust_version` is not set",
                "infra-cache: depends on `infra-core` by path without `version`",
            ]
        );
    }

    #[test]
    fn unpublished_crates_are_not_checked_and_are_excluded() {
        let mut xtask = complete("xtask");
        xtask["publish"] = json!([]);
        xtask["description"] = Value::Null;
        let metadata = json!({ "packages": [complete("infra"), xtask] });
        assert!(problems(&metadata).is_empty());
        assert_eq!(unpublished(&metadata).collect::<Vec<_>>(), ["xtask"]);
    }
}
