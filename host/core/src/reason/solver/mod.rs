//! The solver runner: MiniZinc models run as processes in sessions of their own, with a
//! deadline (flattening included), a memory cap, cancellation (Ctrl-C kills every process of
//! the session) and statistics; Gecode, WebAssembly MiniZinc under node, or linear FlatZinc →
//! LP → cbc / pumpkin-solver. No answer is trusted as is: `fzn` reads linear FlatZinc with
//! exact integers, checks full assignments against it and writes the LP.

mod fzn;
mod runner;

pub use fzn::{parse_cbc_solution, parse_solution, CbcStatus, FlatZinc, FznCheck, FznError};
pub use runner::{
    check_fixed, fixing_data, run, session_members, tools_dir, verify, Backend, Cancel, Run, SolverOptions, Stats,
    Status,
};
