//! An ordinary Rust program (plain `rustc -g`, no memzinc crate): a static holding a `Box`ed
//! pair of `Box`ed leaves. Commands on stdin corrupt it the way unsafe code does.
//!
//!   rboxes      prints "address <name> 0x..." lines, then "ready"
//!   stdin: status | null | lose | quit
//!     null   the pair's `left` Box := NULL (the leaf stays allocated, reached by nothing)
//!     lose   the pair's `left` leaf is freed and its Box := NULL

use std::io::BufRead;

#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Red = 1,
    Green = 2,
}

pub struct Leaf {
    pub readings: [u64; 9],
    pub kind: Kind,
    pub sealed: bool,
}

pub struct Pair {
    pub left: Box<Leaf>,
    pub right: Box<Leaf>,
}

pub static mut PAIR: Option<Box<Pair>> = None;

fn leaf(kind: Kind, first: u64) -> Box<Leaf> {
    Box::new(Leaf {
        readings: std::array::from_fn(|i| first + i as u64),
        kind,
        sealed: true,
    })
}

fn main() {
    // SAFETY: single-threaded; the statics are only touched from this thread.
    unsafe {
        *std::ptr::addr_of_mut!(PAIR) = Some(Box::new(Pair {
            left: leaf(Kind::Red, 100),
            right: leaf(Kind::Green, 200),
        }));
        let pair = (*std::ptr::addr_of!(PAIR)).as_deref().unwrap();
        println!("address pair {:#x}", pair as *const Pair as usize);
        println!("address left {:#x}", &*pair.left as *const Leaf as usize);
        println!("address right {:#x}", &*pair.right as *const Leaf as usize);
    }
    println!("ready");
    let left = || {
        // SAFETY: as above; the slot is the pair's first field, as DWARF lays it out.
        unsafe {
            let pair = (*std::ptr::addr_of_mut!(PAIR)).as_deref_mut().unwrap();
            std::ptr::addr_of_mut!(pair.left) as *mut usize
        }
    };
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        match line.trim() {
            // SAFETY (both): deliberate corruption through raw pointers, as a memory bug does.
            "null" => unsafe {
                left().write(0);
                println!("done");
            },
            "lose" => unsafe {
                drop(Box::from_raw(left().read() as *mut Leaf));
                left().write(0);
                println!("done");
            },
            "status" => {
                // SAFETY: reads the slot as an integer before trusting it.
                let ok = unsafe {
                    left().read() != 0 && (*std::ptr::addr_of!(PAIR)).as_deref().unwrap().left.readings[0] == 100
                };
                println!("{}", if ok { "OK" } else { "CORRUPT" });
            }
            "quit" => return,
            _ => println!("unknown command"),
        }
    }
}
