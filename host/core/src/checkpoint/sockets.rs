//! Sockets as `checkpoint` takes them and `restore` makes them again, together (as CRIU's
//! `sk-inet.c`, `sk-tcp.c`, `sk-unix.c`):
//!
//! - **TCP listening**: family, bound address, the options that differ from a new socket's,
//!   the backlog (sock_diag's maximum accept queue). Connections not yet accepted are refused
//!   at checkpoint time (they would be lost).
//! - **TCP established**, through the kernel's repair mode (`TCP_REPAIR`, as CRIU's
//!   `--tcp-established`): both sequence numbers, the send queue (sent and unsent) and the
//!   receive queue read without consuming them, MSS, window scaling, SACK, timestamps and the
//!   window. The checkpointed socket stays in repair mode while the process is killed, so its
//!   close sends nothing to the peer; one left running leaves repair mode before it resumes.
//!   Restore builds the socket in repair mode (bind, connect without a handshake, queues
//!   refilled) and leaves repair mode just before the process runs.
//! - **unix** stream, datagram and seqpacket: listening (path unlinked first if a stale socket
//!   file of the dead process holds it), bound, connected to a peer inside the process (the
//!   pair made again, with the bytes queued for each end), or to a peer outside (connected
//!   again to the peer's address, or to what `--inherit-fd` names; said either way).
//!
//! Anything else (UDP, raw, netlink, packet sockets, TCP in another state, datagrams or
//! accept queues waiting) is refused when checkpointing, with the reason.
//!
//! **The network lock** (as CRIU's `--network-lock nftables`): from just before an established
//! connection is read until the process runs again — after the checkpoint when it is left
//! running, after the restore when it was killed — the peer's packets to it are dropped by an
//! nftables table of memzinc's (`inet memzinc_lock_<pid>`). Without it, a peer that sends while
//! the process is gone gets a reset from a host that no longer has the socket, and the restored
//! connection is dead; with it, the peer's kernel retransmits until the socket is back.
//!
//! Restore builds each socket in memzinc and the process being built takes it with
//! `pidfd_getfd` (see `fds::Pull`).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;

use crate::base::pb::snapshot as pb;
use crate::base::{Error, Result};
use crate::introspect;

const TCP_REPAIR: i32 = 19;
const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_REPAIR_OPTIONS: i32 = 22;
const TCP_TIMESTAMP: i32 = 24;
const TCP_REPAIR_WINDOW: i32 = 29;
const TCP_NO_QUEUE: i32 = 0;
const TCP_RECV_QUEUE: i32 = 1;
const TCP_SEND_QUEUE: i32 = 2;
const TCPOPT_MAXSEG: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;
const TCPI_OPT_TIMESTAMPS: u8 = 1;
const TCPI_OPT_SACK: u8 = 2;
const TCPI_OPT_WSCALE: u8 = 4;
const TCP_ESTABLISHED: u8 = 1;
const TCP_LISTEN: u8 = 10;
const SIOCINQ: libc::c_ulong = 0x541B;
const SIOCOUTQ: libc::c_ulong = 0x5411;
const SIOCOUTQNSD: libc::c_ulong = 0x894B;

/// Integer options kept when they differ from a new socket's: (level, name, what).
const OPTIONS: &[(i32, i32, &str)] = &[
    (libc::SOL_SOCKET, libc::SO_REUSEADDR, "SO_REUSEADDR"),
    (libc::SOL_SOCKET, libc::SO_REUSEPORT, "SO_REUSEPORT"),
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE, "SO_KEEPALIVE"),
    (libc::SOL_SOCKET, libc::SO_BROADCAST, "SO_BROADCAST"),
    (libc::SOL_SOCKET, libc::SO_OOBINLINE, "SO_OOBINLINE"),
    (libc::SOL_SOCKET, libc::SO_PRIORITY, "SO_PRIORITY"),
    (libc::SOL_SOCKET, libc::SO_RCVLOWAT, "SO_RCVLOWAT"),
    (libc::SOL_SOCKET, libc::SO_PASSCRED, "SO_PASSCRED"),
    (libc::SOL_SOCKET, libc::SO_MARK, "SO_MARK"),
];
const TCP_OPTIONS: &[(i32, i32, &str)] = &[
    (libc::IPPROTO_TCP, libc::TCP_NODELAY, "TCP_NODELAY"),
    (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, "TCP_KEEPIDLE"),
    (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, "TCP_KEEPINTVL"),
    (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, "TCP_KEEPCNT"),
    (libc::IPPROTO_TCP, libc::TCP_CORK, "TCP_CORK"),
    (libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT"),
];
const V6_OPTIONS: &[(i32, i32, &str)] = &[(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, "IPV6_V6ONLY")];

/// A socket memzinc holds in TCP repair mode, through a descriptor of its own. Dropped, it
/// leaves repair mode, unless `silent` (the process was killed, or a restore failed): then it
/// closes in repair mode, which sends nothing to the peer.
pub(super) struct Repairing {
    fd: OwnedFd,
    pub silent: bool,
    /// SO_REUSEADDR as checkpointed: leaving repair mode clears it, so it is set after.
    reuse: Option<i32>,
}

impl Repairing {
    /// Repair mode off: the socket talks to its peer again (the kernel sends a window probe).
    pub fn finish(mut self) -> Result<()> {
        self.silent = true;
        setsockopt_int(&self.fd, libc::IPPROTO_TCP, TCP_REPAIR, 0)
            .map_err(|e| Error::Restore(format!("TCP_REPAIR off: {e}")))?;
        if let Some(value) = self.reuse {
            setsockopt_int(&self.fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, value)
                .map_err(|e| Error::Restore(format!("SO_REUSEADDR: {e}")))?;
        }
        Ok(())
    }
}

impl Repairing {
    /// Closed still in repair mode: nothing goes to the peer.
    pub fn close_silently(mut self) {
        self.silent = true;
    }
}

impl Drop for Repairing {
    fn drop(&mut self) {
        if !self.silent {
            let _ = setsockopt_int(&self.fd, libc::IPPROTO_TCP, TCP_REPAIR, 0);
            if let Some(value) = self.reuse {
                let _ = setsockopt_int(&self.fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, value);
            }
        }
    }
}

/// What `collect` took: the sockets, those held in repair mode until the process is killed or
/// resumed, and the network lock over the established ones.
pub(super) struct Taken {
    pub sockets: Vec<pb::Socket>,
    pub repairing: Vec<Repairing>,
    pub lock: Option<NetLock>,
}

/// The nftables table that drops the peers' packets to a process's established connections
/// (see the module's notes). Dropped, it is deleted; [`NetLock::keep`] leaves it for the
/// restore, which deletes it by name ([`unlock`]).
pub struct NetLock {
    table: String,
    kept: bool,
}

/// Runs `nft` with `script` on its standard input.
fn nft(script: &str) -> std::result::Result<(), String> {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft (nftables) cannot run: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("nft has no standard input")?
        .write_all(script.as_bytes())
        .map_err(|e| format!("nft: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("failed")
        ))
    }
}

