//! Incremental snapshots (issue 7 item 4): `memzinc track` write-protects a real process's
//! memory from inside it (userfaultfd, async write-protect), `snapshot --since PREV` reads only
//! the pages written since PREV and stores only those, referring to PREV for the rest, and the
//! result is the complete snapshot a full one gives — same root, same bytes — through the chain,
//! or as one file with `merge` or `--merged`. The target (`tests/targets/cdirty.c`, compiled here) writes known
//! pages on command and writes nothing between commands.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};

use memzinc::describe::Snapshot;
use memzinc_tests::{binary, repo_root, KillOnDrop};

fn build_cdirty(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("cdirty");
    let status = Command::new("gcc")
        .args(["-g", "-O1", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(repo_root().join("tests/targets/cdirty.c"))
        .status()
        .expect("gcc is installed (scripts/install-tools.sh apt)");
    assert!(status.success(), "gcc failed");
    out
}

/// Runs memzinc with its tracking state in `state`; returns (success, stdout, stderr).
fn memzinc(state: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary("memzinc"))
        .args(args)
        .env("MEMZINC_STATE_DIR", state)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn snapshot_json(state: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "snapshot"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = memzinc(state, &all);
    assert!(ok, "{stdout} {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

struct Dirty {
    _child: KillOnDrop,
    stdin: ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    pid: String,
    base: u64,
    pages: u64,
}

impl Dirty {
    fn start(program: &Path) -> Dirty {
        // Without rseq: the kernel writes a thread's rseq area (its current CPU) in the thread's
        // TLS whenever it resumes, e.g. after a snapshot thaws it, and the two snapshots this
        // test compares would then differ in that word by right.
        let mut child = Command::new(program)
            .arg("64")
            .env("GLIBC_TUNABLES", "glibc.pthread.rseq=0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.next().unwrap().unwrap();
        let mut words = ready.split_whitespace().skip(1);
        let base = u64::from_str_radix(words.next().unwrap().trim_start_matches("0x"), 16).unwrap();
        let pages = words.next().unwrap().parse().unwrap();
        let dirty = Dirty {
            pid: child.id().to_string(),
            _child: KillOnDrop(child),
            stdin,
            lines,
            base,
            pages,
        };
        dirty.wait_until_blocked_in_read();
        dirty
    }

    /// Waits until it sits in read(2) on stdin (syscall 0): from then on it writes nothing,
    /// whereas just after printing it still runs (and writes its stack).
    fn wait_until_blocked_in_read(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let syscall = std::fs::read_to_string(format!("/proc/{}/syscall", self.pid)).unwrap_or_default();
            if syscall.starts_with("0 0x0 ") {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "target not blocked in read: {syscall}"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Makes it map `k` new pages and write them; returns their address.
    fn map(&mut self, k: u64) -> u64 {
        writeln!(self.stdin, "map {k}").unwrap();
        self.stdin.flush().unwrap();
        let line = self.lines.next().unwrap().unwrap();
        let address = line.strip_prefix(&format!("mapped {k} 0x")).expect("mapped K ADDRESS");
        self.wait_until_blocked_in_read();
        u64::from_str_radix(address, 16).unwrap()
    }

    /// Makes it flip one byte in each of `k` pages; returns their page addresses.
    fn dirty(&mut self, k: u64, seed: u64) -> Vec<u64> {
        writeln!(self.stdin, "dirty {k} {seed}").unwrap();
        self.stdin.flush().unwrap();
        assert_eq!(self.lines.next().unwrap().unwrap(), format!("dirtied {k}"));
        self.wait_until_blocked_in_read();
        (0..k)
            .map(|i| (self.base + ((i * 7919 + seed) % self.pages) * 4096 + seed % 4096) & !4095)
            .collect()
    }
}

#[test]
fn snapshot_since_reads_only_written_pages_and_gives_the_full_root() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut target = Dirty::start(&build_cdirty(dir.path()));
    let pid = target.pid.clone();
    let core = |name: &str| dir.path().join(name).to_string_lossy().into_owned();

    // Not tracked yet: `--since` is refused in one line, and nothing is written.
    let s0 = core("s0.core");
    snapshot_json(&state, &["--pid", &pid, "-o", &s0]);
    let (ok, _, stderr) = memzinc(
        &state,
        &["snapshot", "--pid", &pid, "-o", &core("x.core"), "--since", &s0],
    );
    assert!(!ok && stderr.contains("not tracked"), "{stderr}");
    assert!(!Path::new(&core("x.core")).exists());

    let (ok, stdout, stderr) = memzinc(&state, &["--json", "track", "--pid", &pid]);
    assert!(ok, "{stdout} {stderr}");
    let tracked: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(tracked["tracked_bytes"].as_u64().unwrap() >= 64 << 20, "{tracked}");
    // The userfaultfd lives in the target.
    let fd = tracked["uffd"].as_i64().unwrap();
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
    assert!(link.to_string_lossy().contains("userfaultfd"), "{link:?}");

    // The base: a full snapshot after tracking began.
    let s1 = core("s1.core");
    let full1 = snapshot_json(&state, &["--pid", &pid, "-o", &s1]);
    let total_pages = full1["pages"].as_u64().unwrap();
    assert_eq!(full1["pages_from_target"], total_pages);

    let written = target.dirty(100, 7);
    let s2 = core("s2.core");
    let incremental = snapshot_json(&state, &["--pid", &pid, "-o", &s2, "--since", &s1]);
    let read = incremental["pages_from_target"].as_u64().unwrap();
    // The 100 pages, plus the few stdio and stack pages the target wrote to run the command.
    assert!((100..400).contains(&read), "read {read} of {total_pages} pages");
    assert_eq!(incremental["since"], full1["root"]);
    // So few pages are read during the freeze (a fork's pause grows with all the memory).
    assert!(incremental["copy_on_write_by"].is_null(), "{incremental}");
    // It refers to s1 (beside it, so by name) and stores only what it read: a small file.
    assert_eq!(incremental["parent"], "s1.core");
    let (size1, size2) = (file_len(&s1), file_len(&s2));
    assert!(size2 < size1 / 4, "incremental core {size2} bytes, full {size1}");
    println!("incremental core: {size2} bytes for {read} pages read; full core {size1} bytes");

    // Nothing ran in between: a full snapshot now has the same root.
    let s3 = core("s3.core");
    let full3 = snapshot_json(&state, &["--pid", &pid, "-o", &s3]);
    assert_same_root(&incremental, &full3, [&s1, &s2, &s3], target.base);
    assert_ne!(incremental["root"], full1["root"]);

    // The incremental core is complete and self-consistent: every page matches its leaf, the
    // written pages differ from s1 and the two cores hold the same bytes.
    let (snap1, snap2, snap3) = (
        Snapshot::open(Path::new(&s1)).unwrap(),
        Snapshot::open(Path::new(&s2)).unwrap(),
        Snapshot::open(Path::new(&s3)).unwrap(),
    );
    snap2.verify_pages().unwrap();
    assert_eq!(
        snap2.parent().map(|p| p.path.clone()),
        Some(Path::new(&s1).to_path_buf())
    );
    assert_eq!(snap2.stored_pages(), read);
    assert_eq!(snap2.leaves, snap3.leaves);
    let changed = snap2.changed_pages(&snap1);
    for page in &written {
        assert!(changed.contains(page), "{page:#x} written but not changed");
    }
    assert_eq!(
        snap2.read(written[0], 4096).unwrap(),
        snap3.read(written[0], 4096).unwrap()
    );

    // s1 is no longer the latest snapshot (s3 is): `--since s1` would miss writes, so it is refused.
    let (ok, _, stderr) = memzinc(
        &state,
        &["snapshot", "--pid", &pid, "-o", &core("y.core"), "--since", &s1],
    );
    assert!(!ok && stderr.contains("not its latest"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    // `merge` writes s2's full core: no parent, every page checked, the full snapshot's root
    // and leaves; the pages at s3's offsets hold s3's bytes.
    let m2 = core("m2.core");
    let (ok, stdout, stderr) = memzinc(&state, &["--json", "merge", &s2, "-o", &m2]);
    assert!(ok, "{stdout} {stderr}");
    let merged: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(merged["root"], full3["root"]);
    assert_eq!(merged["from_parents"], total_pages - read);
    let snap_m2 = Snapshot::open(Path::new(&m2)).unwrap();
    assert!(snap_m2.parent().is_none());
    snap_m2.verify_pages().unwrap();
    assert_eq!(snap_m2.leaves, snap3.leaves);
    assert_eq!(file_len(&m2), file_len(&s3));
    let checked = compare_page_data(&snap_m2, &snap3);
    println!("merged core: {checked} pages byte-identical to the full snapshot's");
    assert_eq!(checked, total_pages);

    // And the chain goes on: since s3, another round of writes, enough that they are read from
    // a fork; then since that incremental one (a chain of two), and one with --merged from the
    // chain.
    let written = target.dirty(1000, 99);
    let s4 = core("s4.core");
    let incremental = snapshot_json(&state, &["--pid", &pid, "-o", &s4, "--since", &s3]);
    assert_eq!(incremental["copy_on_write_by"], "fork", "{incremental}");
    let s5 = core("s5.core");
    let full5 = snapshot_json(&state, &["--pid", &pid, "-o", &s5]);
    assert_same_root(&incremental, &full5, [&s3, &s4, &s5], target.base);
    let snap4 = Snapshot::open(Path::new(&s4)).unwrap();
    let changed = snap4.changed_pages(&snap3);
    assert!(written.iter().all(|p| changed.contains(p)), "{changed:x?}");

    // A mapping that was not there at s5, below the heap: the leaves of every mapping after
    // it move, so s6 copies them from s5's to their new places instead of taking s5's over
    // in place (as the other incremental snapshots here do); the chain's roots below check them.
    let mapped = target.map(64);
    assert!(
        mapped < target.base,
        "mapped at {mapped:#x}, the heap at {:#x}",
        target.base
    );
    let written = target.dirty(20, 5);
    let s6 = core("s6.core");
    let second = snapshot_json(&state, &["--pid", &pid, "-o", &s6, "--since", &s5]);
    assert_eq!(second["pages"], full5["pages"].as_u64().unwrap() + 64, "{second}");
    target.dirty(30, 11);
    let s7 = core("s7.core");
    let third = snapshot_json(&state, &["--pid", &pid, "-o", &s7, "--since", &s6]);
    assert_eq!(third["parent"], "s6.core");
    // s7, the latest, refers to s6, which refers to s5: a snapshot since s7 may not be written
    // over s5 (s7's pages there would be lost, and the chain would lead back to itself), with
    // or without --merged; refused before the target is touched, so the chain goes on.
    let root5 = Snapshot::open(Path::new(&s5)).unwrap().meta.root;
    for merged in [&[][..], &["--merged"][..]] {
        let mut args = vec!["snapshot", "--pid", &pid, "-o", &s5, "--since", &s7];
        args.extend_from_slice(merged);
        let (ok, _, stderr) = memzinc(&state, &args);
        assert!(!ok && stderr.contains("would replace"), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    assert_eq!(Snapshot::open(Path::new(&s5)).unwrap().meta.root, root5);
    target.dirty(5, 3);
    let s8 = core("s8.core");
    let copied = snapshot_json(&state, &["--pid", &pid, "-o", &s8, "--since", &s7, "--merged"]);
    assert!(copied["parent"].is_null(), "{copied}");
    let s9 = core("s9.core");
    let full9 = snapshot_json(&state, &["--pid", &pid, "-o", &s9]);
    assert_same_root(&copied, &full9, [&s7, &s8, &s9], target.base);
    let (snap7, snap8) = (
        Snapshot::open(Path::new(&s7)).unwrap(),
        Snapshot::open(Path::new(&s8)).unwrap(),
    );
    // Not written over the file it would refer to: refused, and that file is intact.
    let (ok, _, stderr) = memzinc(&state, &["snapshot", "--pid", &pid, "-o", &s9, "--since", &s9]);
    assert!(!ok && stderr.contains("would replace"), "{stderr}");
    assert_eq!(
        Snapshot::open(Path::new(&s9)).unwrap().meta.root,
        full9["root"].as_str().unwrap()
    );
    // The latest snapshot with one leaf changed and its notes sealed again: it still names the
    // recorded root, but its seal is not the recorded one, so its leaves are hashed again and
    // it is refused (taken on trust, the new snapshot would carry the forged leaf).
    let forged = core("forged.core");
    std::fs::copy(&s9, &forged).unwrap();
    forge_a_leaf(Path::new(&forged));
    let (ok, _, stderr) = memzinc(
        &state,
        &["snapshot", "--pid", &pid, "-o", &core("z.core"), "--since", &forged],
    );
    assert!(!ok && stderr.contains("do not hash to the recorded root"), "{stderr}");
    assert!(!Path::new(&core("z.core")).exists());
    assert_eq!(
        snap7.parent().and_then(|p| p.parent()).map(|p| p.path.clone()),
        Some(s5.clone().into())
    );
    // s5 holds pages of s7 two steps down its chain: a merge of s7 may not be written over it
    // either (it would lose them), and s5 is intact after the try.
    let (ok, _, stderr) = memzinc(&state, &["merge", &s7, "-o", &s5]);
    assert!(!ok && stderr.contains("would replace"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(Snapshot::open(Path::new(&s5)).unwrap().meta.root, root5);
    snap7.verify_pages().unwrap();
    assert!(snap8.parent().is_none());
    assert_eq!(
        compare_page_data(&snap8, &Snapshot::open(Path::new(&s9)).unwrap()),
        full9["pages"].as_u64().unwrap()
    );
    let changed = snap7.changed_pages(&snap4);
    assert!(written.iter().all(|p| changed.contains(p)), "{changed:x?}");
    assert_ne!(second["root"], third["root"]);

    // A reader that needs one file refuses an incremental core, saying how to get one.
    let (ok, _, stderr) = memzinc(&state, &["export", &s7, "--parquet", &core("tables")]);
    assert!(!ok && stderr.contains("memzinc merge"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let (ok, stdout, stderr) = memzinc(&state, &["inspect", &s7]);
    assert!(
        ok && stdout.contains("incremental:") && stdout.contains("s6.core"),
        "{stdout} {stderr}"
    );

    // Its parent gone or replaced: refused in one line, never read from the wrong file.
    std::fs::rename(&s6, core("moved.core")).unwrap();
    let (ok, _, stderr) = memzinc(&state, &["inspect", &s7]);
    assert!(
        !ok && stderr.contains("s6.core") && stderr.contains("not there"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    std::fs::copy(&s5, &s6).unwrap();
    let (ok, _, stderr) = memzinc(&state, &["inspect", &s7]);
    assert!(!ok && stderr.contains("not the recorded"), "{stderr}");
    assert!(Snapshot::open(Path::new(&s7)).is_err());

    // Tracking again is a no-op.
    let (ok, stdout, _) = memzinc(&state, &["--json", "track", "--pid", &pid]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["already"],
        true
    );
}

/// Flips a byte of the first leaf in the core at `path` and seals its notes again (the seal is
/// the last 32 bytes of the file: `seal_of` every note byte before the seal note).
fn forge_a_leaf(path: &Path) {
    let snap = Snapshot::open(path).unwrap();
    let notes = snap.raw_notes().unwrap();
    let note_len = |owner: &str, desc: usize| 12 + (owner.len() + 1).next_multiple_of(4) + desc.next_multiple_of(4);
    let total: usize = notes.iter().map(|(o, _, d)| note_len(o, d.len())).sum();
    let leaves = &notes
        .iter()
        .find(|(o, t, _)| o == memzinc::describe::NOTE_OWNER && *t == memzinc::describe::NT_MEMZINC_LEAVES)
        .unwrap()
        .2;
    let mut bytes = std::fs::read(path).unwrap();
    let notes_at = bytes.len() - total;
    let at = notes_at + bytes[notes_at..].windows(64).position(|w| w == &leaves[..64]).unwrap();
    bytes[at] ^= 1;
    let seal_at = bytes.len() - 32;
    let seal = memzinc::describe::seal_of(&bytes[notes_at..seal_at - 20]);
    bytes[seal_at..].copy_from_slice(&seal);
    std::fs::write(path, bytes).unwrap();
    // Sealed again: it opens past the seal, and only its root gives it away.
    let err = Snapshot::open(path).err().unwrap().to_string();
    assert!(err.contains("do not hash to the recorded root"), "{err}");
}

/// A core's seal is BLAKE3 (`seal_of`); cores sealed the way memzinc sealed them before, with
/// SHA-256 under the tag `memzinc/core-notes/v1`, are still read. Either way a seal that does
/// not match the notes is refused.
#[test]
fn cores_sealed_with_the_older_sha256_seal_still_open() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let target = Dirty::start(&build_cdirty(dir.path()));
    let path = dir.path().join("s.core");
    let taken = snapshot_json(&state, &["--pid", &target.pid, "-o", path.to_str().unwrap()]);

    let notes = Snapshot::open(&path).unwrap().raw_notes().unwrap();
    let note_len = |owner: &str, desc: usize| 12 + (owner.len() + 1).next_multiple_of(4) + desc.next_multiple_of(4);
    let total: usize = notes.iter().map(|(o, _, d)| note_len(o, d.len())).sum();
    let mut bytes = std::fs::read(&path).unwrap();
    let (notes_at, seal_at) = (bytes.len() - total, bytes.len() - 32);
    let sealed = notes_at..seal_at - 20;
    assert_eq!(bytes[seal_at..], memzinc::describe::seal_of(&bytes[sealed.clone()]));

    let legacy = sha2::Sha256::new()
        .chain_update(b"memzinc/core-notes/v1")
        .chain_update(&bytes[sealed])
        .finalize();
    bytes[seal_at..].copy_from_slice(&legacy);
    std::fs::write(&path, &bytes).unwrap();
    let opened = Snapshot::open(&path).unwrap();
    assert_eq!(opened.meta.root, taken["root"].as_str().unwrap());
    let (ok, stdout, stderr) = memzinc(&state, &["inspect", path.to_str().unwrap()]);
    assert!(ok, "{stdout} {stderr}");

    bytes[seal_at] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = Snapshot::open(&path).err().unwrap().to_string();
    assert!(err.contains("notes do not match their seal"), "{err}");
}

fn file_len(path: &str) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Compares every captured page of two snapshots with the same regions, as stored; returns how
/// many were compared (all of them equal, or it panics).
fn compare_page_data(a: &Snapshot, b: &Snapshot) -> u64 {
    let mut pages = 0;
    for r in a.meta.regions.iter().filter(|r| r.captured) {
        let theirs = b
            .region_of(r.map.start, r.map.end - r.map.start)
            .expect("the same regions");
        for address in (r.map.start..r.map.end).step_by(4096) {
            assert_eq!(
                a.stored_page(r, address).unwrap(),
                b.stored_page(theirs, address).unwrap(),
                "page {address:#x}"
            );
            pages += 1;
        }
    }
    pages
}

/// The incremental snapshot's root equals the full one's; if not, says which pages differ and
/// how (cores: the previous, the incremental, the full).
fn assert_same_root(incremental: &serde_json::Value, full: &serde_json::Value, cores: [&str; 3], base: u64) {
    if incremental["root"] == full["root"] {
        return;
    }
    let [s1, s2, s3] = cores.map(|c| Snapshot::open(Path::new(c)).unwrap());
    let where_: Vec<String> = s3
        .changed_pages(&s2)
        .iter()
        .map(|&p| {
            let r = s3
                .region_of(p, 1)
                .map(|r| format!("{:#x}-{:#x} {} {}", r.map.start, r.map.end, r.map.perms, r.map.path));
            let (b1, b2, b3) = (s1.read(p, 4096).ok(), s2.read(p, 4096).ok(), s3.read(p, 4096).ok());
            let first_diff = |a: &Option<Vec<u8>>, b: &Option<Vec<u8>>| {
                a.as_ref().zip(b.as_ref()).and_then(|(a, b)| a.iter().zip(b).position(|(x, y)| x != y))
            };
            format!(
                "{p:#x} in {r:?} (base {base:#x}): prev==incremental {} first diff incremental/full at {:?}, prev/full at {:?}",
                b1 == b2,
                first_diff(&b2, &b3),
                first_diff(&b1, &b3)
            )
        })
        .collect();
    panic!(
        "incremental root {} != full root {}: {where_:#?}",
        incremental["root"], full["root"]
    );
}
