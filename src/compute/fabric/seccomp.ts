// The default seccomp profile: allow by default, deny (EPERM) the system calls a tenant workload
// never needs and that widen the kernel's attack surface or reach outside its sandbox. Namespaces
// and capabilities already stop most of them; the denylist is a second wall. runc loads it with
// libseccomp. A denylist keeps arbitrary images working; the list follows Docker's default
// profile's blocked calls.

export const DENIED_SYSCALLS = [
  // Kernel modules, kexec, reboot, swap, clock, accounting.
  'init_module', 'finit_module', 'delete_module', 'kexec_load', 'kexec_file_load', 'reboot',
  'swapon', 'swapoff', 'settimeofday', 'clock_settime', 'clock_adjtime', 'adjtimex', 'acct',
  // Other processes' memory and the kernel's: ptrace-like access, BPF, perf, keyrings.
  'ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp', 'bpf', 'perf_event_open',
  'add_key', 'request_key', 'keyctl', 'lookup_dcookie', 'userfaultfd',
  // New namespaces and mounts from inside (the sandbox is made once, by runc).
  'unshare', 'setns', 'mount', 'umount2', 'pivot_root', 'open_tree', 'move_mount', 'fsopen',
  'fsconfig', 'fsmount', 'fspick', 'mount_setattr',
  // Handles that bypass path permission checks, and legacy or rarely safe interfaces.
  'open_by_handle_at', 'name_to_handle_at', 'quotactl', 'nfsservctl', 'uselib', 'ustat',
  'sysfs', '_sysctl', 'personality', 'iopl', 'ioperm', 'vhangup', 'syslog',
  'get_kernel_syms', 'query_module', 'create_module', 'get_mempolicy', 'set_mempolicy', 'mbind', 'move_pages',
] as const;

export interface SeccompProfile {
  defaultAction: 'SCMP_ACT_ALLOW';
  architectures: string[];
  syscalls: { names: string[]; action: 'SCMP_ACT_ERRNO'; errnoRet: number }[];
}

const EPERM = 1;

export function defaultSeccomp(): SeccompProfile {
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'],
    syscalls: [{ names: [...DENIED_SYSCALLS], action: 'SCMP_ACT_ERRNO', errnoRet: EPERM }],
  };
}
