//! A seccomp filter from the spec: listed system calls fail with EPERM, and
//! optionally new user namespaces are refused (clone/unshare with CLONE_NEWUSER;
//! clone3 answers ENOSYS so libc falls back to clone, whose flags a classic BPF
//! filter can read). Other architectures' system call ABIs (i386 through int 0x80,
//! x32) are refused outright, or the list could be bypassed through them.
//!
//! The Python side (`berth.runtime.spec.seccomp_profile`) derives Docker's default
//! deny list from the granted capabilities; this module only compiles a list.

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seccomp {
    /// System call names that fail with EPERM.
    #[serde(default)]
    pub deny: Vec<String>,
    #[serde(default)]
    pub deny_new_user_namespaces: bool,
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

/// x32 system calls share the x86_64 arch value, marked by this bit.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

macro_rules! syscall_table {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), libc::$name as u32)),*]
    };
}

/// Names berth can filter (Docker's default profile draws from these).
#[cfg(target_arch = "x86_64")]
const SYSCALLS: &[(&str, u32)] = syscall_table![
    SYS_acct, SYS_add_key, SYS_bpf, SYS_clock_adjtime, SYS_clock_settime, SYS_delete_module,
    SYS_finit_module, SYS_get_mempolicy, SYS_init_module, SYS_ioperm, SYS_iopl, SYS_kcmp,
    SYS_kexec_file_load, SYS_kexec_load, SYS_keyctl, SYS_lookup_dcookie, SYS_mbind, SYS_mount,
    SYS_move_pages, SYS_name_to_handle_at, SYS_nfsservctl, SYS_open_by_handle_at,
    SYS_perf_event_open, SYS_pivot_root, SYS_process_vm_readv, SYS_process_vm_writev, SYS_ptrace,
    SYS_quotactl, SYS_reboot, SYS_request_key, SYS_set_mempolicy, SYS_setns, SYS_settimeofday,
    SYS_swapon, SYS_swapoff, SYS_sysfs, SYS__sysctl, SYS_umount2, SYS_unshare, SYS_uselib,
    SYS_userfaultfd, SYS_ustat, SYS_vhangup, SYS_io_uring_setup, SYS_io_uring_enter,
    SYS_io_uring_register, SYS_open_tree, SYS_move_mount, SYS_fsopen, SYS_fsconfig, SYS_fsmount,
    SYS_fspick, SYS_mount_setattr, SYS_syslog, SYS_afs_syscall, SYS_tuxcall, SYS_security,
    SYS_vserver, SYS_getpmsg, SYS_putpmsg, SYS_personality, SYS_chroot, SYS_sethostname,
    SYS_setdomainname, SYS_iopl, SYS_fanotify_init, SYS_lookup_dcookie, SYS_pidfd_getfd,
];

#[cfg(target_arch = "aarch64")]
const SYSCALLS: &[(&str, u32)] = syscall_table![
    SYS_acct, SYS_add_key, SYS_bpf, SYS_clock_adjtime, SYS_clock_settime, SYS_delete_module,
    SYS_finit_module, SYS_get_mempolicy, SYS_init_module, SYS_kcmp, SYS_kexec_file_load,
    SYS_kexec_load, SYS_keyctl, SYS_mbind, SYS_mount, SYS_move_pages, SYS_name_to_handle_at,
    SYS_open_by_handle_at, SYS_perf_event_open, SYS_pivot_root, SYS_process_vm_readv,
    SYS_process_vm_writev, SYS_ptrace, SYS_quotactl, SYS_reboot, SYS_request_key,
    SYS_set_mempolicy, SYS_setns, SYS_settimeofday, SYS_swapon, SYS_swapoff, SYS_umount2,
    SYS_unshare, SYS_userfaultfd, SYS_vhangup, SYS_io_uring_setup, SYS_io_uring_enter,
    SYS_io_uring_register, SYS_open_tree, SYS_move_mount, SYS_fsopen, SYS_fsconfig, SYS_fsmount,
    SYS_fspick, SYS_mount_setattr, SYS_syslog, SYS_personality, SYS_chroot, SYS_sethostname,
    SYS_setdomainname, SYS_fanotify_init, SYS_pidfd_getfd,
];

/// Linux system calls this architecture does not have (x86-only legacy ones):
/// a profile may list them, there is nothing to filter.
#[cfg(target_arch = "aarch64")]
const ABSENT_HERE: &[&str] = &[
    "ioperm", "iopl", "uselib", "ustat", "sysfs", "_sysctl", "nfsservctl", "afs_syscall", "tuxcall",
    "security", "vserver", "getpmsg", "putpmsg", "lookup_dcookie",
];
#[cfg(target_arch = "x86_64")]
const ABSENT_HERE: &[&str] = &[];

pub fn syscall_number(name: &str) -> Result<u32> {
    SYSCALLS
        .iter()
        .find(|(n, _)| n.strip_prefix("SYS_") == Some(name))
        .map(|(_, nr)| *nr)
        .ok_or_else(|| Error::Spec(format!("seccomp: unknown or unsupported system call {name:?}")))
}

// Classic BPF opcodes and seccomp return values (<linux/filter.h>, <linux/seccomp.h>).
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// Jump targets while building: resolved to relative offsets at the end.
#[derive(Clone, Copy)]
enum Target {
    Next,
    Skip(u8),
    Deny,
    Enosys,
    CheckFlags,
}

struct Insn {
    code: u16,
    jt: Target,
    jf: Target,
    k: u32,
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn { code, jt: Target::Next, jf: Target::Next, k }
}

fn jump(code: u16, k: u32, jt: Target, jf: Target) -> Insn {
    Insn { code, jt, jf, k }
}

