//! `alokai.config.json`: the deployable stores and their settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The config file's name, at the monorepo's root.
pub const CONFIG_FILE: &str = "alokai.config.json";

/// The parsed config. Keys strata does not know are kept in the raw form
/// and otherwise ignored, so any Alokai config loads.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    /// The deployable stores, in the config's order.
    pub stores: IndexMap<String, StoreSettings>,
    /// strata's own section (`"strata": {…}`).
    pub strata: StrataSettings,
    /// Each store's entry as written, to tell when it changed.
    pub raw_stores: IndexMap<String, serde_json::Value>,
    /// Keys strata does not know (a typo, or another tool's), such as
    /// `stores.sports.deployment.projectname`: warned about, ignored.
    pub unknown_keys: Vec<String>,
}

/// One store's entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreSettings {
    /// How it is deployed.
    #[serde(default)]
    pub deployment: Deployment,
    /// Ports of the dev servers, by app kind (`middleware`, `nextjs`, `nuxt`).
    #[serde(default)]
    pub local_ports: BTreeMap<String, u16>,
    /// The local domain of the dev servers.
    #[serde(default)]
    pub local_domain: Option<String>,
    /// Gitignore patterns, relative to `.out/<store>/`, of inherited files
    /// the store drops (`!` re-includes).
    #[serde(default)]
    pub ignore_paths: Vec<String>,
}

/// A store's deployment settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// `nextjs` or `nuxt`; optional when only one frontend base app exists.
    pub framework: Option<String>,
    /// The project the store deploys to.
    pub project_name: Option<String>,
    /// The cloud region (older configs say `region`).
    #[serde(alias = "region")]
    pub cloud_region: Option<String>,
    /// The image the store's apps are built on.
    pub base_image: Option<String>,
}

/// strata's own settings (`"strata": {…}` in `alokai.config.json`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StrataSettings {
    /// The default base image.
    pub base_image: Option<String>,
    /// Environment variable names that are inputs of every build (beside
    /// `NEXT_PUBLIC_*` and `NUXT_PUBLIC_*`).
    #[serde(default)]
    pub env: Vec<String>,
    /// Apps deployed beside the frontend and the middleware (`playwright`).
    #[serde(default)]
    pub deploy_apps: Vec<String>,
    /// Per-app settings.
    #[serde(default)]
    pub apps: BTreeMap<String, AppSettings>,
    /// The registry images are pushed to (`--registry` and
    /// `CLI_DOCKER_REGISTRY_URL` come first).
    pub registry: Option<String>,
    /// The repository of an app's image in the registry, with `{projectName}`,
    /// `{store}`, `{app}` and `{cloudRegion}` (default `{projectName}/{app}`).
    pub repository: Option<String>,
    /// The base app whose `test` script `store test` runs (default
    /// `playwright`).
    pub test_app: Option<String>,
    /// How builds run on a REAPI executor (`--remote-executor`).
    #[serde(default)]
    pub remote: RemoteBuildSettings,
}

/// How builds run on a REAPI executor.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteBuildSettings {
    /// The platform properties of every build action (`{"container-image":
    /// "docker://node:20", "OSFamily": "linux"}`): which workers may run it.
    #[serde(default)]
    pub platform: BTreeMap<String, String>,
    /// `PATH` on the worker, after the monorepo's `node_modules/.bin`
    /// (default: the folders of this machine's `node` and package manager,
    /// then the usual system folders).
    pub path: Option<String>,
}

/// Settings of one app.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSettings {
    /// The build's outputs (paths relative to the app), when git's ignore
    /// rules do not say it.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// The file `server.js` starts, relative to the app.
    pub entry: Option<String>,
}

#[derive(Deserialize)]
struct Shape {
    #[serde(default)]
    stores: IndexMap<String, StoreSettings>,
    #[serde(default)]
    strata: StrataSettings,
}

