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
    let mut pwd = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut found = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, buf's length is passed, and the
    // result is read only when getpwuid_r reports an entry in `found`.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            pwd.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: found points at pwd, filled in; its strings point into buf,
    // NUL-terminated, and are copied out before buf goes.
    let (name, home) = unsafe {
        (
            CStr::from_ptr((*found).pw_name),
            CStr::from_ptr((*found).pw_dir),
        )
    };
    Some(Entry {
        name: name.to_str().ok()?.to_owned(),
        home: PathBuf::from(home.to_str().ok()?),
    })
}

/// The id of the group named `name` (`getgrnam_r`), if the system has one.
pub fn group_id(name: &str) -> Option<libc::gid_t> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut grp = std::mem::MaybeUninit::<libc::group>::uninit();
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut found = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, buf's length is passed, and the
    // result is read only when getgrnam_r reports an entry in `found`.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            grp.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: found points at grp, filled in.
    Some(unsafe { (*found).gr_gid })
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