/// `ip saddr A tcp sport P` (or `ip6`) for an IPv4 or IPv6 sockaddr; an IPv4-mapped IPv6
/// address is matched as the IPv4 packets it stands for.
fn nft_match(sa: &[u8], side: &str) -> Option<String> {
    let family = sa.get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]]))? as i32;
    let port = u16::from_be_bytes([*sa.get(2)?, *sa.get(3)?]);
    let (proto, ip) = match family {
        libc::AF_INET => (
            "ip",
            std::net::Ipv4Addr::new(*sa.get(4)?, sa[5], sa[6], sa[7]).to_string(),
        ),
        libc::AF_INET6 => {
            let ip = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(sa.get(8..24)?).ok()?);
            match ip.to_ipv4_mapped() {
                Some(v4) => ("ip", v4.to_string()),
                None => ("ip6", ip.to_string()),
            }
        }
        _ => return None,
    };
    Some(format!("{proto} {side}addr {ip} tcp {side}port {port}"))
}

impl NetLock {
    /// The table of the process `pid`, with an input chain that drops nothing yet.
    fn new(pid: i32) -> std::result::Result<NetLock, String> {
        let table = format!("memzinc_lock_{pid}");
        nft(&format!(
            "add table inet {table}\nadd chain inet {table} input {{ type filter hook input priority -150 ; policy accept ; }}\n"
        ))?;
        Ok(NetLock { table, kept: false })
    }

    /// Drops what `peer` sends to `local` from now on.
    fn add(&self, local: &[u8], peer: &[u8]) -> std::result::Result<(), String> {
        let (Some(from), Some(to)) = (nft_match(peer, "s"), nft_match(local, "d")) else {
            return Err("not an IP connection".into());
        };
        nft(&format!("add rule inet {} input {from} {to} drop\n", self.table))
    }