impl Config {
    /// Reads the config at the root of the monorepo.
    pub fn load(root: &Path) -> Result<Config> {
        let path = root.join(CONFIG_FILE);
        let whole = |message: String| Error::ConfigShape {
            path: path.clone(),
            field: "(the file)".into(),
            message,
        };
        if path.is_dir() {
            return Err(whole("it is a folder; it must be a JSON file".into()));
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::ConfigMissing { path });
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            whole(format!(
                "it is not UTF-8 text (byte {} is not); JSON files are UTF-8",
                e.utf8_error().valid_up_to()
            ))
        })?;
        Self::parse(&path, &text)
    }

    /// Parses config text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        // Editors on Windows may start the file with a byte order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let syntax = |e: serde_json::Error, field: Option<String>| {
            // serde_json ends its messages with the position, which the
            // error shows already as `file:line:column`.
            let text = e.to_string();
            let message = match text.rfind(" at line ") {
                Some(at) if e.line() > 0 => text[..at].to_string(),
                _ => text,
            };
            Error::ConfigSyntax {
                path: path.to_path_buf(),
                line: e.line(),
                column: e.column(),
                message: match field {
                    Some(f) if !f.is_empty() && f != "." => format!("{f}: {message}"),
                    _ => message,
                },
            }
        };
        if text.trim().is_empty() {
            return Err(Error::ConfigShape {
                path: path.to_path_buf(),
                field: "(the file)".into(),
                message: "it is empty; it must hold a JSON object such as {\"stores\": {}}".into(),
            });
        }
        let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| syntax(e, None))?;
        // serde_json keeps the last of two equal keys silently: a store
        // listed twice would lose its first settings unseen.
        serde_path_to_error::deserialize::<_, Unique>(&mut serde_json::Deserializer::from_str(
            text,
        ))
        .map_err(|e| {
            let field = e.path().to_string();
            syntax(e.into_inner(), Some(field))
        })?;
        check_shape(path, &raw)?;
        let mut de = serde_json::Deserializer::from_str(text);
        let mut unknown_keys = Vec::new();
        let mut note = |p: serde_ignored::Path| {
            let key = p.to_string();
            if key != "$schema" {
                unknown_keys.push(key);
            }
        };
        let ignoring = serde_ignored::Deserializer::new(&mut de, &mut note);
        let shape: Shape = serde_path_to_error::deserialize(ignoring).map_err(|e| {
            let field = e.path().to_string();
            syntax(e.into_inner(), Some(field))
        })?;
        for (id, store) in &shape.stores {
            crate::ignore_paths::IgnorePaths::new(
                store
                    .ignore_paths
                    .iter()
                    .map(|p| crate::ignore_paths::IgnoreRule {
                        store: id.clone(),
                        pattern: p.clone(),
                    })
                    .collect(),
            )
            .map_err(|(i, message)| Error::ConfigShape {
                path: path.to_path_buf(),
                field: format!("stores.{id}.ignorePaths[{i}]"),
                message: format!("not a gitignore pattern: {message}"),
            })?;
        }
        let raw_stores = raw
            .get("stores")
            .and_then(|s| s.as_object())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Ok(Config {
            path: path.to_path_buf(),
            stores: shape.stores,
            strata: shape.strata,
            raw_stores,
            unknown_keys,
        })
    }
}

/// Any JSON value, read only to find an object that names a key twice.
struct Unique;

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_i64<E>(self, _: i64) -> std::result::Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_u64<E>(self, _: u64) -> std::result::Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_str<E>(self, _: &str) -> std::result::Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_unit<E>(self) -> std::result::Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Unique, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "the key {key:?} appears twice in this object; keep one"
                )));
            }
            map.next_value::<Unique>()?;
        }
        Ok(Unique)
    }
}

