//! Child processes that never outlive strata: each runs in its own process
//! group, and on Ctrl-C or SIGTERM every group is stopped (its whole tree:
//! a package manager, its shell, the node process under it).
//!
//! A SIGKILL runs no handler, and the groups go on: a build left running
//! would write into the folder the next run builds in. So the groups are
//! also listed in a ledger in the state folder ([`track`]), and the next
//! run that holds the state's lock stops the ones still running first.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use rustix::process::{Pid, Signal, kill_process_group};

static GROUPS: Mutex<Option<HashSet<i32>>> = Mutex::new(None);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Where the running groups are listed, once [`track`] was called.
static LEDGER: OnceLock<PathBuf> = OnceLock::new();

/// What `/proc/<pid>/stat` says of a process: whether it still runs (is
/// not a zombie), its process group, and its start time (in clock ticks
/// after boot), which tells it from a later process given the same pid.
struct Stat {
    running: bool,
    group: i32,
    start: u64,
}

fn stat(pid: &str) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`: comm may hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        running: !matches!(fields.first(), Some(&"Z") | Some(&"X") | None),
        group: fields.get(2)?.parse().ok()?,
        // Field 22 of stat; `fields` starts at field 3.
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Whether a process of group `pgid` still runs (zombies do not count: a
/// container's first process may never reap them).
fn group_runs(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.bytes().all(|b| b.is_ascii_digit())
            && stat(&name).is_some_and(|s| s.running && s.group == pgid)
    })
}

/// Lists the groups started from now on in `ledger`, after stopping the
/// groups an earlier run listed there that are still running (a run
/// killed with SIGKILL leaves its builds going). The caller holds the lock
/// of the folder `ledger` is in. Returns how many groups were stopped.
pub fn track(ledger: &Path) -> io::Result<usize> {
    let mut stopped = 0;
    if let Ok(text) = std::fs::read_to_string(ledger) {
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let (Some(pid), Some(start)) = (parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(pid), Ok(start)) = (pid.parse::<i32>(), start.parse::<u64>()) else {
                continue;
            };
            // A process with that pid that started at another time is
            // not the one listed: pids are reused. With the leader gone
            // (or a zombie), the group it left is still the one listed:
            // Linux gives no new process a pid a group still uses.
            if stat(&pid.to_string()).is_some_and(|s| s.start != start) || !group_runs(pid) {
                continue;
            }
            if let Some(group) = Pid::from_raw(pid)
                && kill_process_group(group, Signal::KILL).is_ok()
            {
                stopped += 1;
                let deadline = Instant::now() + Duration::from_secs(5);
                while group_runs(pid) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    let _ = LEDGER.set(ledger.to_path_buf());
    let groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    write_ledger(&groups)?;
    Ok(stopped)
}

/// Rewrites the ledger (when there is one) to list `groups`.
fn write_ledger(groups: &Option<HashSet<i32>>) -> io::Result<()> {
    let Some(path) = LEDGER.get() else {
        return Ok(());
    };
    let mut text = String::new();
    for &pid in groups.iter().flatten() {
        if let Some(leader) = stat(&pid.to_string()).filter(|s| s.running) {
            text.push_str(&format!("{pid} {}\n", leader.start));
        }
    }
    crate::atomic::write_atomic(path, text.as_bytes(), false)
        .map_err(|e| io::Error::other(e.to_string()))
}

/// Whether a SIGINT or SIGTERM arrived: the process is about to exit.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Acquire)
}

/// Waits for a child started by [`spawn`] and forgets its group. After an
/// interruption it never returns: the signal handler is stopping every
/// child and will exit the process, and nothing may be recorded of a
/// child it killed.
pub fn wait(child: &mut Child) -> io::Result<ExitStatus> {
    let status = child.wait();
    forget(child);
    while interrupted() {
        std::thread::park();
    }
    status
}

/// Starts `command` as the leader of a new process group and remembers
/// the group until [`forget`] is called.
pub fn spawn(command: &mut Command) -> io::Result<Child> {
    if interrupted() {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
    }
    command.process_group(0);
    // Hold the lock while spawning, so a signal handled meanwhile either
    // sees the group or runs before it exists.
    let mut groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = command.spawn()?;
    groups
        .get_or_insert_with(HashSet::new)
        .insert(child.id() as i32);
    // Listed before anything waits for it: a kill from now on leaves a
    // trace the next run follows.
    if let Err(e) = write_ledger(&groups) {
        let _ = kill_process_group(
            Pid::from_raw(child.id() as i32).expect("a child's pid is positive"),
            Signal::KILL,
        );
        let _ = child.wait();
        if let Some(set) = groups.as_mut() {
            set.remove(&(child.id() as i32));
        }
        return Err(e);
    }
    Ok(child)
}

/// Forgets a group whose leader has been waited for.
pub fn forget(child: &Child) {
    let mut groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(set) = groups.as_mut() {
        set.remove(&(child.id() as i32));
    }
    // A stale line is harmless: its leader is gone, so it is skipped.
    let _ = write_ledger(&groups);
}

/// Sends `signal` to every remembered group.
fn signal_all(signal: Signal) -> usize {
    let groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    let mut alive = 0;
    for &pgid in groups.iter().flatten() {
        if let Some(pid) = Pid::from_raw(pgid)
            && kill_process_group(pid, signal).is_ok()
        {
            alive += 1;
        }
    }
    alive
}

/// Stops every remembered group: SIGTERM, then SIGKILL to what is left
/// after `grace`.
pub fn stop_all(grace: Duration) {
    if signal_all(Signal::TERM) == 0 {
        return;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        // Signal 0 probes whether any process of the group is left.
        let groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
        let left = groups.iter().flatten().any(|&pgid| {
            Pid::from_raw(pgid)
                .is_some_and(|pid| rustix::process::test_kill_process_group(pid).is_ok())
        });
        if !left {
            return;
        }
    }
    signal_all(Signal::KILL);
}

/// Stops the groups `groups` (leaders started by [`spawn`]): SIGTERM, then
/// SIGKILL to what is left after `grace`. Other groups go on.
pub fn stop_groups(groups: &[i32], grace: Duration) {
    let pids: Vec<Pid> = groups.iter().filter_map(|&g| Pid::from_raw(g)).collect();
    let alive: Vec<Pid> = pids
        .into_iter()
        .filter(|&pid| kill_process_group(pid, Signal::TERM).is_ok())
        .collect();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !alive
            .iter()
            .any(|&pid| rustix::process::test_kill_process_group(pid).is_ok())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in alive {
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

/// Installs the handler: on SIGINT or SIGTERM, stop every child group, call
/// `on_exit` (to say what happened), and exit with 130. Nothing that a
/// finished run would record is recorded.
pub fn exit_on_signal(on_exit: impl Fn() + Send + 'static) -> io::Result<()> {
    exit_on_signal_with(130, on_exit)
}

/// Like [`exit_on_signal`], exiting with `code` (a watch mode that is told
/// to stop has succeeded: 0).
pub fn exit_on_signal_with(code: i32, on_exit: impl Fn() + Send + 'static) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            INTERRUPTED.store(true, Ordering::Release);
            stop_all(Duration::from_secs(5));
            on_exit();
            std::process::exit(code);
        }
    });
    Ok(())
}
