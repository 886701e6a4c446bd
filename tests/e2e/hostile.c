/*
 * A hostile container process for tests/e2e/test_e2e_hostile.py.
 *
 * Run as root inside a container with the default capabilities and seccomp profile, it
 * tries to reach the host in the ways issue 15 lists and prints one line per attempt:
 *
 *     NAME: RESULT[ (detail)]
 *
 * RESULT is OK when the attempt worked (the defence failed), an errno name (EPERM) when
 * the kernel refused it, a signal name (SIGSYS) when the attempt's process was killed,
 * and TIMEOUT when it hung. Each attempt runs in a child of its own, so one that works
 * (a user namespace, a joined keyring) cannot change what the next one sees. The lines
 * go to stdout and to OUTFILE, which ends with a line "done" once every attempt ran.
 *
 * Nothing here may harm the host if a defence is missing: /proc/sysrq-trigger and /sys
 * files are opened O_WRONLY and closed, never written; device nodes are opened and
 * closed; a key goes to the process keyring, which dies with the process; a created
 * cgroup is removed; the fork bomb stops at MAX_FORKS and kills its children; the
 * memory hog stops at HOG_MIB.
 *
 * Usage: hostile OUTFILE HOST_PID BLOCK_MAJOR:MINOR
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/keyctl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_FORKS 1000   /* far above any pids limit the test sets */
#define HOG_MIB 256      /* far above the memory limit the test sets */
#define ATTEMPT_SECONDS 10

static FILE *out;
static pid_t host_pid;
static unsigned blk_major, blk_minor;
static int result_fd = -1; /* the attempt child's end of the pipe to the parent */

/* An errno as its name (EPERM), for the lines the test parses. */
static const char *errname(int e)
{
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOKEY: return "ENOKEY";
    case EDQUOT: return "EDQUOT";
    case ENOEXEC: return "ENOEXEC";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "E%d", e);
        return buf;
    }
    }
}

/* The attempt child's one line: "RESULT[ (detail)]", sent to the parent. */
static void report(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (write(result_fd, line, strlen(line)) < 0)
        _exit(3);
}

static void report_errno(const char *what, int e)
{
    if (what)
        report("%s (%s)", errname(e), what);
    else
        report("%s", errname(e));
}

/* -- the attempts ------------------------------------------------------------------- */

static void try_mount_tmpfs(void)
{
    if (mount("hostile", "/tmp", "tmpfs", 0, "size=1m") == 0) {
        umount2("/tmp", MNT_DETACH);
        report("OK (mounted a tmpfs on /tmp)");
        return;
    }
    report_errno(NULL, errno);
}

static void try_remount_root_rw(void)
{
    /* the root is read-only (readOnlyRootFilesystem): make it writable again */
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL) == 0) {
        report("OK (remounted / read-write)");
        return;
    }
    int e = errno;
    if (mount(NULL, "/", NULL, MS_REMOUNT, NULL) == 0) {
        report("OK (remounted / read-write, superblock)");
        return;
    }
    report_errno(NULL, e);
}

static void try_unshare_user(void)
{
    if (unshare(CLONE_NEWUSER) == 0) {
        report("OK (a new user namespace)");
        return;
    }
    report_errno(NULL, errno);
}

static void try_unshare_user_mount(void)
{
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
        report_errno("at unshare", errno);
        return;
    }
    /* past the defence already; see whether it bought a mount */
    if (mount("hostile", "/tmp", "tmpfs", 0, "size=1m") == 0)
        report("OK (unshare worked and a tmpfs was mounted in the new namespaces)");
    else
        report("OK (unshare worked; the tmpfs mount then failed with %s)", errname(errno));
}

static void try_clone_user(void)
{
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) {
        report_errno(NULL, errno);
        return;
    }
    if (pid == 0)
        _exit(0);
    waitpid((pid_t)pid, NULL, 0);
    report("OK (a child in a new user namespace)");
}

static void try_ptrace_host(void)
{
    if (ptrace(PTRACE_ATTACH, host_pid, NULL, NULL) != 0) {
        report_errno(NULL, errno);
        return;
    }
    waitpid(host_pid, NULL, __WALL);
    ptrace(PTRACE_DETACH, host_pid, NULL, NULL);
    report("OK (attached to host pid %d)", (int)host_pid);
}

/* Open for writing and close at once: a write to these could hurt the host. */
static void try_open_wronly(const char *path)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        report("OK (%s opened for writing; nothing written)", path);
        return;
    }
    report_errno(NULL, errno);
}

