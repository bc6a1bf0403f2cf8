//! Stage 1 (introspect): the function and data symbols of a live process — the main binary and
//! every mapped shared object — at their runtime addresses.
//!
//! Each ELF file mapped into the process is one [`Module`]. Its symbols come from `.symtab` and
//! `.dynsym` (deduplicated), shifted by the module's load bias: the start of the file's
//! offset-0 mapping minus its first `PT_LOAD` address rounded down to a page (0 for an
//! `ET_EXEC` binary, which is loaded where it was linked). The main binary is read through
//! `/proc/PID/exe` and libraries through `/proc/PID/map_files/START-END` (the very file the
//! kernel mapped, even if it was replaced or deleted since), falling back to the path.
//! Names are kept as in the table and also demangled (Rust legacy and v0, C++ Itanium).

use std::io::Read;

use object::{Object, ObjectKind, ObjectSegment, ObjectSymbol};
use serde::{Deserialize, Serialize};

use super::process::{self, MapEntry, PAGE_SIZE};
use crate::base::{Error, Result};

/// Whether a symbol names code or data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SymbolKind {
    Function,
    Object,
    /// A snapshot's symbol whose kind the core does not say.
    Unknown,
}

impl SymbolKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SymbolKind::Function => "function",
            SymbolKind::Object => "object",
            SymbolKind::Unknown => "unknown",
        }
    }
}

/// A named function or data object of some module, at its runtime address. A snapshot records
/// name, address, size and kind; `demangled` and `module` are what reading a live process adds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Symbol {
    /// The name as stored in the symbol table (mangled, if it was).
    pub name: String,
    /// The demangled name, when `name` is a Rust or C++ mangled name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demangled: Option<String>,
    pub address: u64,
    pub size: u64,
    pub kind: SymbolKind,
    /// Path of the module that defines it, as /proc/PID/maps shows it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub module: String,
}

impl Symbol {
    /// Whether `name` is this symbol's table name or its demangled name.
    pub fn is_named(&self, name: &str) -> bool {
        self.name == name || self.demangled.as_deref() == Some(name)
    }
    /// Whether `address` lies inside the symbol (or is its address, for a zero-size symbol).
    pub fn contains(&self, address: u64) -> bool {
        address == self.address || (address > self.address && address - self.address < self.size)
    }
}

/// One ELF file mapped into the process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    pub path: String,
    /// Lowest and highest address of its mappings.
    pub start: u64,
    pub end: u64,
    /// Runtime address minus link-time address.
    pub bias: u64,
    /// The process's main binary (/proc/PID/exe).
    pub main: bool,
}

/// A mapped file that looked like a module but whose symbols could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedModule {
    pub path: String,
    pub why: String,
}

/// Every module's symbols. `symbols` is sorted by address, then name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProcessSymbols {
    pub modules: Vec<Module>,
    pub symbols: Vec<Symbol>,
    pub skipped: Vec<SkippedModule>,
}

impl ProcessSymbols {
    /// The symbol called `name` (table or demangled name), preferring the main binary's, then
    /// the first module in map order that defines it (the dynamic linker's search order for a
    /// process without preloads).
    pub fn lookup(&self, name: &str) -> Option<&Symbol> {
        let rank = |s: &Symbol| {
            self.modules
                .iter()
                .position(|m| m.path == s.module)
                .map(|i| (!self.modules[i].main, i))
                .unwrap_or((true, usize::MAX))
        };
        self.symbols.iter().filter(|s| s.is_named(name)).min_by_key(|s| rank(s))
    }

    /// Every symbol called `name`, in address order.
    pub fn all_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Symbol> + 'a {
        self.symbols.iter().filter(move |s| s.is_named(name))
    }

    /// The symbol whose extent holds `address`: the one starting closest below it.
    pub fn symbol_at(&self, address: u64) -> Option<&Symbol> {
        let end = self.symbols.partition_point(|s| s.address <= address);
        self.symbols[..end].iter().rev().find(|s| s.contains(address))
    }

    /// The module whose mappings span `address`.
    pub fn module_of(&self, address: u64) -> Option<&Module> {
        self.modules.iter().find(|m| m.start <= address && address < m.end)
    }

    pub fn main_module(&self) -> Option<&Module> {
        self.modules.iter().find(|m| m.main)
    }
}

