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
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::ConfigMissing { path });
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        Self::parse(&path, &text)
    }

    /// Parses config text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        let syntax = |e: serde_json::Error, field: Option<String>| Error::ConfigSyntax {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: match field {
                Some(f) if !f.is_empty() && f != "." => format!("{f}: {e}"),
                _ => e.to_string(),
            },
        };
        let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| syntax(e, None))?;
        let mut de = serde_json::Deserializer::from_str(text);
        let shape: Shape = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            syntax(e.into_inner(), Some(field))
        })?;
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