/// JSON kinds, for messages.
fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Where the config must hold objects, it does: serde would read a struct
/// from an array by position, so `[]` would pass for "no stores" (and a
/// compose would then remove every store's `.out`).
fn check_shape(path: &Path, raw: &serde_json::Value) -> Result<()> {
    let shape_error = |field: &str, value: &serde_json::Value| Error::ConfigShape {
        path: path.to_path_buf(),
        field: field.to_string(),
        message: format!("expected an object, found {}", kind(value)),
    };
    let Some(top) = raw.as_object() else {
        return Err(shape_error("(the top level)", raw));
    };
    for section in ["stores", "strata"] {
        if let Some(v) = top.get(section).filter(|v| !v.is_object()) {
            return Err(shape_error(section, v));
        }
    }
    if let Some(stores) = top.get("stores").and_then(|s| s.as_object()) {
        for (id, store) in stores {
            let Some(fields) = store.as_object() else {
                return Err(shape_error(&format!("stores.{id}"), store));
            };
            for key in ["deployment", "localPorts"] {
                if let Some(v) = fields.get(key).filter(|v| !v.is_object()) {
                    return Err(shape_error(&format!("stores.{id}.{key}"), v));
                }
            }
            if let Some(framework) = fields
                .get("deployment")
                .and_then(|d| d.get("framework"))
                .filter(|f| !f.is_null() && !matches!(f.as_str(), Some("nextjs" | "next" | "nuxt")))
            {
                return Err(Error::ConfigShape {
                    path: path.to_path_buf(),
                    field: format!("stores.{id}.deployment.framework"),
                    message: format!(
                        "{framework} is not a frontend strata deploys; say \"nextjs\" or \"nuxt\""
                    ),
                });
            }
        }
    }
    if let Some(apps) = top
        .get("strata")
        .and_then(|s| s.get("apps"))
        .filter(|a| !a.is_object())
    {
        return Err(shape_error("strata.apps", apps));
    }
    if let Some(apps) = top
        .get("strata")
        .and_then(|s| s.get("apps"))
        .and_then(|a| a.as_object())
    {
        for (app, settings) in apps {
            if !settings.is_object() {
                return Err(shape_error(&format!("strata.apps.{app}"), settings));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_twice_in_one_object_is_an_error_with_its_place() {
        let text = "{\"stores\": {\"a\": {\"localPorts\": {\"nextjs\": 1, \"nextjs\": 2}}}}";
        let err = Config::parse(Path::new("c.json"), text)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("c.json:1:")
                && err.contains("stores.a.localPorts: the key \"nextjs\" appears twice"),
            "{err}"
        );
        // Equal keys in different objects are fine, as is a byte order mark.
        let text = "\u{feff}{\"stores\": {\"a\": {\"localPorts\": {\"nextjs\": 1}}, \"b\": {\"localPorts\": {\"nextjs\": 2}}}}";
        let config = Config::parse(Path::new("c.json"), text).unwrap();
        assert_eq!(config.stores["b"].local_ports["nextjs"], 2);
    }

    #[test]
    fn reads_stores_in_order_with_old_region_key() {
        let text = r#"{
          "stores": {
            "b": { "deployment": { "framework": "nextjs", "region": "eu" }, "localPorts": { "nextjs": 3001 } },
            "a": {}
          },
          "other": 1
        }"#;
        let config = Config::parse(Path::new("c.json"), text).unwrap();
        let ids: Vec<_> = config.stores.keys().collect();
        assert_eq!(ids, ["b", "a"]);
        assert_eq!(
            config.stores["b"].deployment.cloud_region.as_deref(),
            Some("eu")
        );
        assert_eq!(config.stores["b"].local_ports["nextjs"], 3001);
    }

    #[test]
    fn unknown_keys_are_listed_and_arrays_never_pass_for_objects() {
        let text = r#"{
          "$schema": "x",
          "stores": { "a": { "deployment": { "projectname": "typo" }, "extra": 1 } },
          "other": 1
        }"#;
        let config = Config::parse(Path::new("c.json"), text).unwrap();
        assert_eq!(
            config.unknown_keys,
            ["stores.a.deployment.projectname", "stores.a.extra", "other"]
        );
        for (text, field) in [
            ("[]", "(the top level)"),
            ("[{\"a\": {}}]", "(the top level)"),
            ("{\"stores\": []}", "stores"),
            ("{\"stores\": {\"a\": []}}", "stores.a"),
            ("{\"stores\": {\"a\": \"x\"}}", "stores.a"),
            (
                "{\"stores\": {\"a\": {\"deployment\": [1]}}}",
                "stores.a.deployment",
            ),
            ("{\"strata\": []}", "strata"),
            ("null", "(the top level)"),
            ("  \n", "(the file)"),
        ] {
            match Config::parse(Path::new("c.json"), text) {
                Err(Error::ConfigShape { field: f, .. }) => assert_eq!(f, field, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    use proptest::prelude::*;

    /// JSON values of any shape, with the config's own keys likely.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::json!(f)),
            "\\PC{0,8}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let key = prop_oneof![
                Just("stores".to_string()),
                Just("strata".to_string()),
                Just("deployment".to_string()),
                Just("localPorts".to_string()),
                Just("framework".to_string()),
                Just("apps".to_string()),
                Just("env".to_string()),
                "[a-z]{1,6}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(key, inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any JSON value parses into a config or a clear error; a config
        /// only ever comes from an object.
        #[test]
        fn any_json_value_is_a_config_or_a_clear_error(value in json()) {
            let text = serde_json::to_string_pretty(&value).unwrap();
            match Config::parse(Path::new("c.json"), &text) {
                Ok(config) => {
                    prop_assert!(value.is_object());
                    let listed = value.get("stores").and_then(|s| s.as_object()).map_or(0, |s| s.len());
                    prop_assert_eq!(config.stores.len(), listed);
                }
                Err(Error::ConfigSyntax { line, .. }) => prop_assert!(line >= 1),
                Err(Error::ConfigShape { field, .. }) => prop_assert!(!field.is_empty()),
                Err(other) => prop_assert!(false, "unexpected error kind: {other}"),
            }
        }

        /// Any text, cut anywhere: never a panic.
        #[test]
        fn any_text_is_a_config_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..200), cut in 0usize..400) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = Config::parse(Path::new("c.json"), &text);
            let good = r#"{"stores": {"a": {"deployment": {"framework": "nextjs"}, "localPorts": {"nextjs": 3000}}}}"#;
            let cut = cut.min(good.len());
            let _ = Config::parse(Path::new("c.json"), &good[..cut]);
        }
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = Config::parse(Path::new("c.json"), "{\n  \"stores\": {,}\n}").unwrap_err();
        match err {
            Error::ConfigSyntax { line, column, .. } => assert_eq!((line, column), (2, 14)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn type_errors_name_the_field() {
        let text = "{\"stores\": {\"us\": {\"localPorts\": {\"nextjs\": \"x\"}}}}";
        let err = Config::parse(Path::new("c.json"), text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("stores.us.localPorts.nextjs"), "{msg}");
        assert!(msg.starts_with("c.json:1:"), "{msg}");
    }
}
