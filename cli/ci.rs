//! What `store build` and `store deploy` share for CI: the shard of stores
//! to work on, and the profile and summary files.

use std::path::Path;

use strata_engine::RunLog;
use strata_rules::Workspace;

use crate::args::{CiArgs, Selection};

/// The store ids to work on, after `--shard`; `None` when the shard is
/// empty (nothing to do).
pub fn stores(
    ws: &Workspace,
    selection: &Selection,
    ci: &CiArgs,
) -> anyhow::Result<Option<Vec<String>>> {
    let ids = crate::Setup::ids(selection);
    let Some(spec) = &ci.shard else {
        return Ok(Some(ids));
    };
    let all: Vec<String> = ws.select(&ids)?.iter().map(|s| s.id.clone()).collect();
    let part = strata_rules::shard(&all, spec)?;
    if part.is_empty() {
        eprintln!("shard {spec} holds no store ({} selected)", all.len());
        return Ok(None);
    }
    Ok(Some(part))
}

/// The remote cache option.
pub fn remote(ci: &CiArgs) -> Option<strata_rules::RemoteSettings> {
    ci.remote_cache
        .clone()
        .map(|url| strata_rules::RemoteSettings {
            url,
            read_only: ci.remote_cache_read_only,
            instance: ci.remote_instance.clone(),
            headers: ci.remote_header.clone(),
            ca: ci.remote_ca.clone(),
        })
}

/// The remote executor option.
pub fn executor(ci: &CiArgs) -> Option<strata_rules::ExecutorSettings> {
    ci.remote_executor
        .clone()
        .map(|url| strata_rules::ExecutorSettings {
            url,
            instance: ci.remote_instance.clone(),
            headers: ci.remote_header.clone(),
            jobs: ci.remote_jobs.max(1),
            ca: ci.remote_ca.clone(),
        })
}

fn write(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    strata_engine::write_atomic(path, &bytes, false)?;
    Ok(())
}

/// Writes `--profile` and `--summary` when asked.
pub fn reports(
    ci: &CiArgs,
    log: &RunLog,
    summary: impl FnOnce() -> serde_json::Value,
) -> anyhow::Result<()> {
    if let Some(path) = &ci.profile {
        write(
            path,
            &serde_json::json!({ "traceEvents": log.trace(), "displayTimeUnit": "ms" }),
        )?;
    }
    if let Some(path) = &ci.summary {
        write(path, &summary())?;
    }
    Ok(())
}