    /// Leaves the lock in place (the process was killed; its restore lifts it) and names it.
    pub fn keep(mut self) -> String {
        self.kept = true;
        self.table.clone()
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

impl Drop for NetLock {
    fn drop(&mut self) {
        if !self.kept {
            if let Err(e) = unlock(&self.table) {
                tracing::warn!("network lock {}: {e}", self.table);
            }
        }
    }
}

/// Lifts the network lock `table` (`inet`), which a checkpoint with `--kill` left.
pub fn unlock(table: &str) -> std::result::Result<(), String> {
    nft(&format!("delete table inet {table}\n"))
}

fn refuse(pid: i32, fds: &[i32], inode: u64, why: String) -> Error {
    Error::NotCheckpointable {
        pid,
        why: format!("fd {} (socket:[{inode}]) {why}", fds_text(fds)),
    }
}

fn fds_text(fds: &[i32]) -> String {
    fds.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// The sockets of the frozen process `pid`, by inode with their descriptors. Refuses (the
/// process untouched, repair mode left) what a restore could not make again.
/// `in_tree`: the sockets (by inode) of every process checkpointed with this one; a unix peer
/// among them is made again by the tree's restore, with the bytes waiting at each end.
pub(super) fn collect(pid: i32, by_inode: &BTreeMap<u64, Vec<i32>>, in_tree: &BTreeSet<u64>) -> Result<Taken> {
    let mut taken = Taken {
        sockets: Vec::new(),
        repairing: Vec::new(),
        lock: None,
    };
    let unix_table = if by_inode.is_empty() { Vec::new() } else { unix_diag()? };
    let unix_of = |inode: u64| unix_table.iter().find(|u| u.inode == inode);
    for (&inode, fds) in by_inode {
        let ours = introspect::pidfd_getfd(pid, fds[0])?;
        let int = |level, name| {
            getsockopt_int(&ours, level, name).map_err(|e| Error::Process {
                pid,
                what: format!("getsockopt of its fd {}", fds[0]),
                source: e.into(),
            })
        };
        let family = int(libc::SOL_SOCKET, libc::SO_DOMAIN)?;
        let kind = int(libc::SOL_SOCKET, libc::SO_TYPE)?;
        let protocol = int(libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
        let mut s = pb::Socket {
            fds: fds.clone(),
            inode,
            family,
            r#type: kind,
            protocol,
            local: sockname(&ours, false).unwrap_or_default(),
            peer: sockname(&ours, true).unwrap_or_default(),
            ..Default::default()
        };
        s.options = changed_options(&ours, family, kind, protocol);
        let what = describe(&s);
        match (family, kind) {
            (libc::AF_INET | libc::AF_INET6, libc::SOCK_STREAM) if protocol == libc::IPPROTO_TCP => {
                let info = tcp_info(&ours).map_err(|e| refuse(pid, fds, inode, format!("{what}: TCP_INFO: {e}")))?;
                match info[0] {
                    TCP_LISTEN => {
                        let diag = inet_diag(family)?
                            .into_iter()
                            .find(|d| d.inode == inode)
                            .ok_or_else(|| refuse(pid, fds, inode, format!("{what}: not in sock_diag's table")))?;
                        if diag.rqueue > 0 {
                            return Err(refuse(
                                pid,
                                fds,
                                inode,
                                format!("{what} has {} connection(s) not yet accepted, which a restore would lose; checkpoint once it accepted them", diag.rqueue),
                            ));
                        }
                        s.state = pb::SocketState::SocketListen as i32;
                        s.backlog = diag.wqueue;
                    }
                    TCP_ESTABLISHED => {
                        s.state = pb::SocketState::SocketConnected as i32;
                        // Locked before it is read: nothing arrives between reading the
                        // sequence numbers and the queues, or after (see the module's notes).
                        let lock = match taken.lock.take() {
                            Some(lock) => lock,
                            None => NetLock::new(pid)
                                .map_err(|e| refuse(pid, fds, inode, format!("{what}: the network lock: {e}")))?,
                        };
                        let locked = lock.add(&s.local, &s.peer);
                        taken.lock = Some(lock);
                        locked.map_err(|e| refuse(pid, fds, inode, format!("{what}: the network lock: {e}")))?;
                        let (repair, guard) = tcp_dump(ours, info)
                            .map_err(|e| refuse(pid, fds, inode, format!("{what}: TCP repair: {e}")))?;
                        s.tcp = Some(repair);
                        taken.repairing.push(guard);
                    }
                    state => {
                        return Err(refuse(
                            pid,
                            fds,
                            inode,
                            format!(
                                "{what} is in TCP state {}{}: memzinc restores listening and established TCP sockets",
                                tcp_state_name(state),
                                if state == 8 { " (its peer closed it)" } else { "" }
                            ),
                        ));
                    }
                }
            }
            (libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_DGRAM | libc::SOCK_SEQPACKET) => {
                let diag = unix_of(inode)
                    .ok_or_else(|| refuse(pid, fds, inode, format!("{what}: not in sock_diag's table")))?;
                if diag.state == TCP_LISTEN {
                    if diag.rqueue > 0 {
                        return Err(refuse(
                            pid,
                            fds,
                            inode,
                            format!(
                                "{what} has {} connection(s) not yet accepted, which a restore would lose",
                                diag.rqueue
                            ),
                        ));
                    }
                    s.state = pb::SocketState::SocketListen as i32;
                    s.backlog = diag.wqueue;
                } else if diag.peer != 0 {
                    s.state = pb::SocketState::SocketConnected as i32;
                    s.peer_inode = diag.peer as u64;
                    let inside = by_inode.contains_key(&(diag.peer as u64));
                    s.unix_peer = if inside {
                        pb::UnixPeer::Inside as i32
                    } else {
                        pb::UnixPeer::Outside as i32
                    };
                    let waiting = available(&ours, SIOCINQ).unwrap_or(0);
                    let restored_with = inside || in_tree.contains(&(diag.peer as u64));
                    if waiting > 0 && (kind != libc::SOCK_STREAM || !restored_with) {
                        return Err(refuse(
                            pid,
                            fds,
                            inode,
                            format!(
                                "{what} has {waiting} byte(s) waiting to be read{}: a restore would lose them",
                                if inside {
                                    " as datagrams"
                                } else {
                                    " from its peer outside the process"
                                }
                            ),
                        ));
                    }
                    if waiting > 0 {
                        s.queued = peek(&ours, waiting)
                            .map_err(|e| refuse(pid, fds, inode, format!("{what}: reading its queue: {e}")))?;
                    }
                } else {
                    if kind == libc::SOCK_DGRAM && diag.rqueue > 0 {
                        return Err(refuse(
                            pid,
                            fds,
                            inode,
                            format!("{what} has datagrams waiting to be read: a restore would lose them"),
                        ));
                    }
                    s.state = pb::SocketState::SocketUnconnected as i32;
                }
            }
            _ => {
                return Err(refuse(
                    pid,
                    fds,
                    inode,
                    format!("is {what}: memzinc restores TCP (listening, established) and unix sockets"),
                ));
            }
        }
        taken.sockets.push(s);
    }
    // A unix peer inside the process must see this socket as its peer too, or be bound (then
    // it is connected to by its address).
    for s in &taken.sockets {
        if s.unix_peer == pb::UnixPeer::Inside as i32 {
            let peer = taken.sockets.iter().find(|p| p.inode == s.peer_inode);
            let mutual = peer.is_some_and(|p| p.peer_inode == s.inode);
            if !mutual && s.peer.len() <= 2 {
                return Err(refuse(
                    pid,
                    &s.fds,
                    s.inode,
                    "is connected to an unnamed unix socket of the process that is not connected back: memzinc cannot make that again".into(),
                ));
            }
        }
    }
    Ok(taken)
}

/// A one-line description: `a TCP socket 127.0.0.1:5000 -> 127.0.0.1:41234`.
pub(super) fn describe(s: &pb::Socket) -> String {
    let kind = match (s.family, s.r#type) {
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_STREAM) if s.protocol == libc::IPPROTO_TCP => "a TCP socket",
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM) => "a UDP socket",
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_RAW) => "a raw IP socket",
        (libc::AF_UNIX, libc::SOCK_STREAM) => "a unix stream socket",
        (libc::AF_UNIX, libc::SOCK_DGRAM) => "a unix datagram socket",
        (libc::AF_UNIX, libc::SOCK_SEQPACKET) => "a unix seqpacket socket",
        (libc::AF_NETLINK, _) => "a netlink socket",
        (libc::AF_PACKET, _) => "a packet socket",
        _ => "a socket",
    };
    let mut text = kind.to_string();
    if s.family != libc::AF_INET && s.family != libc::AF_INET6 && s.family != libc::AF_UNIX {
        return format!("{text} (family {}, type {})", s.family, s.r#type);
    }
    text.push(' ');
    text.push_str(&address(&s.local));
    if !s.peer.is_empty() {
        text.push_str(" -> ");
        text.push_str(&address(&s.peer));
    }
    text
}

/// A sockaddr as people write it: `127.0.0.1:80`, `[::1]:80`, `/run/x.sock`, `@abstract`,
/// `(unnamed)`.
pub(super) fn address(sa: &[u8]) -> String {
    let family = sa.get(..2).map_or(0, |b| u16::from_ne_bytes([b[0], b[1]])) as i32;
    let port = |b: &[u8]| u16::from_be_bytes([b[2], b[3]]);
    match family {
        libc::AF_INET if sa.len() >= 8 => {
            format!("{}:{}", std::net::Ipv4Addr::new(sa[4], sa[5], sa[6], sa[7]), port(sa))
        }
        libc::AF_INET6 if sa.len() >= 24 => {
            let ip: [u8; 16] = sa[8..24].try_into().unwrap_or_default();
            format!("[{}]:{}", std::net::Ipv6Addr::from(ip), port(sa))
        }
        libc::AF_UNIX => match &sa[2.min(sa.len())..] {
            [] => "(unnamed)".into(),
            [0, rest @ ..] => format!("@{}", String::from_utf8_lossy(rest)),
            path => String::from_utf8_lossy(path.split(|b| *b == 0).next().unwrap_or_default()).into_owned(),
        },
        _ => "(no address)".into(),
    }
}

/// The filesystem path of a unix address, if it is one.
pub(super) fn unix_path(sa: &[u8]) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    match sa.get(2..)? {
        [] | [0, ..] => None,
        path => Some(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(
            path.split(|b| *b == 0).next().unwrap_or_default(),
        ))),
    }
}

