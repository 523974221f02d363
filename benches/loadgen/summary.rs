//! The one line a load run prints (plus `!!` lines for failures), read by people watching
//! bench/run: the figures of the JSON result that matter, in a fixed layout so that runs can be
//! compared by eye.

use serde_json::Value;

/// Prints the summary of a `load` result (the JSON written with --json).
pub fn print_summary(r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let lat = &r["latency_us"];
    let mut line = format!(
        "{:<14} {:<22} c={:<3} {:>6.1}s {:>8} calls {:>9.0}/s | p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3} ms | ok {} errors {} wrong {}",
        r["mode"].as_str().unwrap_or(""),
        r["label"].as_str().unwrap_or(""),
        r["connections"],
        f(&r["window_s"]),
        r["calls"],
        f(&r["calls_per_s"]),
        f(&lat["p50"]) / 1000.0,
        f(&lat["p99"]) / 1000.0,
        f(&lat["p99_9"]) / 1000.0,
        f(&lat["max"]) / 1000.0,
        r["ok"],
        r["errors"],
        r["wrong_answers"],
    );
    if r["server"].is_object() {
        line.push_str(&format!(
            " | gateway {:.1} us/call, RSS {:.1} MiB (max {:.1}, HWM {:.1})",
            f(&r["server"]["cpu_us_per_call"]),
            f(&r["server"]["vm_rss_kib_end"]) / 1024.0,
            f(&r["server"]["vm_rss_kib_max_during"]) / 1024.0,
            f(&r["server"]["vm_hwm_kib"]) / 1024.0,
        ));
        if r["server"]["process_tree"].as_bool() == Some(true) {
            line.push_str(&format!(
                " summed over {} processes, Pss {:.1} MiB",
                r["server"]["processes"],
                f(&r["server"]["pss_kib_end"]) / 1024.0,
            ));
        }
    }
    if r["backend"].is_object() {
        line.push_str(&format!(
            " | backend {:.1} us/call",
            f(&r["backend"]["cpu_us_per_call"])
        ));
    }
    line.push_str(&format!(
        " | loadgen {:.1} us/call",
        f(&r["loadgen"]["cpu_us_per_call"])
    ));
    let others = f(&r["other_processes_busy_cores"]);
    if others > 0.2 {
        line.push_str(&format!(
            " | !! other processes used {others:.2} cores meanwhile"
        ));
    }
    println!("{line}");
    if r["errors"].as_u64().unwrap_or(0) + r["wrong_answers"].as_u64().unwrap_or(0) > 0 {
        println!("  !! errors by kind: {}", r["error_kinds"]);
    }
    if r["warmup_failures"].as_u64().unwrap_or(0) > 0 {
        println!(
            "  !! {} failures during the warm-up (not in the figures above)",
            r["warmup_failures"]
        );
    }
    if let Some(samples) = r["failure_samples"].as_array() {
        for s in samples {
            println!("  !! {}", s.as_str().unwrap_or(""));
        }
    }
}
