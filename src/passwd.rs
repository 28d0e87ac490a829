//! The passwd entry of a user id (`getpwuid_r`): its name for the audit trail, its
//! home directory where libpq would look for `~/.pgpass` and `~/.postgresql` when
//! `HOME` is not set (a daemon's environment often has none); and a group's id, for
//! the policy service's socket.

use std::ffi::CStr;
use std::path::PathBuf;

/// What the tools read of a passwd entry.
pub struct Entry {
    pub name: String,
    pub home: PathBuf,
}

/// The entry of `uid`, if the system has one.
pub fn of_uid(uid: libc::uid_t) -> Option<Entry> {
    // SAFETY: the pointers `lookup` passes are valid for the call, with buf's length.
    let (pwd, _buf) = lookup(4096, |p, buf, len, found| unsafe {
        libc::getpwuid_r(uid, p, buf, len, found)
    })?;
    // SAFETY: the entry's strings point into `_buf`, still here, NUL-terminated, and
    // are copied out before it goes.
    let (name, home) = unsafe { (CStr::from_ptr(pwd.pw_name), CStr::from_ptr(pwd.pw_dir)) };
    Some(Entry {
        name: name.to_str().ok()?.to_owned(),
        home: PathBuf::from(home.to_str().ok()?),
    })
}

/// The id of the group named `name` (`getgrnam_r`), if the system has one.
pub fn group_id(name: &str) -> Option<libc::gid_t> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: as in `of_uid`; `cname` is NUL-terminated and outlives the call.
    let (grp, _) = lookup(16384, |g, buf, len, found| unsafe {
        libc::getgrnam_r(cname.as_ptr(), g, buf, len, found)
    })?;
    Some(grp.gr_gid)
}

/// Runs a reentrant lookup (`getpwuid_r`, `getgrnam_r`) with `size` bytes for its
/// strings: the entry, and the buffer its strings point into, when it reports one.
fn lookup<T>(
    size: usize,
    call: impl FnOnce(*mut T, *mut libc::c_char, usize, *mut *mut T) -> libc::c_int,
) -> Option<(T, Vec<libc::c_char>)> {
    let mut entry = std::mem::MaybeUninit::<T>::uninit();
    let mut buf = vec![0 as libc::c_char; size];
    let mut found = std::ptr::null_mut();
    let rc = call(entry.as_mut_ptr(), buf.as_mut_ptr(), buf.len(), &mut found);
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: the call reported an entry in `found`, which points at `entry`, filled in.
    Some((unsafe { entry.assume_init() }, buf))
}

/// The home directory as libpq finds it: `HOME` if set and not empty, else the
/// effective user's passwd entry.
pub fn home() -> Option<PathBuf> {
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => Some(PathBuf::from(h)),
        // SAFETY: geteuid cannot fail and touches no memory of ours.
        _ => of_uid(unsafe { libc::geteuid() }).map(|e| e.home),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_an_entry_with_a_home() {
        let root = of_uid(0).expect("uid 0 in passwd");
        assert_eq!(root.name, "root");
        assert!(root.home.is_absolute(), "{}", root.home.display());
    }
}