fn tcp_state_name(state: u8) -> &'static str {
    match state {
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        11 => "CLOSING",
        _ => "unknown",
    }
}

fn getsockopt_int(fd: &OwnedFd, level: i32, name: i32) -> std::result::Result<i32, Errno> {
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` (4) bytes to `value`, and its new length to `len`.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&mut value as *mut i32).cast(), &mut len) };
    Errno::result(rc).map(|_| value)
}

fn getsockopt_bytes(fd: &OwnedFd, level: i32, name: i32, len: usize) -> std::result::Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; len];
    let mut got = len as libc::socklen_t;
    // SAFETY: getsockopt writes at most `got` bytes to `buf`, which has that many.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, buf.as_mut_ptr().cast(), &mut got) };
    Errno::result(rc)?;
    buf.truncate(got as usize);
    Ok(buf)
}

fn setsockopt_bytes(fd: &OwnedFd, level: i32, name: i32, value: &[u8]) -> std::result::Result<(), Errno> {
    // SAFETY: setsockopt reads `value.len()` bytes from `value`.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    Errno::result(rc).map(drop)
}

fn setsockopt_int(fd: &OwnedFd, level: i32, name: i32, value: i32) -> std::result::Result<(), Errno> {
    setsockopt_bytes(fd, level, name, &value.to_ne_bytes())
}

/// getsockname (or getpeername) as sockaddr bytes; None when not connected.
fn sockname(fd: &OwnedFd, peer: bool) -> Option<Vec<u8>> {
    let mut buf = [0u8; std::mem::size_of::<libc::sockaddr_storage>()];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: both calls write at most `len` bytes to `buf` and the real length to `len`.
    let rc = unsafe {
        if peer {
            libc::getpeername(fd.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len)
        } else {
            libc::getsockname(fd.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len)
        }
    };
    (rc == 0).then(|| buf[..(len as usize).min(buf.len())].to_vec())
}

fn new_socket(family: i32, kind: i32, protocol: i32) -> std::result::Result<OwnedFd, Errno> {
    // SAFETY: socket takes integers and returns a new descriptor or -1.
    let fd = Errno::result(unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, protocol) })?;
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn option_list(family: i32, protocol: i32) -> Vec<(i32, i32, &'static str)> {
    let mut list = OPTIONS.to_vec();
    if family == libc::AF_INET || family == libc::AF_INET6 {
        list.retain(|o| o.1 != libc::SO_PASSCRED);
        if protocol == libc::IPPROTO_TCP {
            list.extend_from_slice(TCP_OPTIONS);
        }
    }
    if family == libc::AF_INET6 {
        list.extend_from_slice(V6_OPTIONS);
    }
    list
}

/// The integer options of `fd` whose value a new socket of the same kind does not have.
/// Buffer sizes are not kept (TCP tunes them itself; setting them would stop that).
fn changed_options(fd: &OwnedFd, family: i32, kind: i32, protocol: i32) -> Vec<pb::SocketOption> {
    let Ok(fresh) = new_socket(family, kind, protocol) else {
        return Vec::new();
    };
    option_list(family, protocol)
        .into_iter()
        .filter_map(|(level, name, _)| {
            let value = getsockopt_int(fd, level, name).ok()?;
            (getsockopt_int(&fresh, level, name).ok()? != value).then_some(pb::SocketOption { level, name, value })
        })
        .collect()
}

fn set_options(fd: &OwnedFd, options: &[pb::SocketOption]) -> std::result::Result<(), String> {
    for o in options {
        let name = OPTIONS
            .iter()
            .chain(TCP_OPTIONS)
            .chain(V6_OPTIONS)
            .find(|k| (k.0, k.1) == (o.level, o.name))
            .map_or("an option", |k| k.2);
        setsockopt_int(fd, o.level, o.name, o.value).map_err(|e| format!("{name} = {}: {e}", o.value))?;
    }
    Ok(())
}

fn tcp_info(fd: &OwnedFd) -> std::result::Result<Vec<u8>, Errno> {
    let info = getsockopt_bytes(fd, libc::IPPROTO_TCP, libc::TCP_INFO, 256)?;
    if info.len() < 8 {
        return Err(Errno::EINVAL);
    }
    Ok(info)
}

fn available(fd: &OwnedFd, request: libc::c_ulong) -> std::result::Result<usize, Errno> {
    let mut n: libc::c_int = 0;
    // SAFETY: these ioctls write one int to `n`.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), request, &mut n) })?;
    Ok(n.max(0) as usize)
}

/// `len` bytes of the socket's (or, in repair mode, the selected queue's) data, not consumed.
fn peek(fd: &OwnedFd, len: usize) -> std::result::Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; len + 1];
    // SAFETY: recv writes at most `buf.len()` bytes to `buf`.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    let n = Errno::result(n)? as usize;
    if n != len {
        return Err(Errno::EAGAIN);
    }
    buf.truncate(n);
    Ok(buf)
}

fn send_all(fd: &OwnedFd, mut bytes: &[u8]) -> std::result::Result<(), Errno> {
    while !bytes.is_empty() {
        // SAFETY: send reads at most `bytes.len()` bytes from `bytes`.
        let n = unsafe { libc::send(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
        let n = Errno::result(n)? as usize;
        if n == 0 {
            return Err(Errno::EIO);
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

/// An established connection's state, read in repair mode; the socket stays in it.
fn tcp_dump(fd: OwnedFd, info: Vec<u8>) -> std::result::Result<(pb::TcpRepair, Repairing), String> {
    let e = |what: &'static str| move |e: Errno| format!("{what}: {e}");
    // Leaving repair mode clears SO_REUSEADDR: a process left running gets its own back.
    let reuse = getsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR).map_err(e("SO_REUSEADDR"))?;
    setsockopt_int(&fd, libc::IPPROTO_TCP, TCP_REPAIR, 1).map_err(e("TCP_REPAIR on (needs CAP_NET_ADMIN)"))?;
    let guard = Repairing {
        fd,
        silent: false,
        reuse: Some(reuse),
    };
    let fd = &guard.fd;
    let outq = available(fd, SIOCOUTQ).map_err(e("SIOCOUTQ"))?;
    let unsent = available(fd, SIOCOUTQNSD).map_err(e("SIOCOUTQNSD"))?;
    let inq = available(fd, SIOCINQ).map_err(e("SIOCINQ"))?;
    let queue = |which: i32, len: usize| -> std::result::Result<(u32, Vec<u8>), String> {
        setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, which).map_err(e("TCP_REPAIR_QUEUE"))?;
        let seq = getsockopt_int(fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ).map_err(e("TCP_QUEUE_SEQ"))? as u32;
        let data = if len == 0 {
            Vec::new()
        } else {
            peek(fd, len).map_err(e("reading a queue"))?
        };
        Ok((seq, data))
    };
    let (recv_seq, recv_queue) = queue(TCP_RECV_QUEUE, inq)?;
    let (send_seq, send_queue) = queue(TCP_SEND_QUEUE, outq)?;
    setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE).map_err(e("TCP_REPAIR_QUEUE"))?;
    let mss = getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG).map_err(e("TCP_MAXSEG"))? as u32;
    let timestamp = getsockopt_int(fd, libc::IPPROTO_TCP, TCP_TIMESTAMP).map_err(e("TCP_TIMESTAMP"))? as u32;
    let window = getsockopt_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, 20).map_err(e("TCP_REPAIR_WINDOW"))?;
    if window.len() < 20 {
        return Err("TCP_REPAIR_WINDOW: short answer".into());
    }
    let w = |i: usize| u32::from_ne_bytes(window[i * 4..i * 4 + 4].try_into().unwrap_or_default());
    let options = info[5];
    Ok((
        pb::TcpRepair {
            send_seq,
            recv_seq,
            send_queue,
            unsent: unsent as u32,
            recv_queue,
            mss,
            snd_wscale: (info[6] & 0xf) as u32,
            rcv_wscale: (info[6] >> 4) as u32,
            timestamps: options & TCPI_OPT_TIMESTAMPS != 0,
            sack: options & TCPI_OPT_SACK != 0,
            wscale: options & TCPI_OPT_WSCALE != 0,
            timestamp,
            snd_wl1: w(0),
            snd_wnd: w(1),
            max_window: w(2),
            rcv_wnd: w(3),
            rcv_wup: w(4),
        },
        guard,
    ))
}

/// One socket of sock_diag's tables.
struct Diag {
    inode: u64,
    state: u8,
    rqueue: u32,
    wqueue: u32,
    /// Unix: the peer's inode (0: none).
    peer: u32,
    /// Inet: source and destination as sockaddr bytes.
    src: Vec<u8>,
    dst: Vec<u8>,
}

/// Every message of a NETLINK_SOCK_DIAG dump of `request` (its header is added here).
fn diag_dump(request: &[u8]) -> Result<Vec<Vec<u8>>> {
    let fail = |what: &str, e: Errno| Error::Io {
        path: "sock_diag".into(),
        source: std::io::Error::other(format!("{what}: {e}")),
    };
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    let nl = new_socket(libc::AF_NETLINK, libc::SOCK_DGRAM, libc::NETLINK_SOCK_DIAG).map_err(|e| fail("socket", e))?;
    let mut msg = Vec::with_capacity(16 + request.len());
    msg.extend(((16 + request.len()) as u32).to_ne_bytes());
    msg.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend(((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    msg.extend(1u32.to_ne_bytes());
    msg.extend(0u32.to_ne_bytes());
    msg.extend_from_slice(request);
    send_all(&nl, &msg).map_err(|e| fail("send", e))?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: recv writes at most `buf.len()` bytes to `buf`.
        let n = unsafe { libc::recv(nl.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let n = Errno::result(n).map_err(|e| fail("recv", e))? as usize;
        let mut at = 0;
        while at + 16 <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or_default()) as usize;
            let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            if len < 16 || at + len > n {
                return Err(fail("a truncated message", Errno::EBADMSG));
            }
            match kind as i32 {
                libc::NLMSG_DONE => return Ok(out),
                libc::NLMSG_ERROR => {
                    let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap_or_default());
                    return Err(fail("the kernel's answer", Errno::from_raw(-code)));
                }
                _ => out.push(buf[at + 16..at + len].to_vec()),
            }
            at += (len + 3) & !3;
        }
        if n == 0 {
            return Ok(out);
        }
    }
}

/// Every TCP socket of `family` (inet_diag).
fn inet_diag(family: i32) -> Result<Vec<Diag>> {
    // struct inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed sockid.
    let mut req = vec![family as u8, libc::IPPROTO_TCP as u8, 0, 0];
    req.extend(u32::MAX.to_ne_bytes());
    req.extend([0u8; 48]);
    let messages = diag_dump(&req)?;
    Ok(messages
        .iter()
        .filter(|m| m.len() >= 72)
        .map(|m| {
            let word = |i: usize| u32::from_ne_bytes(m[i..i + 4].try_into().unwrap_or_default());
            // struct inet_diag_msg: family, state, timer, retrans, sockid (sport, dport, src,
            // dst, if, cookie), expires, rqueue, wqueue, uid, inode.
            let addr = |port: &[u8], ip: &[u8]| -> Vec<u8> {
                let mut sa = Vec::new();
                sa.extend((m[0] as u16).to_ne_bytes());
                sa.extend_from_slice(port);
                if m[0] as i32 == libc::AF_INET {
                    sa.extend_from_slice(&ip[..4]);
                    sa.extend([0u8; 8]);
                } else {
                    sa.extend([0u8; 4]);
                    sa.extend_from_slice(&ip[..16]);
                    sa.extend([0u8; 4]);
                }
                sa
            };
            Diag {
                state: m[1],
                src: addr(&m[4..6], &m[8..24]),
                dst: addr(&m[6..8], &m[24..40]),
                rqueue: word(56),
                wqueue: word(60),
                inode: word(68) as u64,
                peer: 0,
            }
        })
        .collect())
}

/// Every unix socket (unix_diag), with its peer and queue lengths.
fn unix_diag() -> Result<Vec<Diag>> {
    const UDIAG_SHOW_PEER: u32 = 4;
    const UDIAG_SHOW_RQLEN: u32 = 0x10;
    const UNIX_DIAG_PEER: u16 = 2;
    const UNIX_DIAG_RQLEN: u16 = 4;
    // struct unix_diag_req: family, protocol, pad, states, ino, show, cookie.
    let mut req = vec![libc::AF_UNIX as u8, 0, 0, 0];
    req.extend(u32::MAX.to_ne_bytes());
    req.extend(0u32.to_ne_bytes());
    req.extend((UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN).to_ne_bytes());
    req.extend([0u8; 8]);
    let messages = diag_dump(&req)?;
    Ok(messages
        .iter()
        .filter(|m| m.len() >= 16)
        .map(|m| {
            let word = |b: &[u8], i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap_or_default());
            let mut d = Diag {
                state: m[2],
                inode: word(m, 4) as u64,
                rqueue: 0,
                wqueue: 0,
                peer: 0,
                src: Vec::new(),
                dst: Vec::new(),
            };
            // Attributes after the 16-byte unix_diag_msg: len (u16, header included), type.
            let mut at = 16;
            while at + 4 <= m.len() {
                let len = u16::from_ne_bytes([m[at], m[at + 1]]) as usize;
                let kind = u16::from_ne_bytes([m[at + 2], m[at + 3]]);
                if len < 4 || at + len > m.len() {
                    break;
                }
                let body = &m[at + 4..at + len];
                match kind {
                    UNIX_DIAG_PEER if body.len() >= 4 => d.peer = word(body, 0),
                    UNIX_DIAG_RQLEN if body.len() >= 8 => (d.rqueue, d.wqueue) = (word(body, 0), word(body, 4)),
                    _ => {}
                }
                at += (len + 3) & !3;
            }
            d
        })
        .collect())
}

/// Whether a TCP socket with this local address and this peer exists on the machine (for a
/// restored connection: is its peer, which had them swapped, still there).
fn tcp_socket_exists(family: i32, local: &[u8], peer: &[u8]) -> Result<bool> {
    let same = |a: &[u8], b: &[u8]| {
        let (a, b) = (address(a), address(b));
        a == b
    };
    Ok(inet_diag(family)?
        .iter()
        .any(|d| d.state != TCP_LISTEN && same(&d.src, local) && same(&d.dst, peer)))
}

fn is_loopback(sa: &[u8]) -> bool {
    let family = sa.get(..2).map_or(0, |b| u16::from_ne_bytes([b[0], b[1]])) as i32;
    match family {
        libc::AF_INET => sa.get(4) == Some(&127),
        libc::AF_INET6 => sa.get(8..24).is_some_and(|ip| {
            let ip: [u8; 16] = ip.try_into().unwrap_or_default();
            let ip = std::net::Ipv6Addr::from(ip);
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }),
        _ => false,
    }
}

/// What restore checks before any process exists: an established connection to a peer on
/// this machine whose peer is gone would be restored dead.
/// `restored_with`: the (local, peer) addresses of the connections restored together with
/// these (a process tree's), whose peers are made by the same restore.
pub(super) fn preflight(sockets: &[pb::Socket], restored_with: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
    for s in sockets {
        let Some(_) = &s.tcp else { continue };
        let peer_restored = restored_with.iter().any(|(l, p)| *l == s.peer && *p == s.local);
        if is_loopback(&s.peer) && !peer_restored && !tcp_socket_exists(s.family, &s.peer, &s.local)? {
            return Err(Error::Restore(format!(
                "fd {} is {}, whose peer is gone (no socket {} -> {} on this machine): the connection cannot be restored",
                fds_text(&s.fds),
                describe(s),
                address(&s.peer),
                address(&s.local)
            )));
        }
    }
    Ok(())
}

fn connect_or_bind(fd: &OwnedFd, sa: &[u8], connect: bool) -> std::result::Result<(), Errno> {
    // SAFETY: both read `sa.len()` bytes of sockaddr from `sa`.
    let rc = unsafe {
        if connect {
            libc::connect(fd.as_raw_fd(), sa.as_ptr().cast(), sa.len() as libc::socklen_t)
        } else {
            libc::bind(fd.as_raw_fd(), sa.as_ptr().cast(), sa.len() as libc::socklen_t)
        }
    };
    Errno::result(rc).map(drop)
}

/// A replacement for a socket whose peer is outside, open in memzinc, and what it is.
pub(super) type Replacing = (OwnedFd, String);

/// A socket made again in memzinc, to be taken by the process being built.
pub(super) struct Built {
    pub fd: OwnedFd,
    /// Held in repair mode until the process runs.
    pub repairing: Option<Repairing>,
    pub notice: Option<String>,
}

/// Makes the sockets of `sockets` again (pairs of unix sockets whose peers are each other
/// once), in memzinc; `outside` gives, for a unix socket whose peer is outside the process,
/// the replacement the user named (already open in memzinc), if any.
pub(super) fn build(
    sockets: &[pb::Socket],
    outside: &mut dyn FnMut(&pb::Socket) -> Result<Option<Replacing>>,
) -> Result<Vec<(u64, Built)>> {
    let mut built: Vec<(u64, Built)> = Vec::new();
    let mut done: BTreeSet<u64> = BTreeSet::new();
    let fail =
        |s: &pb::Socket, what: String| Error::Restore(format!("fd {} ({}): {what}", fds_text(&s.fds), describe(s)));
    // Listeners and bound sockets first: a socket of the process may connect to one by address.
    let mut order: Vec<&pb::Socket> = sockets.iter().collect();
    order.sort_by_key(|s| (s.state != pb::SocketState::SocketListen as i32, s.unix_peer != 0));
    for s in order {
        if done.contains(&s.inode) {
            continue;
        }
        done.insert(s.inode);
        let plain = || new_socket(s.family, s.r#type, s.protocol).map_err(|e| fail(s, format!("socket: {e}")));
        let listen = s.state == pb::SocketState::SocketListen as i32;
        if let Some(tcp) = &s.tcp {
            let (fd, guard) = tcp_restore(s, tcp).map_err(|e| fail(s, e))?;
            built.push((
                s.inode,
                Built {
                    fd,
                    repairing: Some(guard),
                    notice: None,
                },
            ));
            continue;
        }
        if s.family == libc::AF_UNIX && s.unix_peer == pb::UnixPeer::Inside as i32 {
            let peer = sockets.iter().find(|p| p.inode == s.peer_inode);
            if let Some(peer) = peer.filter(|p| p.peer_inode == s.inode) {
                let mut ends = [0i32; 2];
                // SAFETY: socketpair writes two descriptors into `ends`.
                Errno::result(unsafe {
                    libc::socketpair(libc::AF_UNIX, s.r#type | libc::SOCK_CLOEXEC, 0, ends.as_mut_ptr())
                })
                .map_err(|e| fail(s, format!("socketpair: {e}")))?;
                // SAFETY: the kernel just gave us these descriptors.
                let (a, b) = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
                // The bytes each end had waiting were sent by the other.
                send_all(&b, &s.queued).map_err(|e| fail(s, format!("refilling its queue: {e}")))?;
                send_all(&a, &peer.queued).map_err(|e| fail(peer, format!("refilling its queue: {e}")))?;
                for (fd, sock) in [(&a, s), (&b, peer)] {
                    set_options(fd, &sock.options).map_err(|e| fail(sock, e))?;
                }
                done.insert(peer.inode);
                built.push((
                    s.inode,
                    Built {
                        fd: a,
                        repairing: None,
                        notice: None,
                    },
                ));
                built.push((
                    peer.inode,
                    Built {
                        fd: b,
                        repairing: None,
                        notice: None,
                    },
                ));
                continue;
            }
        }
        if s.family == libc::AF_UNIX && s.unix_peer == pb::UnixPeer::Outside as i32 {
            if let Some((fd, whose)) = outside(s)? {
                // Unsaid when it is its peer in a restored tree (`whose` empty).
                let notice = (!whose.is_empty()).then(|| {
                    format!(
                        "fd {} ({}) is now {whose}, as --inherit-fd asked",
                        fds_text(&s.fds),
                        describe(s)
                    )
                });
                built.push((
                    s.inode,
                    Built {
                        fd,
                        repairing: None,
                        notice,
                    },
                ));
                continue;
            }
            if s.peer.len() <= 2 {
                return Err(fail(
                    s,
                    "its peer outside the process has no address to connect to again: pass --inherit-fd FD=PATH or FD=fd:N".into(),
                ));
            }
        }
        let fd = plain()?;
        set_options(&fd, &s.options).map_err(|e| fail(s, e))?;
        if s.local.len() > 2 {
            // A listener's stale socket file (its process is gone) would make the bind fail;
            // one somebody listens on again is theirs (a probe connects: refused means stale).
            if let Some(path) = unix_path(&s.local).filter(|_| listen) {
                use std::os::unix::fs::FileTypeExt;
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
                    let probe = plain()?;
                    match connect_or_bind(&probe, &s.local, true) {
                        Err(Errno::ECONNREFUSED) => {}
                        _ => {
                            return Err(fail(
                                s,
                                format!("{} is in use: another socket listens there now", path.display()),
                            ));
                        }
                    }
                    std::fs::remove_file(&path)
                        .map_err(|e| fail(s, format!("removing the stale {}: {e}", path.display())))?;
                }
            }
            let reuse = s.family != libc::AF_UNIX;
            if reuse {
                let _ = setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
            }
            connect_or_bind(&fd, &s.local, false).map_err(|e| fail(s, format!("bind: {e}")))?;
            if reuse {
                let wanted = s
                    .options
                    .iter()
                    .find(|o| (o.level, o.name) == (libc::SOL_SOCKET, libc::SO_REUSEADDR))
                    .map_or(0, |o| o.value);
                let _ = setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, wanted);
            }
        }
        let mut notice = None;
        if listen {
            // SAFETY: listen takes integers.
            Errno::result(unsafe { libc::listen(fd.as_raw_fd(), s.backlog as i32) })
                .map_err(|e| fail(s, format!("listen: {e}")))?;
        } else if s.state == pb::SocketState::SocketConnected as i32 {
            connect_or_bind(&fd, &s.peer, true).map_err(|e| {
                fail(
                    s,
                    format!(
                        "connecting again to {}: {e} (--inherit-fd FD=PATH or FD=fd:N names a replacement)",
                        address(&s.peer)
                    ),
                )
            })?;
            if s.unix_peer == pb::UnixPeer::Outside as i32 {
                notice = Some(format!(
                    "fd {} ({}) reconnected to {} by its address: a new connection to whoever listens there",
                    fds_text(&s.fds),
                    describe(s),
                    address(&s.peer)
                ));
            }
        }
        built.push((
            s.inode,
            Built {
                fd,
                repairing: None,
                notice,
            },
        ));
    }
    Ok(built)
}

/// An established connection made again in repair mode: sequence numbers, bound and
/// "connected" without a handshake, options, window, queues. Stays in repair mode.
fn tcp_restore(s: &pb::Socket, t: &pb::TcpRepair) -> std::result::Result<(OwnedFd, Repairing), String> {
    let e = |what: &'static str| move |e: Errno| format!("{what}: {e}");
    let fd = new_socket(s.family, libc::SOCK_STREAM, libc::IPPROTO_TCP).map_err(e("socket"))?;
    setsockopt_int(&fd, libc::IPPROTO_TCP, TCP_REPAIR, 1).map_err(e("TCP_REPAIR on (needs CAP_NET_ADMIN)"))?;
    let reuse = s
        .options
        .iter()
        .find(|o| (o.level, o.name) == (libc::SOL_SOCKET, libc::SO_REUSEADDR))
        .map(|o| o.value);
    let guard = Repairing {
        fd,
        silent: true,
        reuse,
    };
    let fd = &guard.fd;
    let queue =
        |which: i32| setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, which).map_err(e("TCP_REPAIR_QUEUE"));
    queue(TCP_RECV_QUEUE)?;
    let seq = |v: u32| setsockopt_int(fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ, v as i32).map_err(e("TCP_QUEUE_SEQ"));
    seq(t.recv_seq.wrapping_sub(t.recv_queue.len() as u32))?;
    queue(TCP_SEND_QUEUE)?;
    seq(t.send_seq.wrapping_sub(t.send_queue.len() as u32))?;
    // IPV6_V6ONLY only takes before bind; the others after, or SO_REUSEADDR would undo the
    // reuse repair mode forces (the listener holds the same port).
    let (before, after): (Vec<pb::SocketOption>, Vec<pb::SocketOption>) = s
        .options
        .iter()
        .cloned()
        .filter(|o| (o.level, o.name) != (libc::SOL_SOCKET, libc::SO_REUSEADDR))
        .partition(|o| (o.level, o.name) == (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY));
    set_options(fd, &before)?;
    connect_or_bind(fd, &s.local, false).map_err(e("bind"))?;
    connect_or_bind(fd, &s.peer, true).map_err(e("connect (repair mode)"))?;
    if t.timestamps {
        setsockopt_int(fd, libc::IPPROTO_TCP, TCP_TIMESTAMP, t.timestamp as i32).map_err(e("TCP_TIMESTAMP"))?;
    }
    let mut opts: Vec<u8> = Vec::new();
    let mut opt = |code: u32, value: u32| {
        opts.extend(code.to_ne_bytes());
        opts.extend(value.to_ne_bytes());
    };
    if t.sack {
        opt(TCPOPT_SACK_PERM, 0);
    }
    if t.wscale {
        opt(TCPOPT_WINDOW, t.snd_wscale | (t.rcv_wscale << 16));
    }
    if t.timestamps {
        opt(TCPOPT_TIMESTAMP, 0);
    }
    opt(TCPOPT_MAXSEG, t.mss);
    setsockopt_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_OPTIONS, &opts).map_err(e("TCP_REPAIR_OPTIONS"))?;
    queue(TCP_RECV_QUEUE)?;
    send_all(fd, &t.recv_queue).map_err(e("refilling the receive queue"))?;
    let sent = t.send_queue.len().saturating_sub(t.unsent as usize);
    queue(TCP_SEND_QUEUE)?;
    send_all(fd, &t.send_queue[..sent]).map_err(e("refilling the send queue"))?;
    let window: Vec<u8> = [t.snd_wl1, t.snd_wnd, t.max_window, t.rcv_wnd, t.rcv_wup]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    setsockopt_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &window).map_err(e("TCP_REPAIR_WINDOW"))?;
    queue(TCP_NO_QUEUE)?;
    set_options(fd, &after)?;
    if sent < t.send_queue.len() {
        // Never sent: queued the ordinary way, out of repair mode for the moment.
        setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR, 0).map_err(e("TCP_REPAIR off"))?;
        send_all(fd, &t.send_queue[sent..]).map_err(e("queueing the unsent bytes"))?;
        setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR, 1).map_err(e("TCP_REPAIR on"))?;
    }
    // SAFETY: dup takes an integer and returns a new descriptor or -1.
    let dup = Errno::result(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) }).map_err(e("dup"))?;
    // SAFETY: the kernel just gave us this descriptor.
    Ok((unsafe { OwnedFd::from_raw_fd(dup) }, guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_people_write_them() {
        let mut v4 = (libc::AF_INET as u16).to_ne_bytes().to_vec();
        v4.extend(8080u16.to_be_bytes());
        v4.extend([127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(address(&v4), "127.0.0.1:8080");
        assert!(is_loopback(&v4));
        let mut path = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        path.extend(b"/run/x.sock\0");
        assert_eq!(address(&path), "/run/x.sock");
        assert_eq!(unix_path(&path).unwrap(), std::path::Path::new("/run/x.sock"));
        let mut abs = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        abs.extend(b"\0log");
        assert_eq!(address(&abs), "@log");
        assert!(unix_path(&abs).is_none());
        assert_eq!(address(&(libc::AF_UNIX as u16).to_ne_bytes()), "(unnamed)");
    }
}