/// Demangles a Rust (legacy or v0) or C++ (Itanium) symbol name; `None` for a plain name.
pub fn demangle(name: &str) -> Option<String> {
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        // `{:#}` leaves out the legacy hash suffix.
        return Some(format!("{d:#}"));
    }
    if name.starts_with("_Z") {
        return cpp_demangle::Symbol::new(name).ok()?.demangle().ok();
    }
    None
}

/// The load bias of an ELF image whose offset-0 mapping starts at `mapped_start`.
pub fn load_bias(file: &object::File<'_>, mapped_start: u64) -> u64 {
    if file.kind() == ObjectKind::Executable {
        return 0;
    }
    let first_vaddr = file.segments().map(|s| s.address()).min().unwrap_or(0) & !(PAGE_SIZE - 1);
    mapped_start.wrapping_sub(first_vaddr)
}

/// The function and object symbols an ELF image defines, from `.symtab` and `.dynsym`, shifted
/// by `bias` and deduplicated (one per name and address; the larger size wins).
pub fn elf_symbols(file: &object::File<'_>, module: &str, bias: u64) -> Vec<Symbol> {
    let mut symbols: Vec<Symbol> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.section_index().is_some())
        .filter_map(|s| {
            let kind = match s.kind() {
                object::SymbolKind::Text => SymbolKind::Function,
                object::SymbolKind::Data => SymbolKind::Object,
                _ => return None,
            };
            let name = s.name().ok().filter(|n| !n.is_empty())?;
            Some(Symbol {
                name: name.to_string(),
                demangled: demangle(name),
                address: s.address().wrapping_add(bias),
                size: s.size(),
                kind,
                module: module.to_string(),
            })
        })
        .collect();
    symbols.sort_by(|a, b| (a.address, &a.name, b.size).cmp(&(b.address, &b.name, a.size)));
    symbols.dedup_by(|later, first| later.address == first.address && later.name == first.name);
    symbols
}

/// The symbols of every ELF module mapped into `pid`, reading its current map.
pub fn read_process_symbols(pid: i32) -> Result<ProcessSymbols> {
    let maps = process::read_maps(pid)?;
    read_process_symbols_with_maps(pid, &maps)
}

/// Like [`read_process_symbols`] with a map the caller already read (a frozen process's).
/// A mapped file that is not ELF is ignored; an ELF file that cannot be read or parsed is
/// listed in `skipped` with the reason.
pub fn read_process_symbols_with_maps(pid: i32, maps: &[MapEntry]) -> Result<ProcessSymbols> {
    let exe = process::exe_path(pid)?.display().to_string();
    let mut out = ProcessSymbols::default();
    for (path, group) in file_mappings(maps) {
        let Some(first) = group.iter().find(|m| m.offset == 0) else {
            // Only a data file mapped from the middle, or an ELF file mapped oddly.
            continue;
        };
        let main = path == exe;
        let source = if main {
            format!("/proc/{pid}/exe")
        } else {
            format!("/proc/{pid}/map_files/{:x}-{:x}", first.start, first.end)
        };
        let data = match read_if_elf(&source).or_else(|e| if main { Err(e) } else { read_if_elf(&path) }) {
            Ok(Some(data)) => data,
            Ok(None) => continue,
            Err(e) if main => return Err(e),
            Err(e) => {
                out.skipped.push(SkippedModule {
                    path,
                    why: e.to_string(),
                });
                continue;
            }
        };
        let file = match object::File::parse(&*data) {
            Ok(file) if matches!(file.kind(), ObjectKind::Executable | ObjectKind::Dynamic) => file,
            Ok(file) => {
                out.skipped.push(SkippedModule {
                    path,
                    why: format!("ELF of kind {:?}, not a loaded image", file.kind()),
                });
                continue;
            }
            Err(e) if main => {
                return Err(Error::Corrupt {
                    path: path.into(),
                    kind: "ELF executable",
                    why: e.to_string(),
                })
            }
            Err(e) => {
                out.skipped.push(SkippedModule {
                    path,
                    why: e.to_string(),
                });
                continue;
            }
        };
        let bias = load_bias(&file, first.start);
        out.symbols.extend(elf_symbols(&file, &path, bias));
        out.modules.push(Module {
            start: group.iter().map(|m| m.start).min().unwrap_or(first.start),
            end: group.iter().map(|m| m.end).max().unwrap_or(first.end),
            path,
            bias,
            main,
        });
    }
    out.symbols
        .sort_by(|a, b| (a.address, &a.name, &a.module).cmp(&(b.address, &b.name, &b.module)));
    Ok(out)
}

