//! Planted secrets (registry and console credentials, `.env` values, a
//! remote cache's password) appear nowhere strata writes: not in its
//! output at any verbosity, not in `--summary`, `--profile` or `--json`,
//! not in error messages, not in the state folder, not in `.deploy` or any
//! image layer.

use std::path::Path;
use std::process::Command;

use crate::proxy::Console;
use crate::registry::{RegistryServer, unpack_with};
use crate::util::{Repo, example};

const REGISTRY_PW: &str = "Planted-Registry-Pw-7d1f";
const ENV_VALUE: &str = "Planted-Env-Value-93ab";
const ROOT_ENV_VALUE: &str = "Planted-Root-Env-51c2";
const REMOTE_PW: &str = "Planted-Remote-Pw-0e44";
const SECRETS: [&str; 4] = [REGISTRY_PW, ENV_VALUE, ROOT_ENV_VALUE, REMOTE_PW];

/// Paths of the files under `dir` (recursively) holding any secret; the
/// bytes of gzip files are searched once inflated too.
fn holders(dir: &Path, skip: &dyn Fn(&Path) -> bool, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if skip(&path) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            holders(&path, skip, found);
        } else if meta.is_file() {
            let texts = crate::util::searchable_texts(&path);
            for secret in SECRETS {
                if crate::util::holds_bytes(&texts, secret) {
                    found.push(format!("{} holds {secret}", path.display()));
                }
            }
        }
    }
}

fn run(repo: &Repo, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--root").arg(repo.path()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn assert_clean(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
}

#[test]
fn a_planted_secret_is_found_nowhere() {
    let hash = bcrypt::hash(REGISTRY_PW, 4).unwrap();
    let registry = RegistryServer::start_with_htpasswd(&format!("deployer:{hash}\n"));
    let console = Console::start(Vec::new());
    let repo = example();
    // Git ignores `.env` files (the example's .gitignore says so): they are
    // on disk, build inputs, never committed.
    repo.write(
        "apps/storefront-middleware/.env",
        &format!("API_KEY={ENV_VALUE}\n"),
    );
    repo.write(
        ".env",
        &format!("CLI_CLOUD_USERNAME=deployer\nCLI_CLOUD_PASSWORD={REGISTRY_PW}\nOTHER={ROOT_ENV_VALUE}\n"),
    );
    repo.git_init();
    let work = tempfile::tempdir().unwrap();
    let summary = work.path().join("summary.json");
    let profile = work.path().join("profile.json");
    let url = format!("http://{}", registry.host());
    let remote = format!("http://user:{REMOTE_PW}@127.0.0.1:9/");
    let console_url = console.url();

    // A refused password first: the error names the refusal, not the
    // password.
    let (code, output) = run(
        &repo,
        &[
            "store",
            "deploy",
            "--registry",
            &url,
            "--base-image",
            "scratch",
            "-s",
            "sports",
        ],
        &[("CLI_CLOUD_PASSWORD", "Planted-Registry-Pw-wrong")],
    );
    assert_eq!(code, 1, "{output}");
    assert!(!output.contains("Planted-Registry-Pw-wrong"), "{output}");

    let (code, output) = run(
        &repo,
        &[
            "-vv",
            "store",
            "deploy",
            "--json",
            "--registry",
            &url,
            "--base-image",
            "scratch",
            "--console-url",
            &console_url,
            "--remote-cache",
            &remote,
            "--summary",
            summary.to_str().unwrap(),
            "--profile",
            profile.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{output}");
    assert_clean("deploy's output", &output);
    assert!(
        output.contains("remote cache"),
        "the unreachable remote cache was reported: {output}"
    );
    assert!(
        !console.seen.lock().unwrap().is_empty(),
        "the deployments were triggered"
    );

    for args in [
        vec!["-vv", "store", "build", "--json"],
        vec!["store", "explain", "sports", "--json"],
        vec![
            "store",
            "explain",
            "sports",
            "--file",
            "storefront-middleware/.env",
        ],
        vec!["cache", "verify", "--json"],
        vec!["store", "deploy", "--dry-run", "--registry", &url],
    ] {
        let (_, output) = run(&repo, &args, &[]);
        assert_clean(&format!("strata {args:?}"), &output);
    }

    let mut found = Vec::new();
    for file in [&summary, &profile] {
        holders(
            file.parent().unwrap(),
            &|p| p != summary && p != profile,
            &mut found,
        );
    }
    holders(&repo.path().join(".strata"), &|_| false, &mut found);
    // `.out` too, but for the composed `.env` files themselves (Alokai's
    // local settings are composed by inheritance, git-ignored or not):
    // nothing a build or `.deploy` made from them holds the value.
    let out = repo.path().join(".out");
    let composed_env = |p: &Path| {
        p.file_name().is_some_and(|n| n == ".env")
            && p.strip_prefix(&out)
                .is_ok_and(|r| r.components().count() == 3)
    };
    holders(&out, &composed_env, &mut found);
    for store in ["fashion-us", "fashion-eu", "sports"] {
        let env = out.join(store).join("storefront-middleware/.env");
        assert!(
            std::fs::read_to_string(&env).is_ok_and(|t| t.contains(ENV_VALUE)),
            "{} is composed from apps/storefront-middleware/.env",
            env.display()
        );
    }
    // Every image, unpacked from the registry.
    let sha = String::from_utf8(
        Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    for store in ["fashion-us", "fashion-eu", "sports"] {
        for app in ["storefront-middleware", "storefront-unified-nextjs"] {
            let image = format!("{}/demo-{store}/{app}:{sha}", registry.host());
            let dir = work.path().join(format!("{store}-{app}"));
            std::fs::create_dir_all(&dir).unwrap();
            let creds = format!("deployer:{REGISTRY_PW}");
            let bundle = unpack_with(&image, &dir, Some(&creds));
            holders(&bundle, &|_| false, &mut found);
            holders(&dir.join("layout"), &|_| false, &mut found);
        }
    }
    assert!(found.is_empty(), "secrets found:\n{}", found.join("\n"));
    // The search does find what is there: the `.env` files themselves.
    let mut control = Vec::new();
    holders(&repo.path().join("apps"), &|_| false, &mut control);
    assert!(
        control.iter().any(|f| f.contains(ENV_VALUE)),
        "the search missed the .env file: {control:?}"
    );
}
