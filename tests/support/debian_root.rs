//! A Debian root made by mmdebstrap in a temp dir (tests/deb_package.rs): commands
//! run inside it, each in new mount and pid namespaces, and the checks around it.

use std::path::Path;
use std::process::{Command, Output, Stdio};

pub fn need(program: &str) {
    assert!(
        ["/usr/bin", "/usr/sbin"]
            .iter()
            .any(|d| Path::new(d).join(program).exists()),
        "{program} is missing: run tests/run, which installs it (and the other packages \
         the tests drive) from Debian's packages"
    );
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` with no standard input (so no prompt can wait), panics on failure.
pub fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect(what);
    super::assert_success(what, &out);
    text(&out)
}

/// A command inside the root, with its own mount and pid namespaces and /proc.
pub fn in_root(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--pid", "--fork"])
        .arg(format!("--mount-proc={}", root.join("proc").display()))
        .arg("chroot")
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8");
    cmd
}

/// The device nodes a directory root made in unshare mode lacks (/dev/null for one:
/// doctor runs its probes with standard input from it), made as debootstrap does.
pub fn make_devices(root: &Path) {
    let dev = root.join("dev");
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        run(
            "mknod",
            Command::new("mknod")
                .args(["-m", "666"])
                .arg(dev.join(name))
                .args(["c", &major.to_string(), &minor.to_string()]),
        );
    }
    std::os::unix::fs::symlink("/proc/self/fd", dev.join("fd")).unwrap();
}

pub fn root_ok(root: &Path, args: &[&str]) -> String {
    run(&args.join(" "), &mut in_root(root, args))
}

/// No mount may be left below `dir` before it is removed.
pub fn assert_nothing_mounted(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_str().unwrap();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(dir)).collect();
    if !left.is_empty() {
        // Leak the directory rather than delete through a mount.
        panic!(
            "mounts left below {dir}, not removing it:\n{}",
            left.join("\n")
        );
    }
}
