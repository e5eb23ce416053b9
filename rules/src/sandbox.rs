//! `store build --sandbox`: a local build in a temporary copy of the
//! monorepo that holds only what a remote build's input root holds (see
//! `remote_build`), with only the environment a remote action gets. A
//! build that reads something undeclared fails here as it would on a
//! build farm, without one.

use std::path::Path;
use std::process::{Command, Stdio};

use strata_engine::ContentHash;

use crate::build::{
    BuildContext, BuildRecord, BuildSpec, How, named_outputs, package_manager, remove_outputs,
    run_script, store_outputs,
};
use crate::error::{Error, Result};
use crate::remote_build::{input_parts, worker_path};

/// Copies `from` into `to`: folders made, symlinks made as they are,
/// files copied (never linked: a build that writes a file in place must not
/// change the monorepo's); names `skip` gives (relative to `from`) left out.
fn copy_tree(from: &Path, to: &Path, rel: &str, skip: &dyn Fn(&str) -> bool) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let entry = entry.map_err(|e| Error::io(from, e))?;
        let name = entry.file_name();
        let inner = if rel.is_empty() {
            name.to_string_lossy().into_owned()
        } else {
            format!("{rel}/{}", name.to_string_lossy())
        };
        if skip(&inner) {
            continue;
        }
        let source = entry.path();
        let dest = to.join(&name);
        let kind = entry.file_type().map_err(|e| Error::io(&source, e))?;
        if kind.is_symlink() {
            let target = std::fs::read_link(&source).map_err(|e| Error::io(&source, e))?;
            std::os::unix::fs::symlink(&target, &dest).map_err(|e| Error::io(&dest, e))?;
        } else if kind.is_dir() {
            copy_tree(&source, &dest, &inner, skip)?;
        } else if kind.is_file() {
            copy_file(&source, &dest)?;
        }
    }
    Ok(())
}

fn copy_file(source: &Path, dest: &Path) -> Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    std::fs::copy(source, dest).map_err(|e| Error::io(source, e))?;
    Ok(())
}

/// Builds `spec` in a sandbox holding only its input root; the outputs go
/// to the local store and `.out` as after any build.
pub fn build(
    ctx: &BuildContext,
    spec: &BuildSpec,
    key: ContentHash,
    prior: Option<&BuildRecord>,
    upstream: Option<&BuildRecord>,
) -> Result<BuildRecord> {
    let out_dir = ctx.root.join(&spec.out);
    if let Some(prior) = prior {
        remove_outputs(&out_dir, &prior.outputs, &Default::default());
    }
    // The slot first: copies are made for builds about to run only.
    let permit = ctx.slots.acquire();
    let parts = input_parts(ctx, spec, upstream);
    // Outside the monorepo (in the temporary folder), so that nothing a
    // tool looks for upwards (a `node_modules`, a lockfile, `.git`) is
    // found there; removed when dropped.
    let sandbox = tempfile::Builder::new()
        .prefix("strata-sandbox-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let place = sandbox.path().to_path_buf();
    if place.starts_with(&ctx.root) {
        return Err(Error::Toolchain {
            message: format!(
                "--sandbox: the temporary folder {} is inside the monorepo; set TMPDIR to a folder outside it",
                place.display()
            ),
        });
    }
    for (rel, source) in &parts.files {
        copy_file(source, &place.join(strata_engine::fs_path(rel)))?;
    }
    for (rel, bytes) in &parts.contents {
        let dest = place.join(strata_engine::fs_path(rel));
        std::fs::write(&dest, bytes).map_err(|e| Error::io(&dest, e))?;
    }
    for (rel, target) in &parts.links {
        let dest = place.join(strata_engine::fs_path(rel));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::os::unix::fs::symlink(target, &dest).map_err(|e| Error::io(&dest, e))?;
    }
    copy_tree(&out_dir, &place.join(&spec.out), "", &parts.skip_in_app)?;
    if let Some(installed) = &parts.node_modules {
        let skip = |rel: &str| rel == ".cache";
        copy_tree(installed, &place.join("node_modules"), "", &skip)?;
    }
    let dir = place.join(&spec.out);

    let program_path = package_manager(ctx)?;
    let log_path = out_dir.join(".strata-build.log");
    let log = std::fs::File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
    let log_err = log.try_clone().map_err(|e| Error::io(&log_path, e))?;
    let mut command = Command::new(program_path);
    command
        .args(&ctx.pm.run_script("build")[1..])
        .current_dir(&dir)
        // Only what an action's command gets.
        .env_clear()
        .envs(ctx.env.iter().map(|(k, v)| (k, v)))
        .env("PATH", worker_path(ctx, &spec.out))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    let seconds = run_script(
        ctx,
        spec,
        command,
        permit,
        &dir,
        ", in a sandbox holding only the input root",
    )?;
    let made: Vec<String> = named_outputs(&dir, &parts.outputs).into_keys().collect();
    let stored = store_outputs(ctx, &dir, &made)?;
    let outputs: Vec<_> = stored.into_iter().map(|(o, _)| o).collect();
    let bytes = postcard::to_stdvec(&outputs).expect("a manifest encodes");
    ctx.manifests.insert(&key.0, &bytes)?;
    let fingerprints = crate::build::restore_outputs(ctx, spec, &outputs)?;
    drop(sandbox);
    Ok(BuildRecord {
        key,
        outputs,
        fingerprints,
        how: How::Ran,
        seconds,
    })
}
