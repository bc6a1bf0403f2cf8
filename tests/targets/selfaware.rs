//! selfaware: a program that snapshots and describes itself in-process with
//! `memzinc::selfsnap`. It registers its state with `memzinc-describe`, starts a second thread,
//! sets known values, writes its own core to the path given as the first argument, prints the
//! report and the values it held, then changes its state (showing it carried on).
//!
//! `selfaware CORE`; output lines: `values generation=G pid=P`, `report {json}`, `after G+1`.

use std::ptr::{addr_of, addr_of_mut};
use std::sync::atomic::{AtomicBool, Ordering};

use memzinc_describe::Describe;

#[derive(Describe)]
#[repr(C)]
pub struct SelfState {
    pub magic: u32,
    pub generation: u32,
    pub pid: i32,
    pub snapshots: u8,
}

#[no_mangle]
pub static mut SELFAWARE_STATE: SelfState = SelfState {
    magic: 0x5E1F_A3A4,
    generation: 0,
    pid: 0,
    snapshots: 0,
};

static STOP: AtomicBool = AtomicBool::new(false);

fn main() {
    if let Some(out) = memzinc::describe::helper_request() {
        match memzinc::describe::serve_helper(&out, &mut std::io::stdout()) {
            Ok(()) => return,
            Err(e) => {
                eprintln!("selfaware helper: {e}");
                std::process::exit(1);
            }
        }
    }
    let Some(core) = std::env::args().nth(1) else {
        eprintln!("usage: selfaware CORE");
        std::process::exit(2);
    };
    if let Err(e) = memzinc_describe::register("SELFAWARE_STATE", addr_of!(SELFAWARE_STATE)) {
        eprintln!("selfaware: {e}");
    }
    let pid = std::process::id() as i32;
    // A value the test cannot guess: it must come from the core.
    let generation = (pid as u32).wrapping_mul(2_654_435_761) >> 8;
    // SAFETY: plain-data static written before the worker thread starts; volatile so the
    // values are in memory when the snapshot copies it.
    unsafe {
        let s = addr_of_mut!(SELFAWARE_STATE);
        addr_of_mut!((*s).generation).write_volatile(generation);
        addr_of_mut!((*s).pid).write_volatile(pid);
        addr_of_mut!((*s).snapshots).write_volatile(1);
    }
    // The worker names itself when it starts: wait for that, so the core shows its name.
    let (started_tx, started) = std::sync::mpsc::channel();
    let worker = std::thread::Builder::new()
        .name("selfaware-work".into())
        .spawn(move || {
            let _ = started_tx.send(());
            while !STOP.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
        .expect("spawn worker");
    let _ = started.recv();
    println!("values generation={generation} pid={pid}");
    match memzinc::describe::snapshot_self(std::path::Path::new(&core)) {
        Ok(report) => println!("report {}", serde_json::to_string(&report).unwrap_or_default()),
        Err(e) => {
            eprintln!("selfaware: {e}");
            std::process::exit(1);
        }
    }
    // SAFETY: as above; the worker never touches the static.
    unsafe {
        let s = addr_of_mut!(SELFAWARE_STATE);
        addr_of_mut!((*s).generation).write_volatile(generation + 1);
    }
    STOP.store(true, Ordering::Relaxed);
    let _ = worker.join();
    println!("after {}", generation + 1);
}
