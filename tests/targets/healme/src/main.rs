//! healme: memzinc's sample target. A thermostat prints one status line per tick. Its state
//! lives in one `#[repr(C)]` static that memzinc finds by symbol. With `--corrupt-at N` it
//! damages its own state at tick N, as a stray write would, and its output visibly degrades
//! ("OVERHEAT", the fan stuck at full) until someone repairs the bytes. `--ballast-mib N` makes
//! it hold N MiB of touched memory, for tests that need a snapshot to take a while.
//!
//! `healme --describe` prints the layout and invariants (offsets, sizes and signedness from the
//! `#[derive(Describe)]` layout, bounds written here), which is what `models/targets/healme.json`
//! holds. At start it registers its state in the `MEMZINC_REGISTRY` memzinc reads.
//! `healme --print-address` prints the runtime address of `HEALME_STATE` first.

use std::io::Write;
use std::ptr::{addr_of, addr_of_mut};
use std::time::Duration;

use memzinc_describe::{Describe, Kind};

#[derive(Describe)]
#[repr(C)]
pub struct Thermostat {
    pub magic: u32,
    pub min_temp: i32,
    pub max_temp: i32,
    pub target_temp: i32,
    pub fan_level: u8,
    pub heater_on: u8,
}

const MAGIC: u32 = 0x7E4A_0001;

/// The state memzinc repairs. `#[no_mangle]` keeps the symbol name stable in `.symtab`.
#[no_mangle]
pub static mut HEALME_STATE: Thermostat = Thermostat {
    magic: MAGIC,
    min_temp: 16,
    max_temp: 24,
    target_temp: 21,
    fan_level: 1,
    heater_on: 0,
};

/// Not used by the thermostat: a Rust enum (a tagged union in memory) on which memzinc's DWARF
/// reader is tested. Only memzinc reads the fields.
#[allow(dead_code)]
#[derive(Clone, Copy)]
pub enum Mode {
    Off,
    Heat { target: i32 },
    Fan(u8),
}

#[no_mangle]
#[used]
pub static HEALME_MODES: [Mode; 3] = [Mode::Off, Mode::Heat { target: 21 }, Mode::Fan(2)];

/// Bounds and defaults per field: what the layout cannot say.
const BOUNDS: [(&str, i64, i64, i64); 6] = [
    ("magic", MAGIC as i64, MAGIC as i64, MAGIC as i64),
    ("min_temp", -40, 60, 16),
    ("max_temp", -40, 60, 24),
    ("target_temp", -40, 60, 21),
    ("fan_level", 0, 3, 1),
    ("heater_on", 0, 1, 0),
];

fn describe() -> String {
    let layout = Thermostat::LAYOUT;
    let fields: Vec<String> = layout
        .fields()
        .iter()
        .map(|f| {
            let (_, min, max, default) = BOUNDS
                .iter()
                .find(|b| b.0 == f.name())
                .unwrap_or_else(|| panic!("no bounds for field {}", f.name()));
            format!(
                "    {{\"name\": \"{}\", \"offset\": {}, \"size\": {}, \"signed\": {}, \"min\": {min}, \"max\": {max}, \"default\": {default}}}",
                f.name(),
                f.offset,
                f.size,
                f.kind == Kind::Signed
            )
        })
        .collect();
    format!(
        "{{\n  \"target\": \"healme\",\n  \"symbol\": \"HEALME_STATE\",\n  \"size\": {},\n  \"fields\": [\n{}\n  ],\n  \"le\": [[\"min_temp\", \"target_temp\"], [\"target_temp\", \"max_temp\"]]\n}}\n",
        layout.size,
        fields.join(",\n")
    )
}

fn snapshot() -> (u32, i32, i32, i32, u8, u8) {
    // SAFETY: volatile reads of a plain-data static; memzinc may change it from outside at any
    // time, so every tick must read memory rather than a cached value. Single-threaded.
    unsafe {
        let s = addr_of!(HEALME_STATE);
        (
            addr_of!((*s).magic).read_volatile(),
            addr_of!((*s).min_temp).read_volatile(),
            addr_of!((*s).max_temp).read_volatile(),
            addr_of!((*s).target_temp).read_volatile(),
            addr_of!((*s).fan_level).read_volatile(),
            addr_of!((*s).heater_on).read_volatile(),
        )
    }
}

fn corrupt() {
    // SAFETY: single-threaded volatile writes to the plain-data static, simulating a stray write.
    unsafe {
        let s = addr_of_mut!(HEALME_STATE);
        addr_of_mut!((*s).target_temp).write_volatile(9000);
        addr_of_mut!((*s).fan_level).write_volatile(7);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--describe") {
        print!("{}", describe());
        return;
    }
    // Only the address is recorded; nothing reads or writes the static through the registry.
    if let Err(e) = memzinc_describe::register("HEALME_STATE", addr_of!(HEALME_STATE)) {
        eprintln!("healme: {e}");
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let corrupt_at = flag("--corrupt-at");
    let ticks = flag("--ticks").unwrap_or(u64::MAX);
    let period = Duration::from_millis(flag("--period-ms").unwrap_or(100));
    // `--ballast-mib N`: N MiB of touched memory, so that a snapshot takes a while.
    let ballast = vec![0x5au8; (flag("--ballast-mib").unwrap_or(0) as usize) << 20];

    let stdout = std::io::stdout();
    if args.iter().any(|a| a == "--print-address") {
        let mut out = stdout.lock();
        if writeln!(out, "address HEALME_STATE {:#x}", addr_of!(HEALME_STATE) as usize)
            .and_then(|_| out.flush())
            .is_err()
        {
            return;
        }
    }
    for tick in 0..ticks {
        if Some(tick) == corrupt_at {
            corrupt();
        }
        let (magic, min, max, target, fan, heater) = snapshot();
        let healthy = magic == MAGIC && (min..=max).contains(&target) && fan <= 3 && heater <= 1;
        let status = if healthy {
            "ok"
        } else if target > max {
            "OVERHEAT"
        } else {
            "FAULT"
        };
        let mut out = stdout.lock();
        // A closed stdout (the reader went away) ends the program quietly.
        if writeln!(
            out,
            "tick {tick} target={target} fan={fan} heater={heater} status={status}"
        )
        .and_then(|_| out.flush())
        .is_err()
        {
            return;
        }
        drop(out);
        std::hint::black_box(&ballast);
        std::thread::sleep(period);
    }
}
