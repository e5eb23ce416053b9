//! `--summary`: per store and stage, whether it ran or came from a cache
//! (and which), why it ran, how long it took, and how many bytes.

use serde_json::{Value, json};
use strata_engine::{Event, RunLog, Status};

use crate::builder::BuildReport;
use crate::deployer::DeployReport;

fn event<'a>(log: &'a RunLog, id: &str) -> Option<&'a Event> {
    log.events.iter().find(|e| e.id == id)
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Cached => "cached",
        Status::Planned => "planned",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
        _ => "run",
    }
}

fn node(
    log: &RunLog,
    id: &str,
    status: Option<&str>,
    source: Option<&str>,
    bytes: Option<u64>,
) -> Value {
    let e = event(log, id);
    json!({
        "status": status.map(str::to_string).or_else(|| e.map(|e| status_word(e.status).to_string())),
        "source": source,
        "reason": e.and_then(|e| e.reason.clone()),
        "ms": e.map(|e| e.duration.as_secs_f64() * 1000.0),
        "bytes": bytes,
    })
}

/// The summary of a build (and of the deploy that ran it, if any).
pub fn summary(build: &BuildReport, deploy: Option<&DeployReport>) -> Value {
    let log = &build.log;
    let stores: Vec<Value> = build
        .stores
        .iter()
        .map(|store| {
            let id = &store.id;
            let mut compose = serde_json::Map::new();
            let mut builds = serde_json::Map::new();
            let mut prepares = serde_json::Map::new();
            for app in &store.apps {
                compose.insert(
                    app.app.clone(),
                    node(
                        log,
                        &crate::nodes::out_id(id, &app.app),
                        None,
                        Some("local"),
                        None,
                    ),
                );
                if app.build != "no-script" {
                    let (status, source) = match app.build {
                        "built" => ("run", None),
                        "cached" => ("cached", Some("local")),
                        "restored" | "shared" => ("cached", Some("local")),
                        "remote" => ("cached", Some("remote")),
                        other => (other, None),
                    };
                    let mut b = node(
                        log,
                        &crate::nodes::build_id(id, &app.app),
                        Some(status),
                        source,
                        app.output_bytes,
                    );
                    b["result"] = json!(app.build);
                    if let Some(with) = &app.shared_with {
                        b["shared_with"] = json!(with);
                    }
                    builds.insert(app.app.clone(), b);
                }
                if let Some(d) = app.deploy {
                    let status = match d {
                        "prepared" | "checked" => "run",
                        other => other,
                    };
                    prepares.insert(
                        app.app.clone(),
                        node(
                            log,
                            &crate::nodes::deploy_id(id, &app.app),
                            Some(status),
                            None,
                            app.deploy_bytes,
                        ),
                    );
                }
            }
            let mut stages = json!({ "compose": compose, "build": builds, "prepare": prepares });
            if let Some(d) = deploy.and_then(|d| d.stores.iter().find(|s| &s.id == id)) {
                for stage in ["image", "push", "trigger"] {
                    stages[stage] = json!({
                        "status": d.stages.get(stage),
                        "bytes": (stage == "push").then_some(d.bytes_uploaded),
                    });
                }
                stages["images"] = json!(d.images);
                stages["ms"] = json!(d.seconds * 1000.0);
                stages["message"] = json!(d.message);
            }
            json!({ "store": id, "stages": stages })
        })
        .collect();
    json!({
        "scripts_run": build.scripts_run,
        "remote_cache": build.remote,
        "warnings": build.warnings,
        "revision": deploy.map(|d| d.revision.clone()),
        "stores": stores,
    })
}
