//! zdtm-style Rust std target for checkpoint/restore tests (tests/tests/zdtm.rs), compiled by
//! the test with rustc: `zdtm_rust OUT`. Every 5 ms step n appends "n heap ok|bad" to OUT
//! through a `File` (its fd offset is the only record of what was written), after checking a
//! heap `Vec` and a `HashMap` it built at start, then `thread::sleep`s.

use std::collections::HashMap;
use std::io::Write;

fn main() {
    let path = std::env::args().nth(1).expect("usage: zdtm_rust OUT");
    let mut out = std::fs::File::create(&path).expect("create OUT");
    let squares: Vec<u64> = (0..100_000u64).map(|i| i * i).collect();
    let names: HashMap<u64, String> = (0..1_000u64).map(|i| (i, format!("name-{i}"))).collect();
    for n in 1u64.. {
        let i = (n * 7919) % 100_000;
        let good = squares[i as usize] == i * i && names[&(n % 1_000)] == format!("name-{}", n % 1_000);
        writeln!(out, "{n} heap {}", if good { "ok" } else { "bad" }).expect("write OUT");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
