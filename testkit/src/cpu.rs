//! CPU time of processes, from the kernel's own counters
//! (`/proc/<pid>/stat`), for the benches: what a process spent, whatever
//! it reports about itself. Linux only.

use std::time::Duration;

/// The unit of the times in `/proc/<pid>/stat`: `USER_HZ`, which the
/// kernel fixes at 100 for userspace on every architecture Linux runs on
/// (`getconf CLK_TCK`).
const CLOCK_TICKS_PER_SECOND: u64 = 100;

/// The CPU counters of one process, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct ProcessStat {
    parent: u32,
    /// `utime + stime`: user and system time of every thread of the
    /// process.
    own: u64,
    /// `cutime + cstime`: the same of its children that exited and that it
    /// waited for.
    reaped_children: u64,
}

fn read_stat(pid: u32) -> std::io::Result<ProcessStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // `pid (comm) state ppid …`: the command name may hold spaces and
    // parentheses, so the fields are counted from the last ')'.
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, text.clone());
    let (_, rest) = text.rsplit_once(')').ok_or_else(invalid)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field n of proc(5) (1-based) is fields[n - 3] here.
    let field = |n: usize| -> std::io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|value| value.parse().ok())
            .ok_or_else(invalid)
    };
    Ok(ProcessStat {
        parent: field(4)? as u32,
        own: field(14)? + field(15)?,
        reaped_children: field(16)? + field(17)?,
    })
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_micros(ticks * 1_000_000 / CLOCK_TICKS_PER_SECOND)
}

/// User plus system CPU time `pid` has used so far, all its threads
/// together.
///
/// # Errors
///
/// When the process is gone (or this is not Linux).
pub fn process_cpu_time(pid: u32) -> std::io::Result<Duration> {
    read_stat(pid).map(|stat| ticks_to_duration(stat.own))
}

/// A PostgreSQL server on this machine: the postmaster and every process
/// it forks (a backend per connection, the WAL writer, the checkpointer,
/// autovacuum, …).
#[derive(Debug, Clone, Copy)]
pub struct PostgresProcesses {
    postmaster: u32,
}

impl PostgresProcesses {
    /// The server a connection of `pool` is served by: the postmaster is
    /// the parent of that connection's backend. `None` when the server is
    /// not a process this machine can see (another host, a container).
    pub async fn serving(pool: &sqlx::PgPool) -> Option<PostgresProcesses> {
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(pool)
            .await
            .ok()?;
        let is_postgres = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end().starts_with("postgres"))
        };
        let backend = u32::try_from(backend)
            .ok()
            .filter(|pid| is_postgres(*pid))?;
        let postmaster = read_stat(backend).ok()?.parent;
        is_postgres(postmaster).then_some(PostgresProcesses { postmaster })
    }

    pub fn postmaster_pid(&self) -> u32 {
        self.postmaster
    }

    /// CPU time the whole server has used so far: the postmaster's own,
    /// that of its children that exited (the backends of closed
    /// connections), and that of each child alive now.
    ///
    /// # Errors
    ///
    /// When the postmaster is gone.
    pub fn cpu_time(&self) -> std::io::Result<Duration> {
        // The postmaster first, then its children: a child reaped between
        // the two reads is missed once rather than counted twice.
        let postmaster = read_stat(self.postmaster)?;
        let children: u64 = live_processes()
            .filter_map(|pid| read_stat(pid).ok())
            .filter(|stat| stat.parent == self.postmaster)
            .map(|stat| stat.own)
            .sum();
        Ok(ticks_to_duration(
            postmaster.own + postmaster.reaped_children + children,
        ))
    }
}

fn live_processes() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
}
