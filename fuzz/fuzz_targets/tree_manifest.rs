//! Arbitrary bytes as a process tree's `tree.json` (`checkpoint --tree`), through
//! `tree_members` (what `inspect DIR` and `restore DIR` read a tree with).
//!
//! Asserts: nothing panics, and an error is one line. (The scratch directory holds no core, so
//! no input can name a core that opens: every input ends in an error once it is understood.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use memzinc_fuzz::host::one_line;

fuzz_target!(|data: &[u8]| {
    let dir = std::path::PathBuf::from(format!("/dev/shm/memzinc-fuzz-{}-tree", std::process::id()));
    std::fs::create_dir_all(&dir).expect("the scratch directory");
    std::fs::write(dir.join(memzinc::checkpoint::TREE_FILE), data).expect("write tree.json");
    match memzinc::checkpoint::tree_members(&dir) {
        Err(e) => one_line(&e),
        Ok(members) => panic!("a tree without cores was read: {members:?}"),
    }
});
