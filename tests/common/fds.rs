//! The process's open-file limit, for tests that run the listener out of descriptors
//! (each in its own test binary: the limit is the whole process's).

/// The soft limit that leaves exactly `room` new descriptors: the kernel hands out the
/// lowest free numbers and refuses any at or past the limit, so the limit is the free number
/// after the first `room` free ones (open descriptors above it, inherited ones included, are
/// not in the way).
pub fn leaving_room(room: usize) -> u64 {
    let listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The listing counted its own directory handle, closed by now: ask each number again.
    // SAFETY: F_GETFD only asks whether a descriptor number is open.
    let is_open = |fd: i32| listed.contains(&fd) && unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
    let mut free = (0..).filter(|&fd| !is_open(fd));
    free.nth(room).unwrap() as u64
}

/// Sets the soft limit on open files; the previous one.
pub fn set_soft_limit(soft: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct passed by pointer.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let previous = limit.rlim_cur;
        limit.rlim_cur = soft;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        previous
    }
}
