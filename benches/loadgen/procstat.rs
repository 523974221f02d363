//! CPU and memory of the measured processes, read from /proc: a gateway's cost per call is
//! its CPU time over the measured window divided by the calls, which no client-side figure can
//! show. A gateway that forks workers is measured as a process tree (`--server-tree`), and the
//! whole machine's busy time tells how much other processes disturbed the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

#[derive(Args, Clone)]
pub struct ProcArgs {
    /// Gateway pid: CPU (utime+stime) over the measured window, VmRSS / VmHWM.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Count --server-pid together with all its descendant processes (a gateway that forks
    /// workers): CPU is the sum of utime+stime+cutime+cstime over the tree, memory the sum of
    /// VmRSS / VmHWM / RssAnon / RssFile over it, plus the sum of Pss (shared pages split).
    #[arg(long, requires = "server_pid")]
    server_tree: bool,
    /// Backend pid: CPU over the measured window.
    #[arg(long)]
    pub backend_pid: Option<u32>,
    /// Clock ticks per second for /proc/<pid>/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    pub clk_tck: u64,
}

/// The fields of /proc/<pid>/stat after the parenthesised command name: index 0 is field 3
/// (state), 1 the ppid, 11 and 12 utime and stime (fields 14 and 15), 13 and 14 cutime and
/// cstime.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    // The state is a letter: keep its place with 0 so that the indices stay the field numbers.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// The sum of these /proc/<pid>/stat fields (indices as in `stat_fields`); None if one is
/// missing or the process is gone.
fn stat_sum(pid: u32, indices: &[usize]) -> Option<u64> {
    let fields = stat_fields(pid)?;
    indices.iter().map(|&i| fields.get(i).copied()).sum()
}

/// utime + stime.
fn cpu_ticks(pid: u32) -> Option<u64> {
    stat_sum(pid, &[11, 12])
}

/// utime + stime + cutime + cstime: the process and its children that exited and were reaped,
/// so that summing this over a live process tree counts every process once.
fn cpu_ticks_with_reaped(pid: u32) -> Option<u64> {
    stat_sum(pid, &[11, 12, 13, 14])
}

/// `root` and all its live descendants (root first); empty if `root` is gone.
fn process_tree(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1).copied()) {
                parents.push((pid, ppid));
            }
        }
    }
    if !parents.iter().any(|&(pid, _)| pid == root) {
        return Vec::new();
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = u64::from(tree[i]);
        tree.extend(
            parents
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    tree
}

/// A measured process: one process, or with --server-tree a process and its descendants.
#[derive(Clone, Copy)]
pub struct Server {
    pid: u32,
    tree: bool,
}

impl ProcArgs {
    /// The gateway, if --server-pid was given.
    pub fn server(&self) -> Option<Server> {
        self.server_pid.map(|pid| Server {
            pid,
            tree: self.server_tree,
        })
    }

    /// The backend, if --backend-pid was given (never a tree).
    pub fn backend(&self) -> Option<Server> {
        self.backend_pid.map(Server::single)
    }
}

impl Server {
    /// One process without its descendants.
    pub fn single(pid: u32) -> Server {
        Server { pid, tree: false }
    }

    /// The pid given on the command line (the root of a tree).
    pub fn pid(self) -> u32 {
        self.pid
    }

    /// The processes measured now (the root first).
    pub fn pids(self) -> Vec<u32> {
        if self.tree {
            process_tree(self.pid)
        } else {
            vec![self.pid]
        }
    }

    fn cpu_ticks(self) -> Option<u64> {
        if !self.tree {
            return cpu_ticks(self.pid);
        }
        let pids = self.pids();
        let root = cpu_ticks_with_reaped(*pids.first()?)?;
        Some(
            root + pids[1..]
                .iter()
                .filter_map(|&p| cpu_ticks_with_reaped(p))
                .sum::<u64>(),
        )
    }

    /// A pair of KiB figures summed over the processes (None if the root has none).
    fn sum_pairs(pids: &[u32], read: fn(u32) -> Option<(u64, u64)>) -> Option<(u64, u64)> {
        let root = read(*pids.first()?)?;
        Some(
            pids[1..]
                .iter()
                .filter_map(|&p| read(p))
                .fold(root, |(a, b), (x, y)| (a + x, b + y)),
        )
    }

    /// (VmRSS, VmHWM) in KiB, summed over the processes (shared pages counted in each).
    pub fn memory_kib(self) -> Option<(u64, u64)> {
        Self::sum_pairs(&self.pids(), memory_kib)
    }

    /// (RssAnon, RssFile) in KiB, summed over the processes.
    pub fn rss_split_kib(self) -> Option<(u64, u64)> {
        Self::sum_pairs(&self.pids(), rss_split_kib)
    }
}

/// Proportional set size in KiB (shared pages divided among the processes that map them).
fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Two KiB fields of /proc/<pid>/status, e.g. `VmRSS:` and `VmHWM:`.
fn status_kib_pair(pid: u32, first: &str, second: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field(first)?, field(second)?))
}