/// Compile the filter program.
pub fn compile(s: &Seccomp) -> Result<Vec<SockFilter>> {
    let mut nrs: Vec<u32> =
        s.deny.iter().filter(|n| !ABSENT_HERE.contains(&n.as_str())).map(|n| syscall_number(n)).collect::<Result<_>>()?;
    nrs.sort_unstable();
    nrs.dedup();
    let mut prog = vec![
        stmt(LD_W_ABS, 4), // seccomp_data.arch
        jump(JEQ_K, AUDIT_ARCH, Target::Next, Target::Deny),
        stmt(LD_W_ABS, 0), // seccomp_data.nr
    ];
    #[cfg(target_arch = "x86_64")]
    prog.push(jump(JGE_K, X32_SYSCALL_BIT, Target::Deny, Target::Next));
    if s.deny_new_user_namespaces {
        prog.push(jump(JEQ_K, libc::SYS_clone3 as u32, Target::Enosys, Target::Next));
        prog.push(jump(JEQ_K, libc::SYS_clone as u32, Target::CheckFlags, Target::Next));
        prog.push(jump(JEQ_K, libc::SYS_unshare as u32, Target::CheckFlags, Target::Next));
    }
    for nr in nrs {
        prog.push(jump(JEQ_K, nr, Target::Deny, Target::Next));
    }
    prog.push(stmt(RET_K, RET_ALLOW));
    let deny = prog.len();
    prog.push(stmt(RET_K, RET_ERRNO | libc::EPERM as u32));
    let enosys = prog.len();
    prog.push(stmt(RET_K, RET_ERRNO | libc::ENOSYS as u32));
    let check = prog.len();
    // clone's and unshare's flags are their first argument (low word). BPF only
    // jumps forward: this block has its own returns.
    prog.push(stmt(LD_W_ABS, 16));
    prog.push(jump(JSET_K, libc::CLONE_NEWUSER as u32, Target::Next, Target::Skip(1)));
    prog.push(stmt(RET_K, RET_ERRNO | libc::EPERM as u32));
    prog.push(stmt(RET_K, RET_ALLOW));
    let mut out = Vec::with_capacity(prog.len());
    for (i, insn) in prog.iter().enumerate() {
        let resolve = |t: Target| -> Result<u8> {
            let dest = match t {
                Target::Next => return Ok(0),
                Target::Skip(n) => return Ok(n),
                Target::Deny => deny,
                Target::Enosys => enosys,
                Target::CheckFlags => check,
            };
            dest.checked_sub(i + 1).and_then(|d| u8::try_from(d).ok()).ok_or_else(|| Error::Spec("seccomp: too many system calls in one filter".into()))
        };
        let (jt, jf) = (resolve(insn.jt)?, resolve(insn.jf)?);
        out.push(SockFilter { code: insn.code, jt, jf, k: insn.k });
    }
    Ok(out)
}

/// Install the filter on the calling thread (inherited by exec and children).
/// Without no_new_privs this needs CAP_SYS_ADMIN, so it runs before the
/// capabilities are dropped; nothing the runtime does after it is on the list.
pub fn install(prog: &[SockFilter]) -> Result<()> {
    let fprog = SockFprog { len: prog.len() as u16, filter: prog.as_ptr() };
    crate::sys::cvt_l(unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog as *const SockFprog)
    })
    .ctx("install the seccomp filter")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny classic-BPF interpreter for the instructions compile() emits.
    fn run(prog: &[SockFilter], arch: u32, nr: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[16..24].copy_from_slice(&arg0.to_ne_bytes());
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let f = prog[pc];
            pc += 1;
            match f.code {
                LD_W_ABS => acc = u32::from_ne_bytes(data[f.k as usize..f.k as usize + 4].try_into().unwrap()),
                JEQ_K => pc += if acc == f.k { f.jt } else { f.jf } as usize,
                JGE_K => pc += if acc >= f.k { f.jt } else { f.jf } as usize,
                JSET_K => pc += if acc & f.k != 0 { f.jt } else { f.jf } as usize,
                RET_K => return f.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn listed_calls_fail_and_others_pass() {
        let s = Seccomp { deny: vec!["keyctl".into(), "ptrace".into()], deny_new_user_namespaces: true };
        let p = compile(&s).unwrap();
        let eperm = RET_ERRNO | libc::EPERM as u32;
        assert_eq!(run(&p, AUDIT_ARCH, libc::SYS_keyctl as u32, 0), eperm);
        assert_eq!(run(&p, AUDIT_ARCH, libc::SYS_ptrace as u32, 0), eperm);
        assert_eq!(run(&p, AUDIT_ARCH, libc::SYS_read as u32, 0), RET_ALLOW);
        assert_eq!(run(&p, AUDIT_ARCH, libc::SYS_clone3 as u32, 0), RET_ERRNO | libc::ENOSYS as u32);
        assert_eq!(run(&p, AUDIT_ARCH, libc::SYS_unshare as u32, libc::CLONE_NEWUSER as u64), eperm);
        assert_eq!(run(&p, AUDIT_ARCH, libc::SYS_unshare as u32, libc::CLONE_NEWNS as u64), RET_ALLOW);
        assert_eq!(run(&p, AUDIT_ARCH, libc::SYS_clone as u32, libc::SIGCHLD as u64), RET_ALLOW);
        assert_eq!(run(&p, 0x4000_0003, libc::SYS_read as u32, 0), eperm); // i386
    }

    #[test]
    fn unknown_names_are_spec_errors() {
        let s = Seccomp { deny: vec!["teleport".into()], ..Default::default() };
        assert!(compile(&s).unwrap_err().to_string().contains("teleport"));
    }
}
