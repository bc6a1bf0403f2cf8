//! healme: memzinc's sample target. A thermostat prints one status line per tick. Its state
//! lives in one `#[repr(C)]` static that memzinc finds by symbol. With `--corrupt-at N` it
//! damages its own state at tick N, as a stray write would, and its output visibly degrades
//! ("OVERHEAT", the fan stuck at full) until someone repairs the bytes. `--ballast-mib N` makes
//! it hold N MiB of touched memory, for tests that need a snapshot to take a while.
//!
//! `healme --describe` prints the layout and invariants (offsets from `offset_of!`), which is
//! what `models/targets/healme.json` holds.

use std::io::Write;
use std::mem::{offset_of, size_of};
use std::ptr::{addr_of, addr_of_mut};
use std::time::Duration;

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

fn describe() -> String {
    let field = |name: &str, offset: usize, size: usize, signed: bool, min: i64, max: i64, default: i64| {
        format!(
            "    {{\"name\": \"{name}\", \"offset\": {offset}, \"size\": {size}, \"signed\": {signed}, \"min\": {min}, \"max\": {max}, \"default\": {default}}}"
        )
    };
    let fields = [
        field(
            "magic",
            offset_of!(Thermostat, magic),
            4,
            false,
            MAGIC as i64,
            MAGIC as i64,
            MAGIC as i64,
        ),
        field("min_temp", offset_of!(Thermostat, min_temp), 4, true, -40, 60, 16),
        field("max_temp", offset_of!(Thermostat, max_temp), 4, true, -40, 60, 24),
        field("target_temp", offset_of!(Thermostat, target_temp), 4, true, -40, 60, 21),
        field("fan_level", offset_of!(Thermostat, fan_level), 1, false, 0, 3, 1),
        field("heater_on", offset_of!(Thermostat, heater_on), 1, false, 0, 1, 0),
    ];
    format!(
        "{{\n  \"target\": \"healme\",\n  \"symbol\": \"HEALME_STATE\",\n  \"size\": {},\n  \"fields\": [\n{}\n  ],\n  \"le\": [[\"min_temp\", \"target_temp\"], [\"target_temp\", \"max_temp\"]]\n}}\n",
        size_of::<Thermostat>(),
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
