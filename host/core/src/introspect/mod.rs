//! Stage 1, introspect: a live process as the kernel shows it. Freeze it (PTRACE_SEIZE +
//! interrupt, never SIGSTOP), read its map, registers, descriptors, limits and memory; make it
//! run syscalls (the one injector); read the symbols of every mapped module, the DWARF types of
//! a binary, and the registry a cooperating target describes itself with.
//!
//! Boundary: depends only on `base`. Nothing here knows snapshot files; what is read from the
//! target (DWARF, registries, /proc text) is input: bounded, errors not panics.

mod debugfile;
mod dwarf;
mod field;
mod fork;
mod inject;
mod process;
mod protect;
mod registry;
mod symbols;
pub(crate) mod uffd;

pub use debugfile::{debug_file_directories, separate_debug_file};
pub use dwarf::{
    DebugTypes, Encoding, Enumerator, FieldInfo, Member, ObjectLayout, Qualifier, Shape, TemplateParam, Type, TypeId,
    TypeKind, Variable, Variant, VariantPart,
};
pub use field::Field;
pub use fork::ForkedCopy;
pub use inject::{Injector, SignalsBlocked, OUT_LEN, PAGE_CODE, PAGE_LEN};
pub use process::{
    auxv, check_target, cmdline, comm, exe_path, fault_point, fds, ids, mem_available, pid_errno, pidfd_getfd, prlimit,
    read_at, read_many, read_maps, read_pages, read_pages_mem, read_proc, read_scattered, rlimits, rseq_config, stat,
    thread_cpu_times, vm_flags, write_at, write_forced, write_many, FdInfo, Frozen, GpRegs, HoldSignals, MapEntry,
    ProcStat, ThreadCpuTime, ThreadRegisters, VmFlags, IOV_MAX, NT_PRFPREG, NT_X86_XSTATE, PAGE_SIZE,
};
pub use protect::WriteProtected;
pub use registry::{
    read_process_registry, read_registry, DescribedField, DescribedObject, DescribedType, Kind, LiveProcess,
};
pub use symbols::{
    demangle, elf_symbols, load_bias, read_process_symbols, read_process_symbols_with_maps, snapshot_symbols, Module,
    ProcessSymbols, SkippedModule, Symbol, SymbolKind,
};
