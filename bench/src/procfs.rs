//! Readings from /proc: a process's resident memory and CPU time, and the kernel's TCP
//! socket counts and memory (/proc/net/sockstat).
//!
//! Linux only; a reading that cannot be taken is `None` and shows as `-` in a table.

/// Clock ticks per second of /proc/<pid>/stat's times (`getconf CLK_TCK`: 100 on Linux
/// everywhere this runs; the kernel's USER_HZ is fixed at 100 on x86 and arm64).
pub const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// Bytes per page of /proc/net/sockstat's `mem` (4 KiB on x86 and most arm64 kernels).
pub const PAGE_BYTES: u64 = 4096;

/// `VmRSS` of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// User plus system CPU time of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its `)` are fixed.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The TCP line of /proc/net/sockstat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpSockstat {
    pub inuse: u64,
    pub time_wait: u64,
    /// Pages of socket buffer memory.
    pub mem_pages: u64,
}

/// Reads /proc/net/sockstat (the whole machine's, or the network namespace's).
pub fn tcp_sockstat() -> Option<TcpSockstat> {
    parse_sockstat(&std::fs::read_to_string("/proc/net/sockstat").ok()?)
}

fn parse_sockstat(text: &str) -> Option<TcpSockstat> {
    let line = text.lines().find(|line| line.starts_with("TCP:"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let value = |name: &str| -> Option<u64> {
        let at = fields.iter().position(|field| *field == name)?;
        fields.get(at + 1)?.parse().ok()
    };
    Some(TcpSockstat {
        inuse: value("inuse")?,
        time_wait: value("tw")?,
        mem_pages: value("mem")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockstat_and_this_process_are_read() {
        let text =
            "sockets: used 300\nTCP: inuse 12 orphan 0 tw 3 alloc 20 mem 7\nUDP: inuse 1 mem 0\n";
        assert_eq!(
            parse_sockstat(text),
            Some(TcpSockstat {
                inuse: 12,
                time_wait: 3,
                mem_pages: 7
            })
        );
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cpu_ticks(me).is_some());
    }
}
