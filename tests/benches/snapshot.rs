//! Snapshot speed against the anchors, measured in one run on the same targets: a raw
//! process_vm_readv loop over the same regions (the read bound, no hashing, no writing) and
//! gdb's `gcore`, plus the hash bound: the SHA-256 page leaves of as many bytes on every core,
//! in memory (what memzinc must compute at least). Targets: healme with 100 MiB and 1 GiB of
//! touched ballast. Prints seconds, GB/s, how long memzinc kept the target stopped, and ratios;
//! asserts nothing about time.
//!
//! `cargo bench -p memzinc-tests --bench snapshot` (release). `MEMZINC_BENCH_SIZES=100` limits
//! the sizes (MiB).

use std::io::IoSliceMut;
use std::process::Command;
use std::time::Instant;

use memzinc_tests::Target;
use nix::sys::uio::{process_vm_readv, RemoteIoVec};

/// Seconds for one raw pass of process_vm_readv over every readable private mapping.
fn readv_bound(pid: i32) -> (f64, u64) {
    let maps = memzinc::process::read_maps(pid).unwrap();
    let mut buf = vec![0u8; 8 << 20];
    let started = Instant::now();
    let mut total = 0u64;
    for m in maps
        .iter()
        .filter(|m| m.readable() && m.private() && !m.path.starts_with("[vvar"))
    {
        let mut at = m.start;
        while at < m.end {
            let len = ((m.end - at) as usize).min(buf.len());
            let remote = [RemoteIoVec { base: at as usize, len }];
            let n = process_vm_readv(
                nix::unistd::Pid::from_raw(pid),
                &mut [IoSliceMut::new(&mut buf[..len])],
                &remote,
            )
            .unwrap_or(0);
            total += n as u64;
            at += len as u64;
        }
    }
    (started.elapsed().as_secs_f64(), total)
}

/// Seconds to compute the SHA-256 page leaves of `bytes` bytes on every core (in memory).
fn hash_bound(bytes: u64) -> f64 {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let buf: Vec<u8> = (0..8usize << 20).map(|i| (i * 7 / 4096) as u8).collect();
    let chunks = bytes.div_ceil(buf.len() as u64);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads as u64 {
            let buf = &buf;
            scope.spawn(move || {
                let mut acc = 0u8;
                for c in (t..chunks).step_by(threads) {
                    for (i, page) in buf.chunks(4096).enumerate() {
                        let address = (c << 23) + i as u64 * 4096;
                        acc ^= memzinc_verifier::merkle::page_leaf::<memzinc::Sha2>(address, page)[0];
                    }
                }
                std::hint::black_box(acc);
            });
        }
    });
    started.elapsed().as_secs_f64()
}

fn main() {
    let sizes: Vec<u64> = std::env::var("MEMZINC_BENCH_SIZES")
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|_| vec![100, 1024]);
    let dir = tempfile::tempdir().unwrap();
    let profile = if cfg!(debug_assertions) {
        "debug build (numbers are not representative)"
    } else {
        "release build"
    };
    println!(
        "snapshot bench, {profile}, {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!(
        "| target | memzinc s | target stopped s | readv s | SHA-256 bound s | gcore s | memzinc GB/s | memzinc / readv bound | memzinc / hash bound | gcore / memzinc |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for mib in sizes {
        let target = Target::healme(&["--ballast-mib", &mib.to_string(), "--period-ms", "200"]);
        target.wait_for("status=ok");
        let pid: i32 = target.pid().parse().unwrap();

        let (readv_s, bytes) = readv_bound(pid);
        let core = dir.path().join("m.core");
        let started = Instant::now();
        let report = memzinc::snapshot::take(pid, &core, None).expect("snapshot");
        let memzinc_s = started.elapsed().as_secs_f64();
        std::fs::remove_file(&core).unwrap();

        let hash_s = hash_bound(bytes);

        let gcore_out = dir.path().join("g");
        let started = Instant::now();
        let gcore = Command::new("gcore")
            .arg("-o")
            .arg(&gcore_out)
            .arg(pid.to_string())
            .output();
        let gcore_s = started.elapsed().as_secs_f64();
        let gcore_s = match gcore {
            Ok(o) if o.status.success() => Some(gcore_s),
            _ => None,
        };
        let _ = std::fs::remove_file(format!("{}.{pid}", gcore_out.display()));

        println!(
            "| healme + {mib} MiB ({:.0} MiB captured) | {memzinc_s:.3} | {:.3} | {readv_s:.3} | {hash_s:.3} | {} | {:.2} | {:.0}% | {:.0}% | {} |",
            report.bytes as f64 / (1 << 20) as f64,
            report.frozen_ms / 1e3,
            gcore_s.map(|s| format!("{s:.3}")).unwrap_or("n/a".into()),
            bytes as f64 / memzinc_s / 1e9,
            readv_s / memzinc_s * 100.0,
            hash_s / memzinc_s * 100.0,
            gcore_s
                .map(|g| format!("{:.2}x", g / memzinc_s))
                .unwrap_or("n/a".into()),
        );
    }
}
