//! Puts the commit the binary is built from into `strata --version`
//! (`STRATA_COMMIT`; "unknown" outside a git checkout). A packager may
//! set `STRATA_COMMIT` itself.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=STRATA_COMMIT");
    // Only this checkout's own history: a source tree without `.git` that
    // sits inside another repository must not take that one's commit.
    let commit = std::env::var("STRATA_COMMIT").ok().or_else(|| {
        if !Path::new(".git").exists() {
            return None;
        }
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        let hash = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !hash.is_empty()).then_some(hash)
    });
    println!(
        "cargo:rustc-env=STRATA_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    // Built again when HEAD moves; a missing path would rebuild every time.
    let git = Path::new(".git");
    let mut watched = false;
    for path in ["HEAD", "refs/heads", "packed-refs"] {
        if git.join(path).exists() {
            println!("cargo:rerun-if-changed=.git/{path}");
            watched = true;
        }
    }
    if !watched {
        println!("cargo:rerun-if-changed=build.rs");
    }
}
