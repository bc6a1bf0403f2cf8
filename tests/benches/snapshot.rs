//! Snapshot speed against the anchors, measured in one run on the same targets: a raw
//! process_vm_readv loop over the same regions (the read bound, no hashing, no writing) and
//! gdb's `gcore`, plus the hash bound: the SHA-256 page leaves of as many bytes on every core,
//! in memory (what memzinc must compute at least), and the write bound: as many bytes written
//! with O_DIRECT and fsynced into the same directory (what a durable snapshot must wait for at
//! least). Targets: healme with 100 MiB and 1 GiB of touched ballast. Prints seconds (best of
//! the rounds), GB/s, how long memzinc kept the target stopped, and ratios; asserts nothing
//! about time.
//!
//! `cargo bench -p memzinc-tests --bench snapshot` (release). `MEMZINC_BENCH_SIZES=100` limits
//! the sizes (MiB), `MEMZINC_BENCH_ROUNDS` sets the rounds (2).

use std::io::IoSliceMut;
use std::process::Command;
use std::time::Instant;

use memzinc_tests::Target;
use nix::sys::uio::{process_vm_readv, RemoteIoVec};

/// Seconds for one raw pass of process_vm_readv over every readable private mapping.
fn readv_bound(pid: i32) -> (f64, u64) {
    let maps = memzinc::introspect::read_maps(pid).unwrap();
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
                        acc ^= memzinc_verifier::merkle::page_leaf::<memzinc::base::Sha2>(address, page)[0];
                    }
                }
                std::hint::black_box(acc);
            });
        }
    });
    started.elapsed().as_secs_f64()
}

/// Seconds to make `bytes` bytes durable in `dir` the way memzinc writes page data: O_DIRECT
/// writes of 8 MiB from two threads, then fsync (the write bound: no snapshot that keeps its
/// durability can be faster on this disk).
fn write_bound(dir: &std::path::Path, bytes: u64) -> f64 {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    const CHUNK: usize = 8 << 20;
    let path = dir.join("write-bound");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .custom_flags(nix::libc::O_DIRECT)
        .open(&path)
        .unwrap();
    // O_DIRECT wants a page-aligned buffer: a page more, and the aligned part of it.
    let backing = vec![0x5au8; CHUNK + 4096];
    let skip = backing.as_ptr().align_offset(4096);
    let buf = &backing[skip..skip + CHUNK];
    let chunks = bytes.div_ceil(CHUNK as u64);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..2u64 {
            let file = &file;
            scope.spawn(move || {
                for c in (t..chunks).step_by(2) {
                    file.write_all_at(buf, c * CHUNK as u64).unwrap();
                }
            });
        }
    });
    file.sync_all().unwrap();
    let secs = started.elapsed().as_secs_f64();
    std::fs::remove_file(&path).unwrap();
    secs
}

fn main() {
    let sizes = memzinc_tests::bench_sizes();
    let rounds = memzinc_tests::bench_rounds();
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
        "best of {rounds} rounds; floor = the larger of the SHA-256 bound (every page's leaf on every core, in memory) and the write bound (the same bytes written with O_DIRECT and fsynced into the same directory)"
    );
    println!(
        "| target | memzinc s | target stopped s | readv s | SHA-256 bound s | write bound s | gcore s | memzinc GB/s | memzinc / readv bound | floor / memzinc | gcore / memzinc |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for mib in sizes {
        let target = Target::healme(&["--ballast-mib", &mib.to_string(), "--period-ms", "200"]);
        target.wait_for("status=ok");
        let pid: i32 = target.pid().parse().unwrap();

        let best = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let (mut readv_s, mut memzinc_s, mut stopped_s, mut gcore_s) = (f64::MAX, f64::MAX, f64::MAX, None);
        let (mut hash_s, mut write_s) = (f64::MAX, f64::MAX);
        let (mut bytes, mut captured) = (0, 0);
        for _ in 0..rounds {
            let (r, b) = readv_bound(pid);
            (readv_s, bytes) = (readv_s.min(r), b);
            let core = dir.path().join("m.core");
            let started = Instant::now();
            let report = memzinc::describe::take(pid, &core, None).expect("snapshot");
            memzinc_s = memzinc_s.min(started.elapsed().as_secs_f64());
            stopped_s = stopped_s.min(report.frozen_ms / 1e3);
            captured = report.bytes;
            std::fs::remove_file(&core).unwrap();

            hash_s = hash_s.min(hash_bound(bytes));
            write_s = write_s.min(write_bound(dir.path(), bytes));

            let gcore_out = dir.path().join("g");
            let started = Instant::now();
            let gcore = Command::new("gcore")
                .arg("-o")
                .arg(&gcore_out)
                .arg(pid.to_string())
                .output();
            let g = started.elapsed().as_secs_f64();
            gcore_s = best(gcore_s, matches!(gcore, Ok(o) if o.status.success()).then_some(g));
            let _ = std::fs::remove_file(format!("{}.{pid}", gcore_out.display()));
        }
        let floor_s = hash_s.max(write_s);

        println!(
            "| healme + {mib} MiB ({:.0} MiB captured) | {memzinc_s:.3} | {stopped_s:.3} | {readv_s:.3} | {hash_s:.3} | {write_s:.3} | {} | {:.2} | {:.0}% | {:.0}% | {} |",
            captured as f64 / (1 << 20) as f64,
            gcore_s.map(|s| format!("{s:.3}")).unwrap_or("n/a".into()),
            bytes as f64 / memzinc_s / 1e9,
            readv_s / memzinc_s * 100.0,
            floor_s / memzinc_s * 100.0,
            gcore_s
                .map(|g| format!("{:.2}x", g / memzinc_s))
                .unwrap_or("n/a".into()),
        );
    }
}