static void try_sysrq(void) { try_open_wronly("/proc/sysrq-trigger"); }

static void try_sys_write(void) { try_open_wronly("/sys/kernel/mm/ksm/run"); }

static void try_sys_cgroup_mkdir(void)
{
    struct stat st;
    const char *dir = stat("/sys/fs/cgroup/pids", &st) == 0
        ? "/sys/fs/cgroup/pids/hostile" : "/sys/fs/cgroup/hostile";
    if (mkdir(dir, 0755) == 0) {
        rmdir(dir);
        report("OK (made the cgroup %s; removed)", dir);
        return;
    }
    report_errno(NULL, errno);
}

static void try_init_module(void)
{
    static char garbage[256];
    memset(garbage, 0x5a, sizeof garbage);
    if (syscall(SYS_init_module, garbage, sizeof garbage, "") == 0) {
        report("OK (a module loaded!)");
        return;
    }
    int e = errno;
    /* a kernel that looked at the garbage and refused it: the call got through */
    if (e == ENOEXEC || e == EINVAL || e == EFAULT || e == ENOKEY)
        report("OK (the kernel parsed the image and refused it with %s)", errname(e));
    else
        report_errno(NULL, e);
}

static void try_finit_module(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        report("ENOENT (no /dev/null to offer)");
        return;
    }
    long rc = syscall(SYS_finit_module, fd, "", 0);
    int e = errno;
    close(fd);
    if (rc == 0) {
        report("OK (a module loaded!)");
        return;
    }
    if (e == ENOEXEC || e == EINVAL || e == EFAULT || e == ENOKEY)
        report("OK (the kernel read /dev/null and refused it with %s)", errname(e));
    else
        report_errno(NULL, e);
}

static void try_keyctl_join(void)
{
    long serial = syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL);
    if (serial >= 0) {
        report("OK (joined a new session keyring %ld)", serial);
        return;
    }
    report_errno(NULL, errno);
}

static void try_add_key(void)
{
    /* the process keyring: made on demand, gone when this child exits */
    long serial = syscall(SYS_add_key, "user", "hostile", "x", 1,
                          KEY_SPEC_PROCESS_KEYRING);
    if (serial >= 0) {
        syscall(SYS_keyctl, KEYCTL_INVALIDATE, serial);
        report("OK (added key %ld)", serial);
        return;
    }
    report_errno(NULL, errno);
}

static void try_bpf_map(void)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    if (fd >= 0) {
        close((int)fd);
        report("OK (made a BPF map)");
        return;
    }
    report_errno(NULL, errno);
}

static void try_int80(void)
{
#if defined(__x86_64__)
    long ret;
    /* i386 getpid (20) through the 32-bit entry point */
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(20L)
                     : "memory", "cc", "r8", "r9", "r10", "r11");
    if (ret > 0)
        report("OK (returned pid %ld)", ret);
    else
        report_errno(NULL, (int)-ret);
#else
    report("SKIPPED (not x86-64)");
#endif
}

/* mknod (CAP_MKNOD, in the default set) is expected to work; the open must not. */
static void try_device(const char *path, mode_t type, unsigned major_, unsigned minor_,
                       int flags)
{
    unlink(path);
    if (mknod(path, type | 0600, makedev(major_, minor_)) != 0) {
        report_errno("at mknod", errno);
        return;
    }
    int fd = open(path, flags | O_CLOEXEC);
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(path);
    if (fd >= 0)
        report("OK (opened %u:%u)", major_, minor_);
    else
        report("%s (mknod %u:%u worked, open refused)", errname(e), major_, minor_);
}

static void try_block_device(void)
{
    try_device("/dev/hostile-block", S_IFBLK, blk_major, blk_minor, O_RDONLY);
}

static void try_char_device(void)
{
    /* /dev/kmsg, 1:11: not in runc's default allow list; opened for writing, never written */
    try_device("/dev/hostile-kmsg", S_IFCHR, 1, 11, O_WRONLY);
}

static void try_fork_bomb(void)
{
    static pid_t kids[MAX_FORKS];
    int n = 0, e = 0;
    while (n < MAX_FORKS) {
        pid_t pid = fork();
        if (pid < 0) {
            e = errno;
            break;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            for (;;)
                pause();
        }
        kids[n++] = pid;
    }
    for (int i = 0; i < n; i++)
        kill(kids[i], SIGKILL);
    for (int i = 0; i < n; i++)
        waitpid(kids[i], NULL, 0);
    if (e == 0)
        report("OK (%d forks succeeded, no limit hit)", n);
    else
        report("%s (%d forks succeeded)", errname(e), n);
}

