//! An ordinary Rust program (plain `rustc -g`, no memzinc crate): a `Box`-linked list and a
//! binary search tree of `Option<Box<Tree>>` children whose nodes are scattered over the heap
//! (allocated among other boxes in shuffled order), each behind a static.
//!
//!   rscatter    prints "ready"
//!   stdin: status | order | quit
//!     status   the program's own check: the list holds 0..N-1 in order and the tree's in-order
//!              walk is 0..T-1 (OK / CORRUPT)
//!     order    "descents L T": steps along the list / the tree's preorder to a lower address
//!
//! The walks keep their stacks on the heap (a `Vec`), not in recursive frames, so no stale
//! stack word is left pointing at a node once a command is done.

use std::io::BufRead;

pub struct Node {
    pub value: u64,
    pub next: Option<Box<Node>>,
}

pub struct Tree {
    pub value: u64,
    pub left: Option<Box<Tree>>,
    pub right: Option<Box<Tree>>,
}

pub static mut LIST: Option<Box<Node>> = None;
pub static mut TREE: Option<Box<Tree>> = None;

const N: usize = 64;
/// A complete tree of depth 6.
const T: usize = 63;

struct Rng(u64);

impl Rng {
    fn shuffle<X>(&mut self, v: &mut [X]) {
        for i in (1..v.len()).rev() {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            v.swap(i, (self.0 % (i as u64 + 1)) as usize);
        }
    }
}

/// Puts `node` where a binary search tree keeps its value.
fn insert(root: &mut Option<Box<Tree>>, node: Box<Tree>) {
    let mut slot = root;
    while let Some(n) = slot {
        slot = if node.value < n.value { &mut n.left } else { &mut n.right };
    }
    *slot = Some(node);
}

/// The tree's values in order.
fn in_order(tree: Option<&Tree>) -> Vec<u64> {
    let (mut values, mut stack, mut at) = (Vec::new(), Vec::new(), tree);
    loop {
        while let Some(t) = at {
            stack.push(t);
            at = t.left.as_deref();
        }
        let Some(t) = stack.pop() else { return values };
        values.push(t.value);
        at = t.right.as_deref();
    }
}

/// Steps of the tree's preorder (node, left, right) to a lower address.
fn tree_descents(tree: Option<&Tree>) -> usize {
    let (mut descents, mut last, mut stack) = (0, 0usize, Vec::from_iter(tree));
    while let Some(t) = stack.pop() {
        let here = t as *const Tree as usize;
        descents += usize::from(here < last);
        last = here;
        stack.extend(t.right.as_deref());
        stack.extend(t.left.as_deref());
    }
    descents
}

fn main() {
    let mut rng = Rng(88172645463325252);
    // Nodes among other allocations, so neighbours in the list are not neighbours in memory.
    let mut nodes: Vec<Option<Box<Node>>> = Vec::new();
    let mut others: Vec<Box<[u64; 2]>> = Vec::new();
    for i in 0..N {
        nodes.push(Some(Box::new(Node { value: 0, next: None })));
        others.push(Box::new([i as u64; 2]));
    }
    let mut order: Vec<usize> = (0..N).collect();
    rng.shuffle(&mut order);
    let mut head: Option<Box<Node>> = None;
    for (position, &i) in order.iter().enumerate().rev() {
        let mut node = nodes[i].take().expect("each node once");
        node.value = position as u64;
        node.next = head;
        head = Some(node);
    }
    // SAFETY: single-threaded; the statics are only touched from this thread.
    unsafe { *std::ptr::addr_of_mut!(LIST) = head };
    drop(nodes);

    // The tree: its nodes allocated among other boxes, given their values in shuffled order,
    // then inserted middle first (breadth first over value ranges), so the tree is complete.
    let mut pool: Vec<Option<Box<Tree>>> = Vec::new();
    for i in 0..T {
        pool.push(Some(Box::new(Tree {
            value: 0,
            left: None,
            right: None,
        })));
        others.push(Box::new([i as u64; 2]));
    }
    rng.shuffle(&mut pool);
    let mut root: Option<Box<Tree>> = None;
    let mut ranges = std::collections::VecDeque::from([(0, T)]);
    while let Some((lo, hi)) = ranges.pop_front() {
        if lo >= hi {
            continue;
        }
        let mid = (lo + hi) / 2;
        let mut node = pool[mid].take().expect("each node once");
        node.value = mid as u64;
        insert(&mut root, node);
        ranges.push_back((lo, mid));
        ranges.push_back((mid + 1, hi));
    }
    // SAFETY: as above.
    unsafe { *std::ptr::addr_of_mut!(TREE) = root };
    drop(pool);

    println!("ready");
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        // SAFETY: as above.
        let (list, tree) = unsafe {
            (
                (*std::ptr::addr_of!(LIST)).as_deref(),
                (*std::ptr::addr_of!(TREE)).as_deref(),
            )
        };
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
                let list_ok = at.is_none() && i == N as u64;
                let tree_ok = in_order(tree).into_iter().eq(0..T as u64);
                let ok = list_ok && tree_ok && others.len() == N + T;
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
                println!("descents {descents} {}", tree_descents(tree));
            }
            "quit" => return,
            _ => println!("unknown command"),
        }
    }
}
