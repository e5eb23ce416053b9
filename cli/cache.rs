//! `strata cache verify` and `strata cache gc`.

use std::path::Path;
use std::process::ExitCode;

use strata_rules::cache;

use crate::Setup;
use crate::args::CacheCommand;

pub fn run(state_dir: &Path, command: &CacheCommand) -> anyhow::Result<ExitCode> {
    if !state_dir.join("db").is_dir() {
        anyhow::bail!(
            "{}: no strata cache here (nothing was built with this --cache-dir or --root yet)",
            state_dir.display()
        );
    }
    let engine = Setup::open_engine(state_dir)?;
    let builds = engine.db().tree(cache::BUILDS)?;
    let used = engine.db().tree(cache::BUILD_USED)?;
    match command {
        CacheCommand::Verify { json } => {
            let legacy = cache::LEGACY_BUILDS
                .iter()
                .map(|name| engine.db().tree(name))
                .collect::<Result<Vec<_>, _>>()?;
            let report = cache::verify(state_dir, &builds, &used, &legacy)?;
            engine.db().flush()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(if report.found_problems() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        CacheCommand::Gc { max_size, json } => {
            let max = cache::parse_size(max_size)?;
            let report = cache::gc(state_dir, &builds, &used, max)?;
            engine.db().flush()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