/// (VmRSS, VmHWM) in KiB.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    status_kib_pair(pid, "VmRSS:", "VmHWM:")
}

/// (RssAnon, RssFile) in KiB: heap and stacks vs pages of the mapped binary and libraries.
fn rss_split_kib(pid: u32) -> Option<(u64, u64)> {
    status_kib_pair(pid, "RssAnon:", "RssFile:")
}

/// Busy ticks of the whole machine (user, nice, system, irq, softirq, steal) from /proc/stat.
pub fn machine_busy_ticks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            let fields: Vec<u64> = stat
                .lines()
                .next()?
                .split_whitespace()
                .skip(1)
                .filter_map(|f| f.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal
            Some(
                [0, 1, 2, 5, 6, 7]
                    .iter()
                    .filter_map(|&i| fields.get(i))
                    .sum(),
            )
        })
        .unwrap_or(0)
}

/// CPU ticks used so far by a measured process (0 when there is none or it is gone).
pub fn cpu_ticks_of(process: Option<Server>) -> u64 {
    process.and_then(Server::cpu_ticks).unwrap_or(0)
}

/// Samples the gateway's VmRSS (summed over its processes) every 100 ms until stopped; returns
/// the maximum seen. A process tree is re-listed once a second, not at every sample.
pub fn rss_sampler(server: Option<Server>, stop: Arc<AtomicU8>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut max = 0;
        let Some(server) = server else { return 0 };
        let rss = |pids: &[u32]| Server::sum_pairs(pids, memory_kib).map(|(rss, _)| rss);
        let mut pids = server.pids();
        let mut tick = 0u64;
        while stop.load(Ordering::Relaxed) == 0 {
            if let Some(rss) = rss(&pids) {
                max = max.max(rss);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            tick += 1;
            if tick.is_multiple_of(10) {
                pids = server.pids();
            }
        }
        if let Some(rss) = rss(&server.pids()) {
            max = max.max(rss);
        }
        max
    })
}

/// `{pid, cpu_seconds, cpu_us_per_call}` between two `cpu_ticks_of` readings; null without a
/// pid.
pub fn cpu_json(clk_tck: u64, pid: Option<u32>, before: u64, after: u64, calls: u64) -> Value {
    match pid {
        None => Value::Null,
        Some(pid) => {
            let seconds = after.saturating_sub(before) as f64 / clk_tck as f64;
            json!({
                "pid": pid,
                "cpu_seconds": seconds,
                "cpu_us_per_call": if calls > 0 { seconds * 1e6 / calls as f64 } else { 0.0 },
            })
        }
    }
}

/// Adds the gateway's memory at the end of the window to its `cpu_json` object: VmRSS, VmHWM,
/// RssAnon / RssFile, the maximum VmRSS sampled during the window, and for a process tree the
/// pids and the summed Pss.
pub fn add_memory_json(server_json: &mut Value, server: Option<Server>, rss_max: u64) {
    let memory = server.and_then(Server::memory_kib);
    let (Value::Object(map), Some((rss, hwm))) = (server_json, memory) else {
        return;
    };
    map.insert("vm_rss_kib_end".into(), json!(rss));
    map.insert("vm_hwm_kib".into(), json!(hwm));
    if let Some((anon, file)) = server.and_then(Server::rss_split_kib) {
        map.insert("rss_anon_kib_end".into(), json!(anon));
        map.insert("rss_file_kib_end".into(), json!(file));
    }
    map.insert("vm_rss_kib_max_during".into(), json!(rss_max));
    if let Some(server) = server.filter(|s| s.tree) {
        // Forked workers share pages: the RSS sums count them in every process, Pss
        // divides them.
        let pids = server.pids();
        map.insert("process_tree".into(), json!(true));
        map.insert("processes".into(), json!(pids.len()));
        map.insert("pids".into(), json!(pids));
        let pss: Vec<u64> = pids.iter().filter_map(|&p| pss_kib(p)).collect();
        if pss.len() == pids.len() {
            map.insert("pss_kib_end".into(), json!(pss.iter().sum::<u64>()));
        }
    }
}
