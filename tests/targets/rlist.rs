//! An ordinary Rust program (plain `rustc -g`, no memzinc crate): a `#[no_mangle] static mut`
//! repr(C) struct with a count/capacity pair and a `#[repr(u8)]` enum, and an inventory static
//! holding a `Box`-linked list and a `Vec` of structs on the heap. SIGUSR1 plants corruptions
//! the way bugs do; `status` on stdin runs the program's own check (OK / CORRUPT ...).
//!
//!   rlist       prints "address <name> 0x..." lines, then "ready"
//!   stdin: status | quit

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};

#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Idle = 0,
    Running = 1,
    Draining = 2,
}

#[repr(C)]
pub struct Stats {
    pub count: u32,
    pub capacity: u32,
    pub mode: Mode,
}

pub struct Node {
    pub value: u64,
    pub next: Option<Box<Node>>,
}

pub struct Item {
    pub id: u32,
    pub mode: Mode,
}

pub struct Inventory {
    pub head: Option<Box<Node>>,
    pub items: Vec<Item>,
}

#[no_mangle]
pub static mut STATS: Stats = Stats {
    count: 3,
    capacity: 8,
    mode: Mode::Running,
};

pub static mut INVENTORY: Inventory = Inventory {
    head: None,
    items: Vec::new(),
};

static CORRUPT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: i32) {
    CORRUPT.store(true, Ordering::SeqCst);
}

extern "C" {
    fn signal(sig: i32, handler: extern "C" fn(i32)) -> usize;
}

const SIGUSR1: i32 = 10;
const NODES: u64 = 6;

/// The nodes in list order, by address (the program's own record, as integers).
fn node_addresses() -> Vec<usize> {
    let mut out = Vec::new();
    // SAFETY: single-threaded; the signal handler only sets a flag.
    let mut p = unsafe { (*std::ptr::addr_of!(INVENTORY)).head.as_deref() };
    while let Some(n) = p {
        out.push(n as *const Node as usize);
        if out.len() as u64 >= NODES {
            break;
        }
        p = n.next.as_deref();
    }
    out
}

fn main() {
    // SAFETY: single-threaded set-up before the signal handler is installed.
    unsafe {
        let inv = &mut *std::ptr::addr_of_mut!(INVENTORY);
        for v in (0..NODES).rev() {
            inv.head = Some(Box::new(Node {
                value: v,
                next: inv.head.take(),
            }));
        }
        for id in 0..4 {
            inv.items.push(Item { id, mode: Mode::Idle });
        }
        signal(SIGUSR1, on_usr1);
    }
    let nodes = node_addresses();
    for (i, a) in nodes.iter().enumerate() {
        println!("address node{i} {a:#x}");
    }
    // SAFETY: reading the address of a static.
    println!("address STATS {:#x}", unsafe { std::ptr::addr_of!(STATS) } as usize);
    println!("ready");
    let stdin = std::io::stdin();
    let mut planted = false;
    for line in stdin.lock().lines().map_while(Result::ok) {
        if CORRUPT.load(Ordering::SeqCst) && !planted {
            planted = true;
            // SAFETY: deliberate corruption through raw pointers, as a memory bug would do it.
            unsafe {
                let stats = std::ptr::addr_of_mut!(STATS) as *mut u8;
                (stats as *mut u32).write(9); // count > capacity
                stats.add(8).write(7); // no Mode has 7
                let item = (*std::ptr::addr_of!(INVENTORY)).items.as_ptr() as *mut u8;
                item.add(std::mem::size_of::<Item>() * 2 + 4).write(5); // items[2].mode
                let third = nodes[2] as *mut Node;
                // Node 2's `next` (an Option<Box<Node>>): an unmapped address.
                (std::ptr::addr_of_mut!((*third).next) as *mut usize).write(0xdead_0000);
            }
        }
        match line.trim() {
            "status" => println!("{}", status(&nodes)),
            "planted" => println!("{}", if planted { "planted" } else { "not yet" }),
            "quit" => return,
            _ => println!("unknown command"),
        }
    }
}

/// The program's own check, never following a pointer it did not allocate.
fn status(nodes: &[usize]) -> String {
    // SAFETY: single-threaded reads of the statics; list pointers are compared with the
    // recorded addresses before they are followed.
    unsafe {
        let stats = &*std::ptr::addr_of!(STATS);
        let raw_mode = *(std::ptr::addr_of!(stats.mode) as *const u8);
        if stats.count > stats.capacity || raw_mode > 2 {
            return "CORRUPT stats".into();
        }
        let inv = &*std::ptr::addr_of!(INVENTORY);
        for item in inv.items.iter() {
            if *(std::ptr::addr_of!(item.mode) as *const u8) > 2 {
                return "CORRUPT items".into();
            }
        }
        let mut p = inv.head.as_deref().map(|n| n as *const Node as usize);
        for (i, &want) in nodes.iter().enumerate() {
            if p != Some(want) {
                return format!("CORRUPT list at {i}");
            }
            let n = &*(want as *const Node);
            let next = *(std::ptr::addr_of!(n.next) as *const usize);
            p = (next != 0).then_some(next);
        }
        if p.is_some() {
            return "CORRUPT list tail".into();
        }
        "OK".into()
    }
}