/// The symbols a snapshot records: every module's name, address, size and kind (its module is
/// known from the snapshot's map; the demangled name is not kept), sorted by address (a name
/// several modules define is found first in the lowest-mapped one, normally the main binary).
/// Fails only if the main binary cannot be read.
pub fn snapshot_symbols(pid: i32, maps: &[MapEntry]) -> Result<Vec<Symbol>> {
    let all = read_process_symbols_with_maps(pid, maps)?;
    let mut out: Vec<Symbol> = all
        .symbols
        .into_iter()
        .map(|s| Symbol {
            demangled: None,
            module: String::new(),
            ..s
        })
        .collect();
    out.dedup();
    Ok(out)
}

/// File-backed mappings grouped per file, in map order of each file's first mapping.
fn file_mappings(maps: &[MapEntry]) -> Vec<(String, Vec<&MapEntry>)> {
    let mut groups: Vec<(String, Vec<&MapEntry>)> = Vec::new();
    for m in maps.iter().filter(|m| m.path.starts_with('/') && m.inode != 0) {
        match groups.iter_mut().find(|(p, _)| *p == m.path) {
            Some((_, g)) => g.push(m),
            None => groups.push((m.path.clone(), vec![m])),
        }
    }
    groups
}

/// The whole file if it starts with the ELF magic, `None` if it does not (a locale archive, a
/// font): its first bytes are checked before anything large is read.
fn read_if_elf(path: &str) -> Result<Option<Vec<u8>>> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 4];
    if file.read_exact(&mut magic).is_err() || &magic != b"\x7fELF" {
        return Ok(None);
    }
    let mut data = magic.to_vec();
    file.read_to_end(&mut data).map_err(|e| Error::io(path, e))?;
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_rust_and_cpp_and_leaves_plain_names() {
        assert_eq!(
            demangle("_ZN6healme4main17h0123456789abcdefE").as_deref(),
            Some("healme::main")
        );
        assert_eq!(demangle("_RNvCs1234_6healme4main").as_deref(), Some("healme::main"));
        assert_eq!(demangle("_ZN3foo3barEv").as_deref(), Some("foo::bar()"));
        assert_eq!(
            demangle("_ZNSt6vectorIiSaIiEE9push_backERKi").as_deref(),
            Some("std::vector<int, std::allocator<int> >::push_back(int const&)")
        );
        assert_eq!(demangle("malloc"), None);
        assert_eq!(demangle("HEALME_STATE"), None);
        assert_eq!(demangle("_Zgarbage"), None);
    }

    #[test]
    fn own_process_symbols_resolve_to_our_own_addresses() {
        #[no_mangle]
        #[used]
        static MEMZINC_SYMBOLS_SELFTEST: [u64; 3] = [1, 2, 3];
        let pid = std::process::id() as i32;
        let syms = read_process_symbols(pid).unwrap();
        let me = syms.lookup("MEMZINC_SYMBOLS_SELFTEST").expect("our own static");
        assert_eq!(me.address, MEMZINC_SYMBOLS_SELFTEST.as_ptr() as u64);
        assert_eq!((me.size, me.kind), (24, SymbolKind::Object));
        assert!(syms.main_module().unwrap().path == me.module);
        assert_eq!(syms.symbol_at(me.address + 23).unwrap().name, me.name);
        // A libc function resolves inside a libc mapping.
        let getpid = syms.lookup("getpid").expect("getpid in libc");
        assert!(getpid.module.contains("libc"), "{}", getpid.module);
        assert_eq!(getpid.kind, SymbolKind::Function);
        assert!(syms.module_of(getpid.address).unwrap().path.contains("libc"));
        // Deduplicated: a name appears once per address.
        let mut keys: Vec<(u64, &str)> = syms.symbols.iter().map(|s| (s.address, s.name.as_str())).collect();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }
}
