//! The toolchain a build runs with: the package manager the repository
//! uses, the node version, and the environment declared as build input.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use strata_engine::{ContentHash, Fingerprint, KeyHasher, Tree, file_digest};

use crate::error::{Error, Result};

/// The package manager of a repository, from its lockfile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    /// `package-lock.json`, or no lockfile.
    Npm,
    /// `yarn.lock`.
    Yarn,
    /// `pnpm-lock.yaml`.
    Pnpm,
}

impl PackageManager {
    /// The package manager whose lockfile is at `root` (npm when none is).
    pub fn detect(root: &Path) -> (PackageManager, Option<PathBuf>) {
        for (file, pm) in [
            ("yarn.lock", PackageManager::Yarn),
            ("pnpm-lock.yaml", PackageManager::Pnpm),
            ("package-lock.json", PackageManager::Npm),
        ] {
            let path = root.join(file);
            if path.is_file() {
                return (pm, Some(path));
            }
        }
        (PackageManager::Npm, None)
    }

    /// The program to run.
    pub fn program(self) -> &'static str {
        match self {
            PackageManager::Npm => "npm",
            PackageManager::Yarn => "yarn",
            PackageManager::Pnpm => "pnpm",
        }
    }

    /// The command line that runs a package.json script.
    pub fn run_script(self, script: &str) -> Vec<String> {
        vec![
            self.program().to_string(),
            "run".to_string(),
            script.to_string(),
        ]
    }
}

/// Where `program` is on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[derive(Serialize, Deserialize)]
struct CachedVersion {
    fingerprint: Fingerprint,
    version: String,
}

/// `node --version`, asked once per node binary: the answer is kept in
/// `cache`, keyed by the binary's path and stat.
pub fn node_version(cache: &Tree) -> Result<String> {
    let node = which("node").ok_or_else(|| Error::Toolchain {
        message: "node is not on PATH; install Node.js (Debian package: nodejs)".into(),
    })?;
    let node = node.canonicalize().unwrap_or(node);
    let key = node.to_string_lossy().into_owned();
    let fingerprint = Fingerprint::at(&node).map_err(|e| Error::io(&node, e))?;
    if let Some(bytes) = cache.get(key.as_bytes())?
        && let Ok(hit) = postcard::from_bytes::<CachedVersion>(&bytes)
        && hit.fingerprint == fingerprint
    {
        return Ok(hit.version);
    }
    let out = Command::new(&node)
        .arg("--version")
        .output()
        .map_err(|e| Error::io(&node, e))?;
    if !out.status.success() {
        return Err(Error::Toolchain {
            message: format!("{} --version failed", node.display()),
        });
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let entry = postcard::to_stdvec(&CachedVersion {
        fingerprint,
        version: version.clone(),
    })
    .expect("a cache entry encodes");
    cache.insert(key.as_bytes(), &entry)?;
    Ok(version)
}

/// The environment that is an input of builds: every `NEXT_PUBLIC_*` and
/// `NUXT_PUBLIC_*` variable, and the `names` the config declares, sorted.
pub fn declared_env(names: &[String]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("NEXT_PUBLIC_") || k.starts_with("NUXT_PUBLIC_") || names.contains(k)
        })
        .collect();
    env.sort();
    env
}

/// The digest of a lockfile (or of nothing).
pub fn lockfile_digest(lockfile: Option<&Path>) -> Result<ContentHash> {
    Ok(match lockfile {
        Some(path) => file_digest(path)?,
        None => KeyHasher::new("no-lockfile").finish(),
    })
}

/// The `.env*` files at the top of an app folder: (name, digest), sorted.
/// Only digests are kept here: their values never reach a log or strata's
/// cache. (A build on `--remote-executor` sends the ones its framework
/// reads at build time to the server, as inputs of the action.)
pub fn dotenv_digests(app_dir: &Path) -> Result<Vec<(String, ContentHash)>> {
    let entries = match std::fs::read_dir(app_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(app_dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".env") && entry.file_type().is_ok_and(|t| t.is_file()) {
            out.push((name, file_digest(&entry.path())?));
        }
    }
    out.sort();
    Ok(out)
}

/// Root files that builds read besides their app: the root `package.json`,
/// package manager settings, and root TypeScript configs that app configs
/// extend.
pub const GLOBAL_INPUTS: &[&str] = &[
    "package.json",
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
    ".pnpmfile.cjs",
    "tsconfig.json",
    "tsconfig.base.json",
];

/// The digest of the [`GLOBAL_INPUTS`] present at `root`. The root
/// `package.json` counts without its dependency fields: what the root
/// installs is in the lockfile, and each build holds its own app's closure
/// of it (a root-only tool reaches no app's build).
pub fn globals_digest(root: &Path) -> Result<ContentHash> {
    let mut h = KeyHasher::new("globals/v2");
    for name in GLOBAL_INPUTS {
        let path = root.join(name);
        if !path.is_file() {
            continue;
        }
        if *name == "package.json" {
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            h.str(name).hash(&root_manifest_digest(&bytes));
        } else {
            h.str(name).hash(&file_digest(&path)?);
        }
    }
    Ok(h.finish())
}

/// The fields of a `package.json` that say what is installed.
pub const DEPENDENCY_FIELDS: [&str; 4] = [
    "dependencies",
    "devDependencies",
    "optionalDependencies",
    "peerDependencies",
];

/// The root manifest's digest without its dependency fields (the bytes'
/// digest when it is not a JSON object).
pub fn root_manifest_digest(bytes: &[u8]) -> ContentHash {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(mut map)) => {
            for field in DEPENDENCY_FIELDS {
                map.remove(field);
            }
            let text = serde_json::to_vec(&map).expect("a JSON object serializes");
            ContentHash::of(&text)
        }
        _ => ContentHash::of(bytes),
    }
}
