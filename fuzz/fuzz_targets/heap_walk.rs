//! Hostile heap bytes through the glibc chunk walker (`memzinc::reason::graph::walk_heap`): the
//! main heap, `main_arena` and `mp_`, a thread arena's heap and a thread's TLS block are all
//! fuzzer bytes laid out where glibc 2.36 on x86-64 keeps them, so sizes, flags, bin links,
//! safe-linked tcache and fast-bin lists, arena and heap_info chains are all attacker-chosen.
//!
//! Asserts: nothing panics or hangs (every loop is bounded by the bytes it walks); the chunks
//! are sorted, disjoint and inside the segments; every note and finding is one line; at most
//! 32 notes are kept; a pointer's landing agrees with the chunk list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memzinc::describe::{Image, Segment};
use memzinc::reason::graph::{walk_heap, GlibcDebug, Landing, MallocLayout, WalkInput};

const HEAP: u64 = 0x5555_5555_0000;
const LIBC: u64 = 0x7fff_f7e0_0000;
/// A thread heap: aligned to HEAP_MAX (64 MiB).
const THREAD_HEAP: u64 = 0x7fff_e400_0000;
const TLS: u64 = 0x7fff_f7f0_0000;

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (a, b) = data.split_at(n.min(data.len()));
    *data = b;
    a
}

fn padded(bytes: &[u8], len: usize) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(len, 0);
    v
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let layout = MallocLayout::GLIBC_2_36_X86_64;
    let heap_len = (take(&mut data, 1).first().copied().unwrap_or(1) as usize % 16 + 1) * 4096;
    let libc = take(&mut data, 4096);
    let tls = take(&mut data, 4096);
    let thread = take(&mut data, 8192);
    let heap = take(&mut data, heap_len);
    // main_arena at LIBC, mp_ after it; the thread arena inside its heap, after heap_info.
    let segments = vec![
        Segment::new(HEAP, padded(heap, heap_len), "rw-p", "[heap]"),
        Segment::new(LIBC, padded(libc, 4096), "rw-p", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
        Segment::new(TLS, padded(tls, 4096), "rw-p", ""),
        Segment::new(THREAD_HEAP, padded(thread, 8192), "rw-p", ""),
    ];
    let image = Image::from_segments(segments);
    let input = WalkInput {
        glibc: Some(GlibcDebug {
            layout,
            main_arena: LIBC,
            mp: LIBC + 2304,
            tcache_tls: Some(0x40),
            debug_file: "libc.debug".into(),
        }),
        degraded_why: None,
        thread_pointers: vec![TLS + 0x800],
        other: None,
    };
    let view = walk_heap(&image, &input);
    check(&image, &view);
    // And without libc's debug file (the degraded walk).
    let degraded = WalkInput {
        glibc: None,
        degraded_why: Some("no debug file".into()),
        ..input
    };
    let view = walk_heap(&image, &degraded);
    check(&image, &view);
});

fn check(image: &Image, view: &memzinc::reason::graph::HeapView) {
    let mut last_end = 0u64;
    for c in &view.chunks {
        assert!(c.address >= last_end, "chunks overlap or are unsorted");
        last_end = c.address + c.size;
        let seg = image.segment(c.address).expect("a chunk lies in a segment");
        assert!(c.address + c.size <= seg.end, "a chunk runs past its segment");
        assert!(matches!(view.landing(c.address), Landing::Chunk(x) if x == c));
    }
    assert!(view.notes.len() <= 32);
    for line in view.notes.iter().chain(view.corrupt.iter().map(|f| &f.detail)) {
        assert!(!line.contains('\n'), "a note spans lines: {line:?}");
    }
    let _ = view.summary();
}
