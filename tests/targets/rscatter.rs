//! An ordinary Rust program (plain `rustc -g`, no memzinc crate): a `Box`-linked list whose
//! nodes are scattered over the heap (allocated among other boxes, linked in shuffled order),
//! behind a static.
//!
//!   rscatter    prints "ready"
//!   stdin: status | order | quit
//!     status   the program's own check: the list holds 0..N-1 in order (OK / CORRUPT)
//!     order    "descents D": steps along the list to a lower address

use std::io::BufRead;

pub struct Node {
    pub value: u64,
    pub next: Option<Box<Node>>,
}

pub static mut LIST: Option<Box<Node>> = None;

const N: usize = 64;

fn main() {
    // Nodes among other allocations, so neighbours in the list are not neighbours in memory.
    let mut nodes: Vec<Option<Box<Node>>> = Vec::new();
    let mut others: Vec<Box<[u64; 2]>> = Vec::new();
    for i in 0..N {
        nodes.push(Some(Box::new(Node { value: 0, next: None })));
        others.push(Box::new([i as u64; 2]));
    }
    let mut order: Vec<usize> = (0..N).collect();
    let mut rng: u64 = 88172645463325252;
    for i in (1..N).rev() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        order.swap(i, (rng % (i as u64 + 1)) as usize);
    }
    let mut head: Option<Box<Node>> = None;
    for (position, &i) in order.iter().enumerate().rev() {
        let mut node = nodes[i].take().expect("each node once");
        node.value = position as u64;
        node.next = head;
        head = Some(node);
    }
    // SAFETY: single-threaded; the static is only touched from this thread.
    unsafe { *std::ptr::addr_of_mut!(LIST) = head };
    drop(nodes);
    println!("ready");
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        // SAFETY: as above.
        let list = unsafe { (*std::ptr::addr_of!(LIST)).as_deref() };
        match line.trim() {
            "status" => {
                let mut at = list;
                let mut i = 0;
                while let Some(n) = at {
                    if n.value != i {
                        break;
                    }
                    i += 1;
                    at = n.next.as_deref();
                }
                let ok = at.is_none() && i == N as u64 && others.len() == N;
                println!("{}", if ok { "OK" } else { "CORRUPT" });
            }
            "order" => {
                let mut descents = 0;
                let mut at = list;
                while let Some(n) = at {
                    if let Some(next) = n.next.as_deref() {
                        descents += usize::from((next as *const Node) < (n as *const Node));
                    }
                    at = n.next.as_deref();
                }
                println!("descents {descents}");
            }
            "quit" => return,
            _ => println!("unknown command"),
        }
    }
}
