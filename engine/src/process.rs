//! Child processes that never outlive strata: each runs in its own process
//! group, and on Ctrl-C or SIGTERM every group is stopped (its whole tree:
//! a package manager, its shell, the node process under it).

use std::collections::HashSet;
use std::io;
use std::process::{Child, Command, ExitStatus};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use rustix::process::{Pid, Signal, kill_process_group};

static GROUPS: Mutex<Option<HashSet<i32>>> = Mutex::new(None);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

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
    let child = command.spawn()?;
    groups
        .get_or_insert_with(HashSet::new)
        .insert(child.id() as i32);
    Ok(child)
}

/// Forgets a group whose leader has been waited for.
pub fn forget(child: &Child) {
    let mut groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(set) = groups.as_mut() {
        set.remove(&(child.id() as i32));
    }
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
