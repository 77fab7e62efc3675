//! The process's descriptor limit: raised to the hard limit at start (systemd's default soft
//! limit is 1,024), and the API's connection cap kept below what is left.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns `(soft before, soft now, hard)`.
pub fn raise_nofile() -> std::io::Result<(u64, u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
    }
    Ok((before, lim.rlim_cur, lim.rlim_max))
}

/// Descriptors kept for everything but API connections (store files, the QUIC socket, the
/// web console, logs).
const RESERVED: u64 = 128;

/// The API connection cap: the configured one, but never more than half of the descriptors
/// left after the reserve, so idle clients cannot starve the rest of the node.
pub fn api_connection_cap(configured: usize, soft_limit: u64) -> usize {
    let room = soft_limit.saturating_sub(RESERVED) / 2;
    configured.min(room.max(16) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_cap_stays_below_the_descriptor_limit() {
        assert_eq!(api_connection_cap(512, 1024), 448);
        assert_eq!(api_connection_cap(512, 65536), 512);
        assert_eq!(api_connection_cap(512, 100), 16);
    }

    #[test]
    fn raising_reaches_the_hard_limit() {
        let (_, soft, hard) = raise_nofile().unwrap();
        assert_eq!(soft, hard);
    }
}