static void try_memory(void)
{
    /* touched page by page: the memory cgroup must kill this process first */
    size_t size = (size_t)HOG_MIB << 20;
    char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        report_errno("at mmap", errno);
        return;
    }
    for (size_t off = 0; off < size; off += 4096)
        p[off] = 1;
    munmap(p, size);
    report("OK (touched %d MiB)", HOG_MIB);
}

/* -- running them ----------------------------------------------------------------------- */

static void emit(const char *name, const char *result)
{
    fprintf(out, "%s: %s\n", name, result);
    fflush(out);
    printf("%s: %s\n", name, result);
    fflush(stdout);
}

static void attempt(const char *name, void (*fn)(void))
{
    int fds[2];
    char result[300];
    if (pipe(fds) != 0) {
        snprintf(result, sizeof result, "ERROR (pipe: %s)", errname(errno));
        emit(name, result);
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(result, sizeof result, "ERROR (fork: %s)", errname(errno));
        close(fds[0]);
        close(fds[1]);
        emit(name, result);
        return;
    }
    if (pid == 0) {
        close(fds[0]);
        result_fd = fds[1];
        alarm(ATTEMPT_SECONDS);
        fn();
        _exit(0);
    }
    close(fds[1]);
    ssize_t len = 0, got;
    while (len < (ssize_t)sizeof result - 1
           && (got = read(fds[0], result + len, sizeof result - 1 - len)) > 0)
        len += got;
    result[len] = '\0';
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (len == 0 && WIFSIGNALED(status)) { /* died before it could say: the signal is the answer */
        int sig = WTERMSIG(status);
        const char *abbrev = sigabbrev_np(sig);
        if (sig == SIGALRM)
            snprintf(result, sizeof result, "TIMEOUT (after %d s)", ATTEMPT_SECONDS);
        else if (abbrev)
            snprintf(result, sizeof result, "SIG%s (the attempt's process was killed)", abbrev);
        else
            snprintf(result, sizeof result, "SIG%d (the attempt's process was killed)", sig);
    } else if (len == 0) {
        snprintf(result, sizeof result, "ERROR (exited %d without a result)",
                 WEXITSTATUS(status));
    }
    emit(name, result);
}

static void context(void)
{
    /* who this runs as, for the test to check the premise (root, seccomp on) */
    char line[256], cap[64] = "?", sec[16] = "?", nnp[16] = "?";
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "CapEff: %63s", cap);
        sscanf(line, "Seccomp: %15s", sec);
        sscanf(line, "NoNewPrivs: %15s", nnp);
    }
    if (f)
        fclose(f);
    char result[300];
    snprintf(result, sizeof result, "uid=%d pid=%d CapEff=%s Seccomp=%s NoNewPrivs=%s",
             (int)getuid(), (int)getpid(), cap, sec, nnp);
    emit("context", result);
}

int main(int argc, char **argv)
{
    if (argc != 4 || sscanf(argv[3], "%u:%u", &blk_major, &blk_minor) != 2) {
        fprintf(stderr, "usage: %s OUTFILE HOST_PID BLOCK_MAJOR:MINOR\n", argv[0]);
        return 2;
    }
    out = fopen(argv[1], "w");
    if (!out) {
        perror(argv[1]);
        return 2;
    }
    host_pid = (pid_t)atoi(argv[2]);
    context();
    static const struct {
        const char *name;
        void (*fn)(void);
    } attempts[] = {
        {"mount-tmpfs", try_mount_tmpfs},
        {"remount-root-rw", try_remount_root_rw},
        {"unshare-user", try_unshare_user},
        {"unshare-user-mount", try_unshare_user_mount},
        {"clone-user", try_clone_user},
        {"ptrace-host", try_ptrace_host},
        {"sysrq-trigger", try_sysrq},
        {"sys-write", try_sys_write},
        {"sys-cgroup-mkdir", try_sys_cgroup_mkdir},
        {"init-module", try_init_module},
        {"finit-module", try_finit_module},
        {"keyctl-join", try_keyctl_join},
        {"add-key", try_add_key},
        {"bpf-map", try_bpf_map},
        {"int80-getpid", try_int80},
        {"block-device", try_block_device},
        {"char-device", try_char_device},
        {"fork-bomb", try_fork_bomb},
        {"memory", try_memory},
    };
    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++)
        attempt(attempts[i].name, attempts[i].fn);
    fprintf(out, "done\n");
    fclose(out);
    printf("done\n");
    return 0;
}
