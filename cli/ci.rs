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
pub fn remote(ci: &CiArgs) -> Result<Option<strata_rules::RemoteSettings>, strata_rules::Error> {
    let Some(url) = ci.remote_cache.clone() else {
        return Ok(None);
    };
    Ok(Some(strata_rules::RemoteSettings {
        url,
        read_only: ci.remote_cache_read_only,
        instance: ci.remote_instance.clone(),
        headers: headers(&ci.remote_header)?,
        ca: ci.remote_ca.clone(),
    }))
}

/// The `--remote-header` values as (name, value): `NAME=VALUE`, or
/// `Name: value` as curl writes them. An error names the header by its
/// place, never by its text (it holds a secret).
fn headers(given: &[String]) -> Result<Vec<(String, String)>, strata_rules::Error> {
    given
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let split = match (text.find('='), text.find(':')) {
                (Some(e), Some(c)) if c < e => text.split_at(c),
                (Some(e), _) => text.split_at(e),
                (None, Some(c)) => text.split_at(c),
                (None, None) => ("", ""),
            };
            let (name, value) = (split.0.trim(), split.1.get(1..).unwrap_or("").trim());
            // A token given without a name would split at its padding.
            let good = !value.trim_matches(['=', ':']).is_empty()
                && !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !good {
                return Err(strata_rules::Error::BadUrl {
                    option: "--remote-header",
                    message: format!(
                        "header {} of {} is not NAME=VALUE with a header name before the = (its text is not shown: it may hold a secret)",
                        i + 1,
                        given.len()
                    ),
                });
            }
            Ok((name.to_ascii_lowercase(), value.to_string()))
        })
        .collect()
}

/// The remote executor option.
pub fn executor(
    ci: &CiArgs,
) -> Result<Option<strata_rules::ExecutorSettings>, strata_rules::Error> {
    let Some(url) = ci.remote_executor.clone() else {
        return Ok(None);
    };
    Ok(Some(strata_rules::ExecutorSettings {
        url,
        instance: ci.remote_instance.clone(),
        headers: headers(&ci.remote_header)?,
        jobs: ci.remote_jobs.max(1),
        ca: ci.remote_ca.clone(),
    }))
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

#[cfg(test)]
mod tests {
    use super::headers;

    #[test]
    fn headers_are_read_both_ways_and_never_echoed() {
        let given = vec![
            "Authorization=Bearer a=b".to_string(),
            "x-api-key: k3y".to_string(),
        ];
        assert_eq!(
            headers(&given).unwrap(),
            [
                ("authorization".to_string(), "Bearer a=b".to_string()),
                ("x-api-key".to_string(), "k3y".to_string())
            ]
        );
        for bad in ["dXNlcjpwYXNz==", "Bearer s3cret-token", "bad name=v4lue"] {
            let err = headers(&[bad.to_string()]).unwrap_err().to_string();
            assert!(
                !err.contains("s3cret") && !err.contains("dXNlcjpwYXNz") && !err.contains("v4lue"),
                "{err}"
            );
            assert!(err.contains("header 1 of 1"), "{err}");
        }
    }
}
