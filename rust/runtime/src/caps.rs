//! Linux capabilities by name, Docker's default set, and applying the five sets
//! (bounding, effective, permitted, inheritable, ambient) to the current process.

use crate::error::{Context, Error, Result};
use crate::spec::CapabilitySets;

const NAMES: &[&str] = &[
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
];

/// What `docker run` grants without --cap-add/--cap-drop/--privileged.
pub const DOCKER_DEFAULT: &[&str] = &[
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
];

pub fn all_names() -> &'static [&'static str] {
    NAMES
}

/// `CAP_NET_ADMIN` or `NET_ADMIN` (any case) -> 12.
pub fn number(name: &str) -> Result<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    NAMES
        .iter()
        .position(|n| *n == full)
        .map(|i| i as u32)
        .ok_or_else(|| Error::Spec(format!("unknown capability {name:?}")))
}

pub fn mask(names: &[String]) -> Result<u64> {
    names.iter().try_fold(0u64, |m, n| Ok(m | 1u64 << number(n)?))
}

pub fn docker_default_sets() -> CapabilitySets {
    let names: Vec<String> = DOCKER_DEFAULT.iter().map(|s| s.to_string()).collect();
    CapabilitySets { bounding: names.clone(), effective: names.clone(), permitted: names, ..Default::default() }
}

/// The five sets as bit masks.
pub struct Masks {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl Masks {
    pub fn from_sets(s: &CapabilitySets) -> Result<Masks> {
        Ok(Masks {
            bounding: mask(&s.bounding)?,
            effective: mask(&s.effective)?,
            permitted: mask(&s.permitted)?,
            inheritable: mask(&s.inheritable)?,
            ambient: mask(&s.ambient)?,
        })
    }
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(NAMES.len() as u32 - 1)
}

/// Drop every capability not in `keep` from the bounding set (needs CAP_SETPCAP,
/// so it runs before the uid change).
pub fn drop_bounding(keep: u64) -> Result<()> {
    for cap in 0..=last_cap().min(63) {
        if keep & (1 << cap) == 0 {
            crate::sys::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong)
                .with_ctx(|| format!("drop {} from the bounding set", NAMES.get(cap as usize).unwrap_or(&"?")))?;
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Our own permitted set (capget): nothing beyond it can be granted.
pub fn current_permitted() -> Result<u64> {
    let hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    crate::sys::cvt_l(unsafe { libc::syscall(libc::SYS_capget, &hdr as *const CapHeader, data.as_mut_ptr()) })
        .ctx("read our capabilities")?;
    Ok(u64::from(data[0].permitted) | u64::from(data[1].permitted) << 32)
}

impl Masks {
    /// Keep only what we hold: `--privileged` means every capability the engine
    /// has, and an engine in a sandbox may lack some (CAP_SYS_RESOURCE here).
    pub fn limit_to(&mut self, held: u64) {
        for m in [&mut self.bounding, &mut self.effective, &mut self.permitted, &mut self.inheritable, &mut self.ambient] {
            *m &= held;
        }
    }
}

/// capset(2) for effective, permitted and inheritable, then the ambient set.
pub fn apply(m: &Masks) -> Result<()> {
    let hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let split = |v: u64| (v as u32, (v >> 32) as u32);
    let (e0, e1) = split(m.effective);
    let (p0, p1) = split(m.permitted);
    let (i0, i1) = split(m.inheritable);
    let data = [
        CapData { effective: e0, permitted: p0, inheritable: i0 },
        CapData { effective: e1, permitted: p1, inheritable: i1 },
    ];
    crate::sys::cvt_l(unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) })
        .ctx("set capabilities")?;
    crate::sys::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong).ok();
    for cap in 0..64u32 {
        if m.ambient & (1 << cap) != 0 {
            let r = unsafe {
                libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong, cap as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong)
            };
            crate::sys::cvt(r).with_ctx(|| format!("raise ambient {}", NAMES.get(cap as usize).unwrap_or(&"?")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_default_mask_is_the_well_known_value() {
        let names: Vec<String> = DOCKER_DEFAULT.iter().map(|s| s.to_string()).collect();
        assert_eq!(mask(&names).unwrap(), 0xa80425fb);
    }

    #[test]
    fn names_accept_short_and_lower_case() {
        assert_eq!(number("net_admin").unwrap(), 12);
        assert_eq!(number("CAP_SYS_ADMIN").unwrap(), 21);
        assert!(number("CAP_FLY").unwrap_err().to_string().contains("CAP_FLY"));
    }
}
